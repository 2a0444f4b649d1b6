"""Deprecated: `lambdakit.invoke` was split; this alias goes in the next release.

Outcome, Report, Invoker and PAYLOAD_TOO_LARGE are in `lambdakit.invocation`; the reply
contract (read_response, read_item_errors, parse_report) in `lambdakit.aws.reply`;
LambdaInvoker in `lambdakit.aws.lambda_invoker`.
"""

import warnings

from lambdakit.aws.lambda_invoker import LambdaInvoker
from lambdakit.aws.reply import parse_report, read_item_errors, read_response
from lambdakit.invocation import PAYLOAD_TOO_LARGE, Invoker, Outcome, Report

__all__ = [
    "PAYLOAD_TOO_LARGE",
    "Invoker",
    "LambdaInvoker",
    "Outcome",
    "Report",
    "parse_report",
    "read_item_errors",
    "read_response",
]

warnings.warn(
    "lambdakit.invoke is deprecated; import from lambdakit.invocation, lambdakit.aws.reply "
    "or lambdakit.aws.lambda_invoker (or the public names in lambdakit)",
    DeprecationWarning,
    stacklevel=2,
)
