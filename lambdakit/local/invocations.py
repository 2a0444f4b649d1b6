"""Invoke: `POST /2015-03-31/functions/{FunctionName}/invocations`, as AWS answers it.

Resolves the qualifier (version, alias with weighted routing, $LATEST), applies injected
faults, and runs the payload in an execution environment: synchronously (200), queued
(`Event`, 202) or not at all (`DryRun`, 204). `X-Amz-Executed-Version` is always set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any

import orjson
from aiohttp import web

from lambdakit.local.api import SERVICE, Service
from lambdakit.local.checks import ApiError, bad_content, invalid, not_found, not_ready
from lambdakit.local.environments import CapacityExceeded, InvokeResult
from lambdakit.local.events import Event, EventResult
from lambdakit.local.process import FunctionSpec
from lambdakit.local.protocol import parse_function_name
from lambdakit.local.state import LATEST

__all__ = [
    "add_invoke_routes",
    "invoke",
    "invoke_event",
    "invoke_sync",
    "log_tail",
    "run_event",
]

log = logging.getLogger("lambdakit.local.invocations")

MAX_SYNC_PAYLOAD = 6_291_456
MAX_EVENT_PAYLOAD = 1_048_576
MAX_CLIENT_CONTEXT = 3_583
LOG_TAIL_BYTES = 4_096
_TYPES = ("RequestResponse", "Event", "DryRun")


def _route(service: Service, name: str, qualifier: str | None) -> tuple[str, str]:
    """(executed version, invoked ARN); an alias picks a version by its routing weights."""
    store = service.store
    invoked_arn = store.arn(name, qualifier)
    if qualifier in (None, LATEST):
        store.record(name)
        return LATEST, invoked_arn
    if qualifier.isdigit():
        store.config(name, qualifier)
        return qualifier, invoked_arn
    try:
        routes = store.alias_routes(name, qualifier)
    except ApiError as exc:
        raise not_found(f"Function not found: {invoked_arn}") from exc
    if len(routes) == 1:
        return routes[0][0], invoked_arn
    draw, total = service.rng.random(), 0.0
    for version, weight in routes[1:]:
        total += weight
        if draw < total:
            return version, invoked_arn
    return routes[0][0], invoked_arn


def _spec(service: Service, name: str, version: str) -> FunctionSpec:
    """The environment description of one function version, as it runs now."""
    store = service.store
    cfg = store.live_config(name, version)
    if cfg["State"] != "Active":
        raise not_ready(cfg["State"])
    reserved = store.concurrency(name)
    cached = service.specs.get((name, version))
    if (
        cached is not None
        and cached.revision == cfg["RevisionId"]
        and cached.reserved_concurrency == reserved
    ):
        return cached  # the hot path: building a spec costs more than the rest of routing
    logging_config = cfg.get("LoggingConfig") or {}
    spec = FunctionSpec(
        function_name=name,
        version=version,
        function_arn=store.arn(name),
        code_dir=store.code_dir(cfg),
        opt_dir=store.opt_dir(cfg),
        handler=cfg.get("Handler", ""),
        runtime=cfg["Runtime"],
        timeout_s=float(cfg["Timeout"]),
        memory_mb=int(cfg["MemorySize"]),
        environment=dict(cfg["Environment"]["Variables"]),
        revision=cfg["RevisionId"],
        reserved_concurrency=reserved,
        tmp_mb=int(cfg["EphemeralStorage"]["Size"]) if cfg.get("_PrivateTmp") else None,
        log_format=logging_config.get("LogFormat", "Text"),
        application_log_level=logging_config.get("ApplicationLogLevel"),
        system_log_level=logging_config.get("SystemLogLevel"),
    )
    service.specs[(name, version)] = spec
    return spec


def log_tail(log_text: str, limit: int = LOG_TAIL_BYTES) -> bytes:
    """The last `limit` bytes of a log, starting on a whole UTF-8 character."""
    tail = log_text.encode()[-limit:]
    start = 0
    while start < len(tail) and start < 4 and tail[start] & 0xC0 == 0x80:
        start += 1  # skip continuation bytes of a character cut in half
    return tail[start:]


def _throttle(reason: str, message: str = "Rate Exceeded.") -> ApiError:
    return ApiError(429, "TooManyRequestsException", message, reason=reason, retry_after=1)


def _injected_error(request_id: str) -> InvokeResult:
    body = {
        "errorMessage": f"RequestId: {request_id} Error: fault injected by lambdakit local",
        "errorType": "Lambdakit.InjectedFault",
    }
    return InvokeResult(
        payload=json.dumps(body).encode(), function_error="Unhandled",
        log=f"lambdakit local: injected error for RequestId: {request_id}\n",
        request_id=request_id, init_duration_ms=None,
    )  # fmt: skip


def _headers(request: web.Request) -> tuple[str, bool, str | None]:
    invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    if invocation_type not in _TYPES:
        raise invalid(
            f"Invalid InvocationType {invocation_type!r}: use one of {', '.join(_TYPES)}."
        )
    log_type = request.headers.get("X-Amz-Log-Type", "None")
    if log_type not in ("None", "Tail"):
        raise invalid(f"Invalid LogType {log_type!r}: use None or Tail.")
    context = request.headers.get("X-Amz-Client-Context")
    if context is not None:
        if len(context) > MAX_CLIENT_CONTEXT:
            raise invalid(f"Client context must be at most {MAX_CLIENT_CONTEXT} bytes.")
        try:
            json.loads(base64.b64decode(context, validate=True))
        except (binascii.Error, ValueError):
            raise invalid("Client context must be a base64-encoded JSON object.") from None
    return invocation_type, log_type == "Tail", context


async def _payload(request: web.Request, limit: int, operation: str) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, operation)
    return _checked_payload(await request.read(), limit, operation)


def _checked_payload(payload: bytes, limit: int, operation: str) -> bytes:
    """The payload as Invoke takes it: within `limit`, JSON, and {} when empty."""
    if len(payload) > limit:
        raise _too_large(limit, operation)
    if not payload.strip():
        return b"{}"  # Lambda hands an empty payload to the handler as {}
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise bad_content(
            f"Could not parse request body into json: Could not parse payload into json: {exc}"
        ) from None
    return payload


def _too_large(limit: int, operation: str) -> ApiError:
    return ApiError(
        413,
        "RequestEntityTooLargeException",
        f"Request must be smaller than {limit} bytes for the {operation} operation",
    )


async def invoke(request: web.Request) -> web.StreamResponse:
    """The Invoke operation."""
    service = request.app[SERVICE]
    name, qualifier = parse_function_name(
        request.match_info["name"], request.query.get("Qualifier"), **service.store.home
    )
    invocation_type, tail, context = _headers(request)
    version, invoked_arn = _route(service, name, qualifier)
    spec = _spec(service, name, version)
    headers = {"X-Amz-Executed-Version": version}
    if invocation_type == "DryRun":
        return web.Response(status=204, headers=headers)
    if invocation_type == "Event":
        payload = await _payload(request, MAX_EVENT_PAYLOAD, "InvokeAsync")
        assert service.events is not None  # set by server.build_app before serving
        event = Event(request["request_id"], name, version, invoked_arn, payload, context)
        service.events.put(event)
        return web.Response(status=202, headers=headers)
    payload = await _payload(request, MAX_SYNC_PAYLOAD, "Invoke")
    request_id = request["request_id"]
    result = await _run(service, spec, payload, request_id, invoked_arn, context, wait=False)
    headers["Content-Type"] = "application/json"
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if tail:
        headers["X-Amz-Log-Result"] = base64.b64encode(log_tail(result.log)).decode()
    return web.Response(status=200, body=result.payload, headers=headers)


def invoke_event(
    service: Service,
    name: str,
    qualifier: str | None,
    payload: bytes,
    request_id: str,
    *,
    tag: dict[str, Any] | None = None,
) -> str:
    """Accept one Event invocation as Invoke does (routing, state, 1 MB, JSON): its version.

    Raises the ApiError Invoke would answer with; the scheduler fires targets through this.
    `tag` comes back through the event queue's on_finished once the function has run.
    """
    version, invoked_arn = _route(service, name, qualifier)
    _spec(service, name, version)
    payload = _checked_payload(payload, MAX_EVENT_PAYLOAD, "InvokeAsync")
    assert service.events is not None  # set by server.build_app before serving
    service.events.put(Event(request_id, name, version, invoked_arn, payload, None, tag=tag))
    return version


async def invoke_sync(
    service: Service, name: str, qualifier: str | None, payload: bytes, request_id: str
) -> tuple[str, InvokeResult]:
    """(executed version, result) of one RequestResponse invocation, as Invoke runs it.

    Routing, faults, throttles (ApiError 429), concurrency, timeouts and logs are Invoke's
    own; function URLs call this, so they cannot drift apart.
    """
    version, invoked_arn = _route(service, name, qualifier)
    spec = _spec(service, name, version)
    result = await _run(service, spec, payload, request_id, invoked_arn, None, wait=False)
    return version, result


async def _run(
    service: Service,
    spec: FunctionSpec,
    payload: bytes,
    request_id: str,
    invoked_arn: str,
    context: str | None,
    *,
    wait: bool,
) -> InvokeResult:
    """One attempt: injected faults first, then the environment; 429 raised as ApiError."""
    decision = service.faults.decide(spec.function_name)
    if decision is not None:
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        if decision.throttle:
            raise _throttle(decision.throttle_reason, "Rate Exceeded. (injected fault)")
        if decision.error:
            return _injected_error(request_id)
    if spec.reserved_concurrency == 0:
        raise _throttle("ReservedFunctionConcurrentInvocationLimitExceeded")
    if service.rates is not None and not wait:  # the Event queue paces itself
        injected = decision.max_rps if decision is not None else None
        reason = service.rates.admit(spec.function_name, spec.reserved_concurrency, injected)
        if reason is not None:
            raise _throttle(reason)
    try:
        return await service.environments.invoke(
            spec, payload, request_id=request_id, invoked_arn=invoked_arn,
            client_context=context, wait_for_capacity=wait,
        )  # fmt: skip
    except CapacityExceeded as exc:
        raise _throttle(exc.reason) from None


async def run_event(service: Service, event: Event) -> str:
    """Run one attempt of a queued event; the EventQueue retries according to the result."""
    try:
        spec = _spec(service, event.function_name, event.version)
    except ApiError as exc:
        return EventResult.GONE if exc.status == 404 else EventResult.THROTTLED
    try:
        # Every attempt keeps the request id the Event invoke was answered with, as on AWS.
        result = await _run(
            service, spec, event.payload, event.event_id, event.invoked_arn,
            event.client_context, wait=True,
        )  # fmt: skip
    except ApiError as exc:
        if exc.status == 429:
            return EventResult.THROTTLED
        raise
    # The destination record quotes the last answer (destinations.py).
    event.response, event.function_error = result.payload, result.function_error
    if result.function_error:
        log.info("event %s of %s: function error %s", event.event_id, spec.function_name,
                 result.payload[:200])  # fmt: skip
        return EventResult.ERROR
    return EventResult.OK


def add_invoke_routes(app: web.Application) -> None:
    """Mount Invoke."""
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
