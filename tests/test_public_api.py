"""Pins lambdakit's public names, and checks that importing it has no side effects."""

import subprocess
import sys

import lambdakit

EXPECTED = [
    "AliasInfo",
    "Cache",
    "Comparison",
    "CredentialsError",
    "DEFAULT",
    "DeployError",
    "Form",
    "FunctionInfo",
    "FunctionNotFound",
    "HttpInvoker",
    "InvalidInput",
    "InvocationFailed",
    "Invoker",
    "LambdaInvoker",
    "LambdaServiceError",
    "LambdakitError",
    "LocalLambda",
    "LocalServiceError",
    "Outcome",
    "OutputStore",
    "PayloadTooLarge",
    "PriceTable",
    "Progress",
    "ProgressEvent",
    "Report",
    "Retry",
    "RunHandle",
    "RunResult",
    "Target",
    "Throttled",
    "ToleranceExceeded",
    "VersionInfo",
    "__version__",
    "compare",
    "deploy",
    "form",
    "list_aliases",
    "list_functions",
    "list_versions",
    "make_client",
    "make_session",
    "package",
    "parse_report",
    "publish_version",
    "read_response",
    "resolve_target",
    "run",
    "set_alias",
    "start",
]


def test_all_is_pinned():
    assert lambdakit.__all__ == sorted(EXPECTED)


def test_every_public_name_resolves():
    for name in lambdakit.__all__:
        assert getattr(lambdakit, name) is not None, name


def test_errors_share_one_root():
    for name in lambdakit.__all__:
        obj = getattr(lambdakit, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, lambdakit.LambdakitError), name


def test_import_has_no_side_effects():
    code = (
        "import sys, lambdakit\n"
        "heavy = [m for m in ('matplotlib', 'pandas', 'boto3', 'ipywidgets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
