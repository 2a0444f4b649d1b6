"""The boto3 Lambda client lambdakit uses, and discovery: functions, versions, aliases, targets."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lambdakit.errors import FunctionNotFound, InvalidInput, translate_client_error

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_FUNCTION_TIMEOUT_S",
    "READ_TIMEOUT_MARGIN_S",
    "AliasInfo",
    "FunctionInfo",
    "Target",
    "VersionInfo",
    "call_api",
    "config_hash",
    "list_aliases",
    "list_functions",
    "list_versions",
    "make_client",
    "make_session",
    "resolve_target",
    "split_function_name",
]

log = logging.getLogger("lambdakit.connection")

# Lambda's maximum timeout: the read timeout must outlast it when the function's is unknown.
DEFAULT_FUNCTION_TIMEOUT_S = 900
# Added on top of the function timeout: on-demand init may take up to 10 s outside the
# function's timeout, plus the network round trip.
READ_TIMEOUT_MARGIN_S = 20.0
# botocore's default is 60 s; an unreachable endpoint should fail much sooner than that.
CONNECT_TIMEOUT_S = 10.0
# The local service accepts any signature; these only let botocore sign the request.
_LOCAL_CREDENTIALS = {"aws_access_key_id": "lambdakit-local", "aws_secret_access_key": "local"}
_LOCAL_REGION = "us-east-1"
# The configuration fields that change what $LATEST does, and so must change its cache token.
_BEHAVIOUR_FIELDS = ("Handler", "Runtime", "Environment", "MemorySize", "Timeout", "Layers")


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    concurrency: int = 16,
    read_timeout: float | None = None,
    function_timeout_s: float | None = None,
    client: Any = None,
    session: Any = None,
) -> Any:
    """Build a boto3 Lambda client sized for `concurrency` threads, with botocore retries off.

    botocore's own retries are switched off (one attempt in total) so that lambdakit's Retry
    policy is the single source of truth: every attempt is counted and classified, a 429 is
    not silently retried behind the adaptive limit's back, and a read timeout never
    re-invokes a function that may still be running. The read timeout is longer than the
    function's timeout for the same reason. `session` (from `make_session` with the same
    endpoint_url, region and profile) lets several clients share one botocore session: a
    second client then costs a few ms instead of ~0.1 s of loading the service model.

    >>> make_client(endpoint_url="http://127.0.0.1:9001")  # doctest: +SKIP
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InvalidInput(f"concurrency must be a positive integer, got {concurrency!r}")
    _check_where(endpoint_url, region, profile)
    if client is not None:
        _check_lambda_client(client)
        _warn_if_pool_too_small(client, concurrency)
        return client
    timeout = _read_timeout(read_timeout, function_timeout_s)

    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    config = Config(
        # Never below botocore's default of 10; one connection per worker thread.
        max_pool_connections=max(concurrency, 10),
        read_timeout=timeout,
        connect_timeout=CONNECT_TIMEOUT_S,
        # total_max_attempts counts the first call; botocore's `max_attempts` counts only
        # retries, so {"max_attempts": 1} would still retry once.
        retries={"total_max_attempts": 1, "mode": "standard"},
        tcp_keepalive=True,
    )
    if session is None:
        session = make_session(endpoint_url=endpoint_url, region=region, profile=profile)
    try:
        credentials = session.get_credentials()  # looked up once per session, then kept
        kwargs: dict[str, Any] = {"config": config}
        if endpoint_url is not None:
            kwargs["endpoint_url"] = endpoint_url
            if session.region_name is None:
                kwargs["region_name"] = _LOCAL_REGION
            if credentials is None:
                kwargs.update(_LOCAL_CREDENTIALS)
        elif credentials is None:
            raise NoCredentialsError()
        return session.client("lambda", **kwargs)
    except BotoCoreError as exc:
        raise translate_client_error(exc, operation="make_client") from exc


