"""Function URLs: their configuration API (2021-10-31 paths) and the URLs themselves.

A URL is served by the same server and port as the API, under a path naming the function
and qualifier, since there is no per-function DNS here:

    http://127.0.0.1:PORT/lambda-url/<function>/...            ($LATEST)
    http://127.0.0.1:PORT/lambda-url/<function>:<alias>/...    (an alias)

Whatever follows the function segment is the request's `rawPath` ("/" when nothing does).
Each request becomes a payload format 2.0 event and runs through Invoke's own machinery
(`invocations.invoke_sync`: routing, faults, throttles, concurrency, timeouts, logs and
REPORT lines); the reply follows Lambda's function URL rules (`http_reply`).

AuthType AWS_IAM needs a SigV4 signature (service "lambda") by a key the service knows
(`sigv4.py`); NONE needs a resource policy statement allowing lambda:InvokeFunctionUrl to
"*" (`policy.py`). InvokeMode RESPONSE_STREAM is refused at create/update time: replies are
buffered, and a client expecting a stream would wait on a reply shaped otherwise.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from lambdakit.local.api import SERVICE, Service
from lambdakit.local.checks import ApiError, conflict, invalid, not_found, optional
from lambdakit.local.invocations import MAX_SYNC_PAYLOAD, invoke_sync
from lambdakit.local.policy import allows_public_url
from lambdakit.local.protocol import page, parse_function_name, read_json
from lambdakit.local.sigv4 import Credential, KeyLookup, key_lookup, verify_request
from lambdakit.local.state import ACCOUNT_ID, LATEST, Store

__all__ = [
    "LOCAL_KEYS",
    "URL_KEYS",
    "URL_PREFIX",
    "add_url_routes",
    "build_event",
    "function_url",
    "http_reply",
    "local_keys",
]

log = logging.getLogger("lambdakit.local.urls")

URL_PREFIX = "/lambda-url/"
# The dummy credentials lambdakit's own clients sign with (LocalLambda.client() and
# make_client(endpoint_url=...)): known to every local service, so AWS_IAM URLs work out of
# the box with the code a notebook already uses.
LOCAL_KEYS: dict[str, str] = {"lambdakit": "lambdakit", "lambdakit-local": "local"}
URL_KEYS: web.AppKey[KeyLookup] = web.AppKey("lambdakit_url_keys", object)  # type: ignore[arg-type]

_AUTH_TYPES = ("NONE", "AWS_IAM")
_INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
_CORS_LISTS = {"AllowHeaders": 100, "AllowMethods": 6, "AllowOrigins": 100, "ExposeHeaders": 100}
_METHODS = {"GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"}
_TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
_FORBIDDEN = "Forbidden"
_BAD_GATEWAY = {"Message": "Internal Server Error"}


def local_keys(extra: Mapping[str, str | Credential] | None = None) -> KeyLookup:
    """The keys AWS_IAM URLs accept: LOCAL_KEYS, the server's own AWS_* variables, `extra`."""
    keys: dict[str, str | Credential] = dict(LOCAL_KEYS)
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        keys[access] = Credential(secret, os.environ.get("AWS_SESSION_TOKEN") or None)
    keys.update(extra or {})
    return key_lookup(keys)


def function_url(endpoint_url: str, name: str, qualifier: str | None) -> str:
    """The URL of (name, qualifier) on a local service (see the module docstring)."""
    target = name if qualifier in (None, "", LATEST) else f"{name}:{qualifier}"
    return f"{endpoint_url.rstrip('/')}{URL_PREFIX}{target}/"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- the configuration API ---------------------------------------------------------------


def _url_qualifier(store: Store, name: str, qualifier: str | None) -> str:
    """The storage key of a URL ("" for $LATEST, else the alias); refuses version numbers."""
    store.record(name)
    if qualifier in (None, "", LATEST):
        return ""
    if qualifier.isdigit():
        raise invalid(
            f"Invalid Qualifier {qualifier!r}: a function URL's qualifier is an alias name, "
            "never a version number."
        )
    store.alias(name, qualifier)  # 404 for a missing alias
    return qualifier


