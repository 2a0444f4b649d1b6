"""Function URLs from the client side: their shapes, creating one, and the function behind one.

Two shapes are recognised:
- AWS: `https://<url-id>.lambda-url.<region>.on.aws/...`;
- lambdakit local: `http://host:port/lambda-url/<function>[:<alias>]/...` (one port, no DNS).

`url_target` says which code a URL runs, for the cache: a function URL never sends
`X-Amz-Executed-Version`, so the function is found through the Lambda API instead. A local
URL names it in its path; an AWS URL is matched against GetFunctionUrlConfig of the function
given with `function=`, or of each function ListFunctions returns. The executed version is
then known wherever the qualifier routes to one version ($LATEST, or an alias without
weights). A weighted alias, a URL that matches no function, missing credentials or API
Gateway leave the key at URL + `cache_namespace`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from lambdakit.errors import LambdakitError, LambdaServiceError
from lambdakit.invocation import Target

__all__ = [
    "LOCAL_URL_PREFIX",
    "UrlShape",
    "create_function_url",
    "parse_function_url",
    "safe_url",
    "url_target",
]

log = logging.getLogger("lambdakit.aws.function_urls")

LOCAL_URL_PREFIX = "/lambda-url/"
_AWS_HOST = re.compile(r"^([a-z0-9]+)\.lambda-url\.([a-z0-9-]+)\.on\.aws$")
_MAX_SCANNED = 500  # functions looked at to match an AWS URL without function=


@dataclass(frozen=True)
class UrlShape:
    """What a URL says about itself: local or AWS, and what it names."""

    kind: str  # "local" | "aws" | "other"
    endpoint_url: str | None = None  # local: the service's endpoint (scheme://host:port)
    function: str | None = None  # local: the function name in the path
    qualifier: str | None = None  # local: the alias in the path, None for $LATEST
    region: str | None = None  # aws: the region in the host name


def safe_url(url: str) -> str:
    """The URL without credentials, query string or fragment: what manifests may record."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_function_url(url: str) -> UrlShape:
    """Recognise a lambdakit local or AWS function URL (see the module docstring)."""
    parts = urlsplit(url)
    aws = _AWS_HOST.match(parts.hostname or "")
    if aws:
        return UrlShape("aws", region=aws.group(2))
    if parts.path.startswith(LOCAL_URL_PREFIX):
        segment = unquote(parts.path[len(LOCAL_URL_PREFIX) :].split("/", 1)[0])
        name, _, qualifier = segment.partition(":")
        if name:
            endpoint = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], "", "", ""))
            return UrlShape(
                "local", endpoint_url=endpoint, function=name, qualifier=qualifier or None
            )
    return UrlShape("other")


def create_function_url(
    client: Any, name: str, auth_type: str, *, qualifier: str | None = None
) -> str:
    """Create (or update) the function URL of name/qualifier, with the permission it needs.

    AuthType NONE also gets the statement allowing lambda:InvokeFunctionUrl to everyone
    (FunctionURLAllowPublicAccess), as the console adds it; without it the URL answers 403.
    Returns the FunctionUrl.
    """
    from lambdakit.aws.connection import call_api

    if auth_type not in ("NONE", "AWS_IAM"):
        raise LambdakitError(f"url must be 'NONE' or 'AWS_IAM', got {auth_type!r}")
    where = {"Qualifier": qualifier} if qualifier else {}
    try:
        reply = call_api(
            client, "create_function_url_config", FunctionName=name, AuthType=auth_type, **where
        )
    except LambdaServiceError as exc:
        if exc.code != "ResourceConflictException":
            raise
        reply = call_api(
            client, "update_function_url_config", FunctionName=name, AuthType=auth_type, **where
        )
    if auth_type == "NONE":
        try:
            call_api(
                client, "add_permission", FunctionName=name,
                StatementId="FunctionURLAllowPublicAccess", Action="lambda:InvokeFunctionUrl",
                Principal="*", FunctionUrlAuthType="NONE", **where,
            )  # fmt: skip
        except LambdaServiceError as exc:
            if exc.code != "ResourceConflictException":
                raise  # anything but "the statement is there already" (a redeploy)
    return str(reply["FunctionUrl"])


