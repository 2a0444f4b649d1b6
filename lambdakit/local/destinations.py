"""Asynchronous invocation settings: event invoke configs, destinations, dead letters.

**API** (botocore's 2019-09-25 paths): Put/Get/Update/Delete/ListFunctionEventInvokeConfigs,
per function, version or alias (`Qualifier`; none means $LATEST), kept in the function record
under `event_invoke`. `MaximumRetryAttempts` (0-2) and `MaximumEventAgeInSeconds` (60-21600)
drive the Event queue's retries (events.py); `DestinationConfig` names where a finished
event's record goes: another function of this service (invoked asynchronously with the
record as its event), or an SQS queue / SNS topic (the record kept in
`<state>/dead-letters/_<name>.jsonl`, as the scheduler keeps its dead letters). Other
destination kinds are refused: lambdakit local cannot deliver to them.

**Delivery.** When an event ends (events.EventQueue.on_finished): a success goes to
OnSuccess; a failure (RetriesExhausted, EventAgeExceeded) to OnFailure and, when the
function version has a `DeadLetterConfig`, to that queue as Lambda's dead-letter message
(Body = the event; RequestID, ErrorCode, ErrorMessage attributes). A failure with neither is
dropped, as on AWS, and the server log says so.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from aiohttp import web

from lambdakit.local.api import SERVICE, Service
from lambdakit.local.checks import ApiError, invalid, not_found, optional
from lambdakit.local.events import DEFAULT_MAX_AGE_S, Event, EventResult, RetryPolicy
from lambdakit.local.firings import DeadLetters, iso
from lambdakit.local.invocations import invoke_event
from lambdakit.local.protocol import page, parse_function_name, read_json
from lambdakit.local.state import LATEST

__all__ = ["Destinations", "add_event_invoke_routes", "destination_record"]

log = logging.getLogger("lambdakit.local.destinations")

_QUEUE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:(sqs|sns):[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")
_FUNCTION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:")


def _key(qualifier: str | None) -> str:
    return qualifier or LATEST


def _target(request: web.Request) -> tuple[Service, str, str]:
    """(service, function, qualifier key) of an event invoke config request; 404s first."""
    service = request.app[SERVICE]
    name, qualifier = parse_function_name(
        request.match_info["name"], request.query.get("Qualifier"), **service.store.home
    )
    service.store.config(name, qualifier)  # 404 for a missing function, version or alias
    return service, name, _key(qualifier)


def _destination(service: Service, given: Any, which: str) -> dict[str, str]:
    """OnSuccess / OnFailure: {} or {"Destination": arn} of a kind lambdakit local delivers to."""
    if given is None:
        return {}
    arn = optional(given, "Destination", str) or ""
    if not arn:
        return {}
    if _FUNCTION_ARN.match(arn):
        parse_function_name(arn, **service.store.home)  # another region or account: 404
        return {"Destination": arn}
    if _QUEUE_ARN.match(arn):
        return {"Destination": arn}
    raise invalid(
        f"The {which} destination {arn} is not supported by lambdakit local: it delivers to "
        "Lambda functions of this service and records SQS/SNS destinations in the state dir; "
        "EventBridge, S3 and Kafka destinations it cannot serve."
    )


def _settings(service: Service, body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The config after `body` (a Put passes current={}, an Update the stored one)."""
    out = dict(current)
    retries = optional(body, "MaximumRetryAttempts", int)
    if retries is not None:
        out["MaximumRetryAttempts"] = retries
    age = optional(body, "MaximumEventAgeInSeconds", int)
    if age is not None:
        out["MaximumEventAgeInSeconds"] = age
    destinations = optional(body, "DestinationConfig", dict)
    merged = dict(out.get("DestinationConfig") or {"OnSuccess": {}, "OnFailure": {}})
    if destinations is not None:
        for which in ("OnSuccess", "OnFailure"):
            if which in destinations:
                merged[which] = _destination(service, optional(destinations, which, dict), which)
    out["DestinationConfig"] = merged
    out["LastModified"] = time.time()
    return out


def _view(service: Service, name: str, key: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"FunctionArn": service.store.arn(name, key), **config}


def _configs(service: Service, name: str) -> dict[str, dict[str, Any]]:
    return service.store.record(name).setdefault("event_invoke", {})


def _missing(service: Service, name: str, key: str) -> ApiError:
    return not_found(
        f"The function {service.store.arn(name, key)} doesn't have an EventInvokeConfig"
    )


async def put_config(request: web.Request) -> web.Response:
    """PutFunctionEventInvokeConfig: replace the config of a function, version or alias."""
    service, name, key = _target(request)
    body = await read_json(request)
    config = _settings(service, body, {})
    _configs(service, name)[key] = config
    service.store.save(name)
    return web.json_response(_view(service, name, key, config))


async def update_config(request: web.Request) -> web.Response:
    """UpdateFunctionEventInvokeConfig: change only the fields given."""
    service, name, key = _target(request)
    body = await read_json(request)
    config = _settings(service, body, _configs(service, name).get(key, {}))
    _configs(service, name)[key] = config
    service.store.save(name)
    return web.json_response(_view(service, name, key, config))


async def get_config(request: web.Request) -> web.Response:
    """GetFunctionEventInvokeConfig."""
    service, name, key = _target(request)
    config = _configs(service, name).get(key)
    if config is None:
        raise _missing(service, name, key)
    return web.json_response(_view(service, name, key, config))


