"""`python -m lambdakit ...`: the same as the `lambdakit` script."""

import sys

from lambdakit.cli.main import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
