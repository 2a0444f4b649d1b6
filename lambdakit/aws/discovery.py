"""Discovery: the functions, versions and aliases of an account, and the Target a run invokes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lambdakit.aws.connection import call_api
from lambdakit.errors import FunctionNotFound, InvalidInput, translate_client_error
from lambdakit.invocation import Target

__all__ = [
    "AliasInfo",
    "FunctionInfo",
    "VersionInfo",
    "config_hash",
    "list_aliases",
    "list_functions",
    "list_versions",
    "resolve_target",
    "split_function_name",
]

# The configuration fields that change what $LATEST does, and so must change its cache token.
_BEHAVIOUR_FIELDS = ("Handler", "Runtime", "Environment", "MemorySize", "Timeout", "Layers")


def _paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])
    except (ClientError, BotoCoreError) as exc:
        raise translate_client_error(exc, operation=operation) from exc


@dataclass(frozen=True)
class FunctionInfo:
    """One function as ListFunctions describes it ($LATEST's configuration)."""

    name: str
    arn: str
    runtime: str | None
    handler: str | None
    memory_mb: int
    timeout_s: int
    code_sha256: str
    last_modified: str
    description: str = ""

    @classmethod
    def from_api(cls, cfg: dict[str, Any]) -> FunctionInfo:
        """Build from a FunctionConfiguration dict."""
        return cls(
            name=cfg["FunctionName"],
            arn=cfg["FunctionArn"],
            runtime=cfg.get("Runtime"),
            handler=cfg.get("Handler"),
            memory_mb=int(cfg.get("MemorySize", 128)),
            timeout_s=int(cfg.get("Timeout", 3)),
            code_sha256=cfg.get("CodeSha256", ""),
            last_modified=cfg.get("LastModified", ""),
            description=cfg.get("Description", ""),
        )


@dataclass(frozen=True)
class VersionInfo:
    """One published version (or $LATEST) of a function."""

    version: str
    arn: str
    code_sha256: str
    description: str = ""
    last_modified: str = ""

    @classmethod
    def from_api(cls, cfg: dict[str, Any]) -> VersionInfo:
        """Build from a FunctionConfiguration dict."""
        return cls(
            version=cfg["Version"],
            arn=cfg["FunctionArn"],
            code_sha256=cfg.get("CodeSha256", ""),
            description=cfg.get("Description", ""),
            last_modified=cfg.get("LastModified", ""),
        )


@dataclass(frozen=True)
class AliasInfo:
    """An alias, the version it points to and its routing weights (which sum to 1)."""

    name: str
    arn: str
    function_version: str
    weights: dict[str, float] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def from_api(cls, alias: dict[str, Any]) -> AliasInfo:
        """Build from an AliasConfiguration dict."""
        return cls(
            name=alias["Name"],
            arn=alias.get("AliasArn", ""),
            function_version=alias["FunctionVersion"],
            weights=_alias_weights(alias),
            description=alias.get("Description", ""),
        )


def _alias_weights(alias: dict[str, Any]) -> dict[str, float]:
    extra = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    extra_weights = {str(v): float(w) for v, w in extra.items()}
    # The primary version first: it gets whatever the additional versions leave.
    primary = max(0.0, 1.0 - sum(extra_weights.values()))
    return {alias["FunctionVersion"]: primary, **extra_weights}


def list_functions(client: Any) -> list[FunctionInfo]:
    """Every function in the account and region (all pages), sorted by name."""
    found = [FunctionInfo.from_api(c) for c in _paginate(client, "list_functions", "Functions")]
    return sorted(found, key=lambda f: f.name)


def list_versions(client: Any, function: str) -> list[VersionInfo]:
    """Every version of `function`, $LATEST included, as ListVersionsByFunction gives them."""
    ref, _ = split_function_name(function)
    return [
        VersionInfo.from_api(c)
        for c in _paginate(client, "list_versions_by_function", "Versions", FunctionName=ref)
    ]


def list_aliases(client: Any, function: str) -> list[AliasInfo]:
    """Every alias of `function`, with the version(s) it routes to, sorted by name."""
    ref, _ = split_function_name(function)
    found = [
        AliasInfo.from_api(a)
        for a in _paginate(client, "list_aliases", "Aliases", FunctionName=ref)
    ]
    return sorted(found, key=lambda a: a.name)


def split_function_name(function: str) -> tuple[str, str | None]:
    """Split a name, `name:qualifier`, full ARN or partial ARN into (unqualified, qualifier)."""
    if not isinstance(function, str) or not function.strip():
        raise InvalidInput(f"function must be a non-empty name or ARN, got {function!r}")
    parts = function.strip().split(":")
    if parts[0] == "arn":
        # arn:partition:lambda:region:account:function:name[:qualifier]
        if len(parts) not in (7, 8) or parts[2] != "lambda" or parts[5] != "function":
            raise InvalidInput(f"not a Lambda function ARN: {function!r}")
        return ":".join(parts[:7]), (parts[7] if len(parts) == 8 else None)
    if len(parts) >= 3 and parts[1] == "function":
        # account:function:name[:qualifier]
        if len(parts) > 4:
            raise InvalidInput(f"not a partial Lambda function ARN: {function!r}")
        return ":".join(parts[:3]), (parts[3] if len(parts) == 4 else None)
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2 and parts[0] and parts[1]:
        return parts[0], parts[1]
    raise InvalidInput(f"not a function name, name:qualifier or ARN: {function!r}")


def config_hash(cfg: dict[str, Any]) -> str:
    """A short sha256 of the configuration fields that change a function's behaviour."""
    picked: dict[str, Any] = {}
    for key in _BEHAVIOUR_FIELDS:
        value = cfg.get(key)
        if key == "Environment":
            value = (value or {}).get("Variables") or {}
        elif key == "Layers":
            # In order: the later of two layers holding one file is the one that runs.
            value = [layer.get("Arn", "") for layer in value or []]
        picked[key] = value
    canonical = json.dumps(picked, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _cache_token(cfg: dict[str, Any]) -> str:
    """`<version>@<CodeSha256>:<config hash>`, for $LATEST and published versions alike.

    A version number alone is not an identity: numbers restart at 1 when a function is
    deleted and created again (on AWS as in `lambdakit local`), so the token names the code
    and the behaviour-affecting configuration that the version runs.
    """
    version = cfg.get("Version", "$LATEST")
    return f"{version}@{cfg.get('CodeSha256', '')}:{config_hash(cfg)}"


def _get_configuration(client: Any, ref: str, qualifier: str | None) -> dict[str, Any]:
    extra = {"Qualifier": qualifier} if qualifier is not None else {}
    return call_api(client, "get_function_configuration", FunctionName=ref, **extra)


def _not_found(client: Any, ref: str, what: str, exc: FunctionNotFound) -> FunctionNotFound:
    """A FunctionNotFound that says whether the function or only its qualifier is missing."""
    try:
        _get_configuration(client, ref, None)
    except FunctionNotFound:
        message = f"Lambda function {ref!r} was not found (check its name and the region)"
    else:
        message = f"Lambda function {ref!r} has no {what}"
    where = {"request_id": exc.request_id, "operation": exc.operation}
    return FunctionNotFound(message, code=exc.code, status=exc.status, **where)


def resolve_target(client: Any, function: str, qualifier: str | None = None) -> Target:
    """Resolve a function (name, name:qualifier or ARN) and qualifier into a `Target`.

    An alias becomes the version(s) it routes to with their weights; each version gets a
    cache token made of its number, its CodeSha256 and a hash of its behaviour-affecting
    configuration (a recreated function's v1 is not the old v1).
    Raises FunctionNotFound, naming what is missing.
    """
    ref, embedded = split_function_name(function)
    if qualifier is not None and (not isinstance(qualifier, str) or not qualifier):
        raise InvalidInput(f"qualifier must be a non-empty string, got {qualifier!r}")
    if embedded is not None and qualifier is not None and embedded != qualifier:
        raise InvalidInput(
            f"function {function!r} names qualifier {embedded!r} but qualifier={qualifier!r}"
        )
    qualifier = qualifier or embedded

    if qualifier is None or qualifier == "$LATEST" or qualifier.isdigit():
        try:
            configs = {qualifier or "$LATEST": _get_configuration(client, ref, qualifier)}
        except FunctionNotFound as exc:
            raise _not_found(client, ref, f"version {qualifier!r}", exc) from exc
        versions = {next(iter(configs)): 1.0}
    else:
        try:
            alias = call_api(client, "get_alias", FunctionName=ref, Name=qualifier)
        except FunctionNotFound as exc:
            raise _not_found(client, ref, f"alias {qualifier!r}", exc) from exc
        versions = _alias_weights(alias)
        configs = {v: _get_configuration(client, ref, v) for v in versions}

    primary = configs[next(iter(versions))]  # the alias's own version comes first
    return Target(
        function_name=primary["FunctionName"],
        function_arn=":".join(primary["FunctionArn"].split(":")[:7]),  # without a qualifier
        qualifier=qualifier,
        versions=versions,
        cache_tokens={v: _cache_token(cfg) for v, cfg in configs.items()},
        timeout_s=max(int(cfg.get("Timeout", 3)) for cfg in configs.values()),
        memory_mb=int(primary.get("MemorySize", 128)),
        code_sha256={v: cfg.get("CodeSha256", "") for v, cfg in configs.items()},
        layers={
            v: tuple(lay["Arn"] for lay in cfg.get("Layers") or ()) for v, cfg in configs.items()
        },
    )
