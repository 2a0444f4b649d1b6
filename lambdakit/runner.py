"""Deprecated alias of `lambdakit.engine.runner`; it goes in the next release."""

import warnings

from lambdakit.engine.runner import *  # noqa: F403
from lambdakit.engine.runner import __all__ as __all__

warnings.warn(
    "lambdakit.runner is deprecated: import from lambdakit.engine.runner,",
    DeprecationWarning,
    stacklevel=2,
)
