"""The wire protocol shared by every route: AWS error replies, JSON bodies, names, pagination.

Every error leaves as AWS sends it: the `x-amzn-ErrorType` header with the full code and a
JSON body `{"Type", "Message"}` (`message` for the error shapes whose botocore model spells
it so), plus `Reason` and a `Retry-After` header for a 429.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lambdakit.local.checks import ApiError, bad_content, invalid, not_found
from lambdakit.local.validation import OPERATION, validator

__all__ = [
    "error_middleware",
    "error_response",
    "page",
    "parse_function_name",
    "public",
    "read_json",
]

log = logging.getLogger("lambdakit.local.protocol")

_QUALIFIER_RE = re.compile(r"^(\$LATEST|[a-zA-Z0-9_-]{1,128})$")
_NAME_RE = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):)?"
    r"(?:function:)?([a-zA-Z0-9_-]{1,64})(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$"
)


def error_response(exc: ApiError, request_id: str | None = None) -> web.Response:
    """The reply AWS sends for an API error."""
    headers = {"x-amzn-ErrorType": exc.code, "x-amzn-RequestId": request_id or str(uuid.uuid4())}
    if exc.retry_after is not None:
        headers["Retry-After"] = f"{exc.retry_after:g}"
    return web.json_response(exc.body(), status=exc.status, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into an AWS-shaped error reply."""
    request_id = str(uuid.uuid4())
    request["request_id"] = request_id
    try:
        response = await handler(request)
    except ApiError as exc:
        return error_response(exc, request_id)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            code, message = (
                "UnknownOperationException",
                f"Unknown operation {request.method} {request.path}",
            )
        elif exc.status == 413:
            code, message = "RequestEntityTooLargeException", f"Request too large: {exc.text}"
        else:
            code, message = "InvalidRequestContentException", exc.text or exc.reason
        return error_response(ApiError(exc.status, code, message), request_id)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        log.exception("unexpected failure serving %s %s", request.method, request.path)
        failure = ApiError(
            500,
            "ServiceException",
            f"lambdakit local failed: {type(exc).__name__}: {exc}",
            error_type="Service",
        )
        return error_response(failure, request_id)
    response.headers.setdefault("x-amzn-RequestId", request_id)
    return response


async def read_json(request: web.Request, *, limit: int = 6_291_456) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty); errors name the problem."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413,
            "RequestEntityTooLargeException",
            f"Request must be smaller than {limit} bytes for this operation.",
        )
    raw = await request.read()
    if len(raw) > limit:
        raise ApiError(
            413,
            "RequestEntityTooLargeException",
            f"Request must be smaller than {limit} bytes for this operation.",
        )
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_content(f"Could not parse request body into json: {exc}") from None
    except RecursionError:
        raise bad_content(
            "Could not parse request body into json: it is nested too deeply."
        ) from None
    if not isinstance(body, dict):
        raise bad_content("Could not parse request body into json: expected a JSON object.")
    operation = request.get(OPERATION)
    if operation is not None:
        validator().check_body(operation, body)  # the model's constraints: ValidationException
    return body


def parse_function_name(
    raw: str,
    qualifier: str | None = None,
    *,
    region: str | None = None,
    account: str | None = None,
) -> tuple[str, str | None]:
    """(name, qualifier) from a name, name:qualifier, a full ARN or a partial ARN.

    An ARN naming another region or account than the service's (when given) names no
    function here: ResourceNotFoundException, as AWS answers.
    """
    match = _NAME_RE.match(raw or "")
    if match is None:
        raise invalid(
            f"Invalid function name or ARN {raw!r}: expected a name, name:qualifier, "
            "a full ARN or a partial ARN (123456789012:function:name)."
        )
    name, derived = match.group(3), match.group(4)
    elsewhere = (region is not None and match["region"] not in (None, region)) or (
        account is not None and match["account"] not in (None, account)
    )
    if elsewhere:
        raise not_found(f"Function not found: {raw}")
    if qualifier == "":
        qualifier = None
    if qualifier is not None and not _QUALIFIER_RE.match(qualifier):
        raise invalid(
            f"Invalid Qualifier {qualifier[:140]!r}: $LATEST, a version number or an alias name "
            "(1-128 of [a-zA-Z0-9-_])."
        )
    if derived and qualifier and derived != qualifier:
        raise invalid(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return name, derived or qualifier


def public(cfg: dict[str, Any], **override: Any) -> dict[str, Any]:
    """A stored configuration as the API shows it (with `override` applied)."""
    # Keys starting with "_" are the store's bookkeeping, never part of the API.
    return {k: v for k, v in cfg.items() if not k.startswith("_")} | override


def page(
    request: web.Request, items: list[dict[str, Any]], key: str, result_key: str
) -> web.Response:
    """Paginate with Marker (the first key of the next page) and MaxItems, as AWS does."""
    raw_max = request.query.get("MaxItems", "50")
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= 10000:
        raise invalid(f"MaxItems must be an integer between 1 and 10000, got {raw_max!r}.")
    start = 0
    marker = request.query.get("Marker")
    if marker:
        keys = [item[key] for item in items]
        if marker not in keys:
            raise invalid(f"Invalid Marker {marker!r}: it names no item of this listing.")
        start = keys.index(marker)
    chunk = items[start : start + int(raw_max)]
    out: dict[str, Any] = {result_key: [public(i) for i in chunk]}
    if start + len(chunk) < len(items):
        out["NextMarker"] = items[start + len(chunk)][key]
    return web.json_response(out)
