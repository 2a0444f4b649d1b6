"""Deprecated alias of `lambdakit.results.plots`; it goes in the next release."""

import warnings

from lambdakit.results.plots import *  # noqa: F403
from lambdakit.results.plots import __all__ as __all__

warnings.warn(
    "lambdakit.plots is deprecated: import from lambdakit.results.plots,",
    DeprecationWarning,
    stacklevel=2,
)
