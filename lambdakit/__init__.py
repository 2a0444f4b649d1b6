"""lambdakit: push datasets through AWS Lambda from Jupyter, or from the embedded local service.

Public names are imported lazily, so `import lambdakit` stays fast and has no side effects
(no matplotlib backend switch, no folders created).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it. tests/test_public_api.py pins this list.
_EXPORTS: dict[str, str] = {
    "AliasInfo": "lambdakit.aws.discovery",
    "Cache": "lambdakit.engine.cache",
    "Comparison": "lambdakit.results.compare",
    "CredentialsError": "lambdakit.errors",
    "DEFAULT": "lambdakit.engine.cache",
    "DeployError": "lambdakit.errors",
    "Deployment": "lambdakit.aws.deploy",
    "Form": "lambdakit.notebook.form",
    "FunctionInfo": "lambdakit.aws.discovery",
    "FunctionNotFound": "lambdakit.errors",
    "Hedge": "lambdakit.engine.hedge",
    "HttpInvoker": "lambdakit.aws.http_invoker",
    "InvalidInput": "lambdakit.errors",
    "InvocationFailed": "lambdakit.errors",
    "Invoker": "lambdakit.invocation",
    "LambdaInvoker": "lambdakit.aws.lambda_invoker",
    "LambdaServiceError": "lambdakit.errors",
    "LeanLambdaInvoker": "lambdakit.aws.lean_invoker",
    "LambdakitError": "lambdakit.errors",
    "LocalLambda": "lambdakit.local",
    "LocalServiceError": "lambdakit.errors",
    "MemoryLadder": "lambdakit.engine.ladder",
    "Outcome": "lambdakit.invocation",
    "OutputStore": "lambdakit.results.outputs",
    "PayloadTooLarge": "lambdakit.errors",
    "PriceTable": "lambdakit.results.cost",
    "Progress": "lambdakit.engine.progress",
    "ProgressEvent": "lambdakit.engine.progress",
    "Report": "lambdakit.invocation",
    "Retry": "lambdakit.engine.retry",
    "Schedule": "lambdakit.aws.schedules",
    "ScheduleNotFound": "lambdakit.errors",
    "SchedulerError": "lambdakit.errors",
    "RunHandle": "lambdakit.engine.handle",
    "RunResult": "lambdakit.results.result",
    "SourceError": "lambdakit.errors",
    "StorageError": "lambdakit.errors",
    "Target": "lambdakit.invocation",
    "Throttled": "lambdakit.errors",
    "ToleranceExceeded": "lambdakit.errors",
    "VersionInfo": "lambdakit.aws.discovery",
    "build_layer": "lambdakit.aws.layers",
    "compare": "lambdakit.results.compare",
    "deploy": "lambdakit.aws.deploy",
    "form": "lambdakit.notebook.form",
    "limits": "lambdakit.engine.limits",
    "list_aliases": "lambdakit.aws.discovery",
    "list_functions": "lambdakit.aws.discovery",
    "list_versions": "lambdakit.aws.discovery",
    "make_client": "lambdakit.aws.connection",
    "make_session": "lambdakit.aws.connection",
    "package": "lambdakit.aws.deploy",
    "parse_report": "lambdakit.aws.reply",
    "publish_version": "lambdakit.aws.deploy",
    "read_response": "lambdakit.aws.reply",
    "resolve_target": "lambdakit.aws.discovery",
    "run": "lambdakit.engine.runner",
    "schedule": "lambdakit.aws.schedules",
    "set_alias": "lambdakit.aws.deploy",
    "start": "lambdakit.engine.runner",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lambdakit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache, so the lookup happens once
    return value


def __dir__() -> list[str]:
    return __all__