def _check_cors(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("Cors must be an object.")
    unknown = sorted(set(value) - {*_CORS_LISTS, "AllowCredentials", "MaxAge"})
    if unknown:
        raise invalid(f"Cors has unknown fields {unknown}.")
    out: dict[str, Any] = {}
    if "AllowCredentials" in value:
        out["AllowCredentials"] = optional(value, "AllowCredentials", bool)
    if "MaxAge" in value:
        age = optional(value, "MaxAge", int)
        if age is None or not 0 <= age <= 86400:
            raise invalid(f"Cors.MaxAge must be between 0 and 86400 seconds, got {age!r}.")
        out["MaxAge"] = age
    for field, limit in _CORS_LISTS.items():
        if field not in value:
            continue
        items = value[field]
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise invalid(f"Cors.{field} must be a list of non-empty strings.")
        if len(items) > limit:
            raise invalid(f"Cors.{field} takes at most {limit} items, got {len(items)}.")
        if field == "AllowMethods" and not set(i.upper() for i in items) <= _METHODS:
            raise invalid(f"Cors.AllowMethods takes {sorted(_METHODS)}, got {items}.")
        out[field] = list(items)
    return out


def _apply(cfg: dict[str, Any], body: dict[str, Any], *, creating: bool) -> None:
    auth = optional(body, "AuthType", str)
    if auth is None and creating:
        raise invalid("AuthType is required: NONE or AWS_IAM.")
    if auth is not None:
        if auth not in _AUTH_TYPES:
            raise invalid(f"AuthType must be NONE or AWS_IAM, got {auth!r}.")
        cfg["AuthType"] = auth
    mode = optional(body, "InvokeMode", str)
    if mode is not None:
        if mode not in _INVOKE_MODES:
            raise invalid(f"InvokeMode must be BUFFERED or RESPONSE_STREAM, got {mode!r}.")
        if mode == "RESPONSE_STREAM":
            raise invalid(
                "InvokeMode RESPONSE_STREAM is not supported by lambdakit local: its function "
                "URLs buffer the whole reply (InvokeMode BUFFERED, the default)."
            )
        cfg["InvokeMode"] = mode
    if "Cors" in body and body["Cors"] is not None:
        cfg["Cors"] = _check_cors(body["Cors"])


def _shown(service: Service, name: str, key: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A stored URL config as the API returns it; the URL follows the service's endpoint."""
    endpoint = service.environments.endpoint_url or ""
    qualifier = key or None
    return {
        "FunctionUrl": function_url(endpoint, name, qualifier),
        "FunctionArn": service.store.arn(name, qualifier),
        **cfg,
    }


def _urls(store: Store, name: str) -> dict[str, dict[str, Any]]:
    """The function's URL configs ("" for $LATEST); Store.delete_alias drops an alias's."""
    return store.record(name).setdefault("urls", {})


def _request_target(request: web.Request) -> tuple[Service, str, str]:
    service = request.app[SERVICE]
    name, qualifier = parse_function_name(
        request.match_info["name"], request.query.get("Qualifier")
    )
    return service, name, _url_qualifier(service.store, name, qualifier)


async def create_url_config(request: web.Request) -> web.Response:
    """CreateFunctionUrlConfig (201)."""
    service, name, key = _request_target(request)
    body = await read_json(request)
    urls = _urls(service.store, name)
    if key in urls:
        raise conflict(
            f"Failed to create function url config for [functionArn = "
            f"{service.store.arn(name, key or None)}]. Error message:  FunctionUrlConfig exists "
            "for this Lambda function"
        )
    stamp = _now()
    cfg: dict[str, Any] = {"InvokeMode": "BUFFERED", "CreationTime": stamp}
    _apply(cfg, body, creating=True)
    cfg["LastModifiedTime"] = stamp
    urls[key] = cfg
    service.store.save(name)
    shown = _shown(service, name, key, cfg)
    shown.pop("LastModifiedTime")  # not part of CreateFunctionUrlConfig's reply
    return web.json_response(shown, status=201)


def _config(service: Service, name: str, key: str) -> dict[str, Any]:
    cfg = _urls(service.store, name).get(key)
    if cfg is None:
        raise not_found("The resource you requested does not exist.")
    return cfg


async def get_url_config(request: web.Request) -> web.Response:
    """GetFunctionUrlConfig."""
    service, name, key = _request_target(request)
    return web.json_response(_shown(service, name, key, _config(service, name, key)))


async def update_url_config(request: web.Request) -> web.Response:
    """UpdateFunctionUrlConfig: only the fields given change."""
    service, name, key = _request_target(request)
    body = await read_json(request)
    cfg = dict(_config(service, name, key))
    _apply(cfg, body, creating=False)
    cfg["LastModifiedTime"] = _now()
    _urls(service.store, name)[key] = cfg
    service.store.save(name)
    return web.json_response(_shown(service, name, key, cfg))


async def delete_url_config(request: web.Request) -> web.Response:
    """DeleteFunctionUrlConfig (204)."""
    service, name, key = _request_target(request)
    _config(service, name, key)
    del _urls(service.store, name)[key]
    service.store.save(name)
    return web.Response(status=204)


async def list_url_configs(request: web.Request) -> web.Response:
    """ListFunctionUrlConfigs, paginated by Marker/MaxItems."""
    service = request.app[SERVICE]
    name, _ = parse_function_name(request.match_info["name"])
    items = [
        _shown(service, name, key, cfg) for key, cfg in sorted(_urls(service.store, name).items())
    ]
    return page(request, items, "FunctionUrl", "FunctionUrlConfigs")


# -- the URLs ------------------------------------------------------------------------------


def _url_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    """An error as function URLs answer it: {"Message": ...} and x-amzn-ErrorType."""
    return web.json_response(
        {"Message": message}, status=status, headers={"x-amzn-ErrorType": code, **headers}
    )


def _is_text(content_type: str) -> bool:
    lowered = content_type.lower()
    return any(marker in lowered for marker in _TEXT_TYPES)


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    request_id: str,
    domain: str,
    url_id: str,
    protocol: str = "HTTP/1.1",
    authorizer: dict[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload format 2.0 event Lambda hands a function for one URL request."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[lowered] = f"{joined[lowered]},{value}" if lowered in joined else value
    joined.setdefault("x-forwarded-for", source_ip)
    joined.setdefault("x-forwarded-proto", "http")
    stamp = time.time() if now is None else now
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if raw_query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID if authorizer else "anonymous",
        "apiId": url_id,
        "domainName": domain,
        "domainPrefix": url_id,
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(stamp * 1000),
    }
    if authorizer:
        context["authorizer"] = authorizer
    event["requestContext"] = context
    if body:
        text = None
        if _is_text(joined.get("content-type", "")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        event["body"] = text if text is not None else base64.b64encode(body).decode()
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


class _BadReply(Exception):
    """A function reply that Lambda cannot turn into an HTTP response (answered 502)."""


def http_reply(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for a function's reply, by Lambda's function URL rules.

    A dict with `statusCode` is read field by field (headers, multiValueHeaders, cookies,
    body, isBase64Encoded); any other JSON value, a dict without statusCode included, is
    200 `application/json` with the reply itself as the body. Raises _BadReply otherwise.
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _BadReply(f"the reply is not JSON: {exc}") from None
    if not isinstance(value, dict) or "statusCode" not in value:
        return 200, [("Content-Type", "application/json")], payload
    status = value["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _BadReply(f"statusCode must be an integer 100-599, got {status!r}")
    headers: list[tuple[str, str]] = []
    single = value.get("headers") or {}
    multi = value.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise _BadReply("headers and multiValueHeaders must be objects")
    for name, raw in single.items():
        headers.append((str(name), _header_value(name, raw)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise _BadReply(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name), _header_value(name, v)) for v in values)
    cookies = value.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise _BadReply("cookies must be a list of strings")
    headers.extend(("Set-Cookie", cookie) for cookie in cookies)
    body = value.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        raise _BadReply(f"body must be a string, got {type(body).__name__}")
    elif value.get("isBase64Encoded") is True:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _BadReply(f"isBase64Encoded is true but body is not base64: {exc}") from None
    else:
        data = body.encode()
    if data and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return status, headers, data


def _header_value(name: Any, raw: Any) -> str:
    if isinstance(raw, (str, int, float, bool)):
        return str(raw).lower() if isinstance(raw, bool) else str(raw)
    raise _BadReply(f"header {name!r} must be a string or number, got {type(raw).__name__}")


def _origin_allowed(cors: dict[str, Any], origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for origin, None when Cors does not allow it."""
    allowed = cors.get("AllowOrigins", [])
    if "*" in allowed:
        return origin if cors.get("AllowCredentials") else "*"
    return origin if origin in allowed else None


def _cors_headers(cors: dict[str, Any], origin: str | None) -> dict[str, str]:
    if not cors or origin is None:
        return {}
    allow = _origin_allowed(cors, origin)
    if allow is None:
        return {}
    out = {"Access-Control-Allow-Origin": allow}
    if cors.get("AllowCredentials"):
        out["Access-Control-Allow-Credentials"] = "true"
    if cors.get("ExposeHeaders"):
        out["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    if allow != "*":
        out["Vary"] = "Origin"
    return out


def _preflight(cors: dict[str, Any], request: web.Request) -> web.Response:
    """Answer a CORS preflight from the URL's Cors settings (the function is not invoked)."""
    origin = request.headers.get("Origin", "")
    wanted = request.headers.get("Access-Control-Request-Method", "").upper()
    headers = _cors_headers(cors, origin)
    methods = [m.upper() for m in cors.get("AllowMethods", [])]
    if headers and ("*" in methods or wanted in methods):
        headers["Access-Control-Allow-Methods"] = ",".join(methods)
        if cors.get("AllowHeaders"):
            headers["Access-Control-Allow-Headers"] = ",".join(cors["AllowHeaders"])
        if "MaxAge" in cors:
            headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
    else:
        headers = {}  # not allowed: no CORS headers, so the browser refuses the request
    return web.Response(status=200, headers=headers)


def _url_id(name: str, key: str) -> str:
    """A stable 32-character id, in the place of AWS's URL id (the first DNS label)."""
    return hashlib.sha256(f"{name}:{key}".encode()).hexdigest()[:32]


async def serve_url(request: web.Request) -> web.StreamResponse:
    """One request to a function URL: auth, CORS, the 2.0 event, Invoke, the HTTP reply."""
    service = request.app[SERVICE]
    store = service.store
    try:
        name, qualifier = parse_function_name(request.match_info["target"])
    except ApiError:
        return _url_error(404, "ResourceNotFoundException", "No such function URL.")
    key = "" if qualifier in (None, LATEST) else qualifier
    try:
        record = store.record(name)
    except ApiError:
        record = None
    cfg = (record or {}).get("urls", {}).get(key)
    if record is None or cfg is None or (key and key not in record["aliases"]):
        return _url_error(
            404, "ResourceNotFoundException",
            f"No function URL for {store.arn(name, key or None)}: CreateFunctionUrlConfig first.",
        )  # fmt: skip
    cors = cfg.get("Cors") or {}
    origin = request.headers.get("Origin")
    if (
        request.method == "OPTIONS"
        and cors
        and origin is not None
        and "Access-Control-Request-Method" in request.headers
    ):
        return _preflight(cors, request)
    authorizer = None
    if cfg["AuthType"] == "AWS_IAM":
        # Any region in the scope: clients sign with their own default region, and this one
        # service stands for every region.
        verdict = await verify_request(request, service="lambda", keys=request.app[URL_KEYS])
        if not verdict.ok:
            message = _FORBIDDEN if verdict.kind == "unsigned" else verdict.message
            return _url_error(403, verdict.code or "AccessDeniedException", message)
        authorizer = {
            "iam": {
                "accessKey": verdict.access_key, "accountId": ACCOUNT_ID,
                "callerId": verdict.access_key, "principalOrgId": None,
                "userArn": f"arn:aws:iam::{ACCOUNT_ID}:root", "userId": ACCOUNT_ID,
            }
        }  # fmt: skip
    elif not allows_public_url(store, name, key or None):
        return _url_error(403, "AccessDeniedException", _FORBIDDEN)
    if request.content_length is not None and request.content_length > MAX_SYNC_PAYLOAD:
        return _too_large()
    body = await request.read()
    if len(body) > MAX_SYNC_PAYLOAD:
        return _too_large()
    raw_path, _, raw_query = request.raw_path.partition("?")
    # The raw path still carries the target as sent (maybe percent-encoded): cut its segment.
    rest = raw_path[len(URL_PREFIX) :].partition("/")[2] if raw_path.startswith(URL_PREFIX) else ""
    request_id = request["request_id"]
    event = build_event(
        method=request.method,
        raw_path="/" + rest,
        raw_query=raw_query,
        headers=request.headers.items(),
        body=body,
        source_ip=request.remote or "127.0.0.1",
        request_id=request_id,
        domain=request.host,
        url_id=_url_id(name, key),
        protocol=f"HTTP/{request.version.major}.{request.version.minor}",
        authorizer=authorizer,
    )
    _, result = await invoke_sync(service, name, key or None, orjson.dumps(event), request_id)
    extra = _cors_headers(cors, origin)
    if result.function_error:
        return web.json_response(_BAD_GATEWAY, status=502, headers=extra)
    try:
        status, headers, data = http_reply(result.payload)
    except _BadReply as exc:
        log.info("function URL of %s: reply refused (502): %s", name, exc)
        return web.json_response(_BAD_GATEWAY, status=502, headers=extra)
    response = web.Response(status=status, body=data)
    for header, value in headers:
        if header.lower() in _HOP_BY_HOP:
            continue  # the server frames the reply itself; a function's value would break it
        if header.lower() == "content-type":
            response.headers["Content-Type"] = value
        else:
            response.headers.add(header, value)
    for header, value in extra.items():
        response.headers[header] = value
    return response


def _too_large() -> web.Response:
    return _url_error(
        413, "RequestEntityTooLargeException",
        f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for a function URL.",
    )  # fmt: skip


def add_url_routes(app: web.Application, keys: KeyLookup | None = None) -> None:
    """Mount the URL configuration API and the URLs; `keys` sign AWS_IAM requests."""
    app[URL_KEYS] = keys or local_keys()
    fn = "/2021-10-31/functions/{name}"
    app.router.add_post(fn + "/url", create_url_config)
    app.router.add_get(fn + "/url", get_url_config)
    app.router.add_put(fn + "/url", update_url_config)
    app.router.add_delete(fn + "/url", delete_url_config)
    app.router.add_get(fn + "/urls", list_url_configs)
    app.router.add_route("*", URL_PREFIX + "{target}", serve_url)
    app.router.add_route("*", URL_PREFIX + "{target}/{tail:.*}", serve_url)