def make_session(
    *, endpoint_url: str | None = None, region: str | None = None, profile: str | None = None
) -> Any:
    """A boto3 Session for `make_client(session=...)`: one per run, shared by its clients."""
    _check_where(endpoint_url, region, profile)
    import boto3
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        core = botocore.session.get_session()
        if profile is not None:
            core.set_config_variable("profile", profile)
        if endpoint_url is not None:
            # Probing the EC2/container metadata endpoints costs seconds off AWS, and the
            # local service needs no real identity anyway.
            resolver = core.get_component("credential_provider")
            resolver.remove("iam-role")
            resolver.remove("container-role")
        return boto3.Session(botocore_session=core, region_name=region)
    except BotoCoreError as exc:
        raise translate_client_error(exc, operation="make_session") from exc


def _check_where(endpoint_url: Any, region: Any, profile: Any) -> None:
    """Refuse bad settings by name (botocore would fail deep inside, naming none)."""
    for name, value in (("endpoint_url", endpoint_url), ("region", region), ("profile", profile)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidInput(f"{name} must be a non-empty string, got {value!r}")
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise InvalidInput(f"endpoint_url must be an http(s) URL, got {endpoint_url!r}")


def _read_timeout(read_timeout: float | None, function_timeout_s: float | None) -> float:
    """The client read timeout: explicit, or the function timeout plus a margin."""
    for name, value in (("read_timeout", read_timeout), ("function_timeout_s", function_timeout_s)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (number and value > 0):
            raise InvalidInput(f"{name} must be a positive number of seconds, got {value!r}")
    if read_timeout is None:
        base = function_timeout_s if function_timeout_s is not None else DEFAULT_FUNCTION_TIMEOUT_S
        return float(base) + READ_TIMEOUT_MARGIN_S
    if function_timeout_s is not None and read_timeout <= function_timeout_s:
        log.warning(
            "read_timeout %.1fs is not longer than the function timeout %.1fs: a call that "
            "times out on the client may still be running, and a retry would run it twice",
            read_timeout,
            function_timeout_s,
        )
    return float(read_timeout)


def _check_lambda_client(client: Any) -> None:
    """Refuse a `client=` that is not a botocore Lambda client, before it fails mid-run."""
    model = getattr(getattr(client, "meta", None), "service_model", None)
    service = getattr(model, "service_name", None)
    if service != "lambda" or not callable(getattr(client, "invoke", None)):
        what = f"a {service!r} client" if service else type(client).__name__
        raise InvalidInput(f"client must be a boto3 Lambda client (boto3.client): got {what}")


def _warn_if_pool_too_small(client: Any, concurrency: int) -> None:
    pool = getattr(getattr(client, "meta", None), "config", None)
    size = getattr(pool, "max_pool_connections", None)
    if isinstance(size, int) and size < concurrency:
        log.warning(
            "the client's max_pool_connections (%d) is below concurrency (%d): threads will "
            "wait for connections and urllib3 will discard some",
            size,
            concurrency,
        )


def call_api(client: Any, operation: str, **kwargs: Any) -> Any:
    """Call one Lambda API operation, turning botocore errors into lambdakit errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate_client_error(exc, operation=operation) from exc


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


@dataclass(frozen=True)
class Target:
    """What a run invokes, resolved before it starts: versions, weights and cache tokens."""

    function_name: str
    function_arn: str
    qualifier: str | None
    versions: dict[str, float]
    cache_tokens: dict[str, str]
    timeout_s: int
    memory_mb: int
    code_sha256: dict[str, str] = field(default_factory=dict)  # version -> CodeSha256

    @property
    def invoke_name(self) -> str:
        """The FunctionName to pass to Invoke (the ARN, qualified when there is a qualifier)."""
        return f"{self.function_arn}:{self.qualifier}" if self.qualifier else self.function_arn


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
            value = sorted(layer.get("Arn", "") for layer in value or [])
        picked[key] = value
    canonical = json.dumps(picked, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _cache_token(cfg: dict[str, Any]) -> str:
    version = cfg.get("Version", "$LATEST")
    if version != "$LATEST":
        return str(version)  # published versions are immutable: the number is enough
    return f"$LATEST@{cfg.get('CodeSha256', '')}:{config_hash(cfg)}"


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

    An alias becomes the version(s) it routes to with their weights; `$LATEST` gets a cache
    token made of its CodeSha256 and a hash of its behaviour-affecting configuration.
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
    )