async def delete_config(request: web.Request) -> web.Response:
    """DeleteFunctionEventInvokeConfig (204)."""
    service, name, key = _target(request)
    if _configs(service, name).pop(key, None) is None:
        raise _missing(service, name, key)
    service.store.save(name)
    return web.Response(status=204)


async def list_configs(request: web.Request) -> web.Response:
    """ListFunctionEventInvokeConfigs: every qualifier's config, MaxItems at most 50."""
    service = request.app[SERVICE]
    name, _ = parse_function_name(request.match_info["name"], **service.store.home)
    items = [
        dict(_view(service, name, key, config), _Key=key)
        for key, config in sorted(_configs(service, name).items())
    ]
    return page(request, items, "_Key", "FunctionEventInvokeConfigs")


def add_event_invoke_routes(app: web.Application) -> None:
    """Mount the event invoke config operations at their botocore paths."""
    path = "/2019-09-25/functions/{name}/event-invoke-config"
    app.router.add_put(path, put_config)
    app.router.add_post(path, update_config)
    app.router.add_get(path, get_config)
    app.router.add_delete(path, delete_config)
    app.router.add_get(path + "/list", list_configs)


def _json_or_text(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def destination_record(event: Event, outcome: str, *, now: float) -> dict[str, Any]:
    """The record Lambda sends a destination about a finished event (AWS's shape)."""
    success = outcome == EventResult.OK
    invoked = event.invoked_arn if event.invoked_arn.count(":") >= 7 else (
        f"{event.invoked_arn}:{LATEST}"
    )  # fmt: skip
    attempts = event.attempts + 1 if success else max(1, event.attempts)
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso(now),
        "requestContext": {
            "requestId": event.event_id,
            "functionArn": invoked,
            "condition": "Success" if success else (event.condition or "RetriesExhausted"),
            "approximateInvokeCount": attempts,
        },
        "requestPayload": _json_or_text(event.payload),
    }
    if event.response is not None:
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": event.version}
        if event.function_error:
            context["functionError"] = event.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(event.response)
    return record


class Destinations:
    """Retry settings for the Event queue, and delivery of finished events (see above)."""

    def __init__(self, service: Service, *, clock: Any = time.time) -> None:
        self.service = service
        self.clock = clock
        self.dead_letters = DeadLetters(service.store.state_dir)

    def _config(self, event: Event) -> dict[str, Any]:
        try:
            record = self.service.store.record(event.function_name)
        except ApiError:
            return {}
        _, qualifier = parse_function_name(event.invoked_arn)
        return (record.get("event_invoke") or {}).get(_key(qualifier)) or {}

    def policy(self, event: Event) -> RetryPolicy:
        """The retry settings that apply to `event` now (its qualifier's config)."""
        config = self._config(event)
        return RetryPolicy(
            max_retries=config.get("MaximumRetryAttempts"),
            max_age_s=float(config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_S)),
        )

    def finished(self, event: Event, outcome: str) -> None:
        """Send a finished event's record where its settings say."""
        if outcome == EventResult.GONE:
            return  # the function was deleted: nothing of it is left to send to
        success = outcome == EventResult.OK
        config = self._config(event).get("DestinationConfig") or {}
        target = (config.get("OnSuccess" if success else "OnFailure") or {}).get("Destination")
        now = self.clock()
        delivered = False
        if target:
            self._deliver(target, destination_record(event, outcome, now=now), event)
            delivered = True
        if not success:
            queue = self._dead_letter_queue(event)
            if queue:
                self._dead_letter(queue, event, now)
                delivered = True
            if not delivered:
                log.warning(
                    "event %s of %s failed (%s) and was dropped, as AWS does without an "
                    "OnFailure destination or a DeadLetterConfig", event.event_id,
                    event.invoked_arn, event.condition,
                )  # fmt: skip

    def _dead_letter_queue(self, event: Event) -> str | None:
        try:
            cfg = self.service.store.live_config(event.function_name, event.version)
        except ApiError:
            return None
        return (cfg.get("DeadLetterConfig") or {}).get("TargetArn") or None

    def _dead_letter(self, queue: str, event: Event, now: float) -> None:
        """Lambda's dead-letter message: the event itself, and why it failed."""
        response = _json_or_text(event.response)
        reason = response.get("errorMessage") if isinstance(response, dict) else response
        if reason is None:
            reason = event.condition or "RetriesExhausted"
        self.dead_letters.append(queue, {
            "Time": iso(now),
            "Body": event.payload.decode("utf-8", "replace"),
            "MessageAttributes": {
                "RequestID": event.event_id, "ErrorCode": "200",
                "ErrorMessage": str(reason)[:1024],
            },
            "FunctionArn": event.invoked_arn, "Condition": event.condition,
        })  # fmt: skip

    def _deliver(self, target: str, record: dict[str, Any], event: Event) -> None:
        body = json.dumps(record).encode()
        if _QUEUE_ARN.match(target):
            self.dead_letters.append(target, {
                "Time": record["timestamp"], "Body": body.decode(),
                "MessageAttributes": {}, "FunctionArn": event.invoked_arn,
            })  # fmt: skip
            return
        try:
            name, qualifier = parse_function_name(target, **self.service.store.home)
            invoke_event(self.service, name, qualifier, body, str(uuid.uuid4()))
        except ApiError as exc:
            # AWS counts a DestinationDeliveryFailure; here the server log says what and why.
            log.error("event %s: its destination %s refused the record: %s: %s",
                      event.event_id, target, exc.code, exc.message)  # fmt: skip
