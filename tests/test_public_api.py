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
    "Deployment",
    "Form",
    "FunctionInfo",
    "FunctionNotFound",
    "Hedge",
    "HttpInvoker",
    "InvalidInput",
    "InvocationFailed",
    "Invoker",
    "LambdaInvoker",
    "LambdaServiceError",
    "LambdakitError",
    "LeanLambdaInvoker",
    "LocalLambda",
    "LocalServiceError",
    "MemoryLadder",
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
    "Schedule",
    "ScheduleNotFound",
    "SchedulerError",
    "SourceError",
    "StorageError",
    "Target",
    "Throttled",
    "ToleranceExceeded",
    "VersionInfo",
    "__version__",
    "build_layer",
    "compare",
    "deploy",
    "form",
    "limits",
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
    "schedule",
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


def test_import_loads_only_the_package_itself():
    code = (
        "import sys, lambdakit\n"
        "ours = sorted(m for m in sys.modules if m.split('.')[0] == 'lambdakit')\n"
        "assert ours == ['lambdakit'], ours\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Old module paths users may have imported: they keep working for one release, with a warning.
OLD_PATHS = {
    "lambdakit.runner": ["run", "start"],
    "lambdakit.invoke": ["LambdaInvoker", "Outcome", "Invoker", "read_response", "parse_report"],
    "lambdakit.plots": ["dashboard", "timeline", "to_png"],
    "lambdakit.local": ["LocalLambda"],
}


def test_old_module_paths_still_work_and_warn():
    for module, names in OLD_PATHS.items():
        code = (
            "import importlib, warnings\n"
            "warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n"
            f"    importlib.import_module({module!r})\n"
            "except DeprecationWarning as w:\n"
            "    print('warned', w)\n"
            "else:\n"
            "    print('silent')\n"
            "warnings.simplefilter('ignore', DeprecationWarning)\n"
            f"m = importlib.import_module({module!r})\n"
            f"for name in {names!r}:\n"
            "    getattr(m, name)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
        # lambdakit.local did not move: it imports silently; the moved ones warn.
        assert out.startswith("silent" if module == "lambdakit.local" else "warned"), (module, out)


def test_old_paths_give_the_same_objects():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import lambdakit.invoke
        import lambdakit.runner

    assert lambdakit.runner.run is lambdakit.run
    assert lambdakit.invoke.LambdaInvoker is lambdakit.LambdaInvoker
