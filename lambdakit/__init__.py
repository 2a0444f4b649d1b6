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
    "AliasInfo": "lambdakit.discovery",
    "Cache": "lambdakit.cache",
    "Comparison": "lambdakit.compare",
    "CredentialsError": "lambdakit.errors",
    "DEFAULT": "lambdakit.cache",
    "DeployError": "lambdakit.errors",
    "Form": "lambdakit.widgets",
    "FunctionInfo": "lambdakit.discovery",
    "FunctionNotFound": "lambdakit.errors",
    "HttpInvoker": "lambdakit.http_invoke",
    "InvalidInput": "lambdakit.errors",
    "InvocationFailed": "lambdakit.errors",
    "Invoker": "lambdakit.invoke",
    "LambdaInvoker": "lambdakit.invoke",
    "LambdaServiceError": "lambdakit.errors",
    "LambdakitError": "lambdakit.errors",
    "LocalLambda": "lambdakit.local",
    "LocalServiceError": "lambdakit.errors",
    "Outcome": "lambdakit.invoke",
    "OutputStore": "lambdakit.outputs",
    "PayloadTooLarge": "lambdakit.errors",
    "PriceTable": "lambdakit.cost",
    "Progress": "lambdakit.progress",
    "ProgressEvent": "lambdakit.progress",
    "Report": "lambdakit.invoke",
    "Retry": "lambdakit.retry",
    "RunHandle": "lambdakit.handle",
    "RunResult": "lambdakit.results",
    "Target": "lambdakit.discovery",
    "Throttled": "lambdakit.errors",
    "ToleranceExceeded": "lambdakit.errors",
    "VersionInfo": "lambdakit.discovery",
    "compare": "lambdakit.compare",
    "deploy": "lambdakit.deployment",
    "form": "lambdakit.widgets",
    "list_aliases": "lambdakit.discovery",
    "list_functions": "lambdakit.discovery",
    "list_versions": "lambdakit.discovery",
    "make_client": "lambdakit.connection",
    "make_session": "lambdakit.connection",
    "package": "lambdakit.deployment",
    "parse_report": "lambdakit.invoke",
    "publish_version": "lambdakit.deployment",
    "read_response": "lambdakit.invoke",
    "resolve_target": "lambdakit.discovery",
    "run": "lambdakit.runner",
    "set_alias": "lambdakit.deployment",
    "start": "lambdakit.runner",
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