def url_target(
    url: str,
    *,
    namespace: str = "",
    timeout_s: int,
    client: Any = None,
    function: str | None = None,
) -> tuple[Target, str | None]:
    """(Target, executed version or None) for a run against `url` (see the module docstring).

    The target names the URL (without query or credentials). Its cache tokens start with
    "url|" so that a URL run never shares cache entries with an Invoke run of the same
    function: the function sees a different event.
    """
    shown = safe_url(url)
    # The query string may change what answers, so it is part of the key, but it may carry a
    # key too: only its digest is stored (cache entries show their token).
    raw_query = urlsplit(url).query
    query = hashlib.sha256(raw_query.encode()).hexdigest()[:16] if raw_query else ""
    fallback = Target(
        function_name=shown,
        function_arn=shown,
        qualifier=None,
        versions={"url": 1.0},
        cache_tokens={"url": f"url|{namespace}|{query}"},
        timeout_s=timeout_s,
        memory_mb=0,
    )
    if client is None:
        return fallback, None
    try:
        resolved = _resolve(client, url, function)
    except LambdakitError as exc:
        log.info("cannot tell which function answers %s (%s): keying the cache by URL", shown, exc)
        return fallback, None
    if resolved is None:
        return fallback, None
    if len(resolved.versions) != 1:
        log.warning(
            "%s routes to versions %s by weight and a function URL does not say which one "
            "answered: keying the cache by URL + cache_namespace",
            shown,
            sorted(resolved.versions),
        )
        return fallback, None
    version = next(iter(resolved.versions))
    tokens = {v: f"url|{namespace}|{query}|{t}" for v, t in resolved.cache_tokens.items()}
    return replace(resolved, function_name=shown, cache_tokens=tokens), version


def _resolve(client: Any, url: str, function: str | None) -> Target | None:
    from lambdakit.aws.connection import call_api
    from lambdakit.aws.discovery import resolve_target

    shape = parse_function_url(url)
    if shape.kind == "local":
        assert shape.function is not None
        _check_url(client, shape.function, shape.qualifier, url)
        return resolve_target(client, shape.function, shape.qualifier)
    if shape.kind != "aws":
        return None
    candidates = [function] if function else _function_names(client, call_api)
    for name in candidates:
        configs = call_api(client, "list_function_url_configs", FunctionName=name)
        for cfg in configs.get("FunctionUrlConfigs", []):
            if _same_url(cfg["FunctionUrl"], url):
                arn = cfg["FunctionArn"]
                qualifier = arn.split(":")[7] if arn.count(":") >= 7 else None
                return resolve_target(client, name, qualifier)
    return None


def _function_names(client: Any, call_api: Any) -> list[str]:
    names: list[str] = []
    marker = None
    while len(names) < _MAX_SCANNED:
        page = call_api(client, "list_functions", **({"Marker": marker} if marker else {}))
        names.extend(f["FunctionName"] for f in page.get("Functions", []))
        marker = page.get("NextMarker")
        if not marker:
            break
    return names[:_MAX_SCANNED]


def _check_url(client: Any, name: str, qualifier: str | None, url: str) -> None:
    """Raise unless name/qualifier has a URL config that this URL is (the path is not enough)."""
    from lambdakit.aws.connection import call_api

    where = {"Qualifier": qualifier} if qualifier else {}
    cfg = call_api(client, "get_function_url_config", FunctionName=name, **where)
    if not _same_url(cfg["FunctionUrl"], url):
        raise LambdakitError(f"{safe_url(url)} is not the URL of {name} ({cfg['FunctionUrl']})")


def _same_url(function_url: str, url: str) -> bool:
    """True when url is function_url or a path under it (host compared without credentials)."""
    base, given = urlsplit(function_url), urlsplit(url)
    same_host = (base.scheme, base.hostname, base.port) == (
        given.scheme,
        given.hostname,
        given.port,
    )
    return same_host and (given.path + "/").startswith(base.path.rstrip("/") + "/")
