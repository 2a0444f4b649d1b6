"""Invoking a batch: the Invoker protocol, boto3's Invoke, the batch contract, REPORT lines."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from lambdakit.errors import LambdaServiceError, translate_client_error
from lambdakit.retry import (
    CLIENT_ERROR,
    CONNECTION_ERROR,
    FUNCTION_ERROR,
    OK,
    REPORTED_FAILURE,
    SERVICE_ERROR,
    THROTTLE,
    TIMEOUT,
)

if TYPE_CHECKING:
    from lambdakit.batching import Batch
    from lambdakit.discovery import Target

__all__ = [
    "PAYLOAD_TOO_LARGE",
    "Invoker",
    "LambdaInvoker",
    "Outcome",
    "Report",
    "parse_report",
    "read_item_errors",
    "read_response",
]

# The code real AWS sends for a 413 (the service model calls it RequestTooLargeException);
# every 413 is reported under this one name so the runner has one thing to look for.
PAYLOAD_TOO_LARGE = "RequestEntityTooLargeException"
_TIMED_OUT = "Sandbox.Timedout"

# Alternatives longest first: at "Billed Duration" the scan must not stop at "Duration".
_REPORT_FIELD = re.compile(
    r"(Billed Duration|Init Duration|Max Memory Used|Memory Size|Duration):\s*([0-9.]+)\s*(ms|MB)"
)


@dataclass(frozen=True, slots=True)
class Report:
    """The figures of one invocation's REPORT log line (None where the line lacks them)."""

    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    init_duration_ms: float | None = None  # present on cold starts only

    @property
    def cold_start(self) -> bool:
        """Whether the invocation initialised a new execution environment."""
        return self.init_duration_ms is not None


def parse_report(log_text: str | None) -> Report | None:
    """Parse the last REPORT line in a log (tail); None when there is none.

    >>> parse_report("REPORT RequestId: x\\tDuration: 1.50 ms\\tBilled Duration: 2 ms").duration_ms
    1.5
    """
    if not log_text:
        return None
    # Searched from the end (the REPORT line is the tail's last), not split line by line.
    end = len(log_text)
    while (start := log_text.rfind("REPORT ", 0, end)) >= 0:
        line_start = max(log_text.rfind("\n", 0, start), log_text.rfind("\r", 0, start)) + 1
        if not log_text[line_start:start].strip():  # at the start of a line, as Lambda puts it
            break
        end = start
    else:
        return None
    line = log_text[start:].split("\n", 1)[0]
    found = {name: float(value) for name, value, _ in _REPORT_FIELD.findall(line)}
    memory = found.get("Memory Size")
    max_used = found.get("Max Memory Used")
    return Report(
        duration_ms=found.get("Duration"),
        billed_duration_ms=found.get("Billed Duration"),
        memory_size_mb=int(memory) if memory is not None else None,
        max_memory_used_mb=int(max_used) if max_used is not None else None,
        init_duration_ms=found.get("Init Duration"),
    )


# (outcome, outputs, failed_items, error_type, error_message)
ResponseReading = tuple[str, list[Any] | None, tuple[int, ...], str | None, str | None]


def read_response(
    payload_bytes: bytes,
    function_error: str | None,
    n_items: int,
    ids: Sequence[Any] | None = None,
) -> ResponseReading:
    """Apply the batch contract to a delivered response.

    Returns (outcome, outputs, failed_items, error_type, error_message). Order, as in
    docs/architecture.md: a FunctionError fails the attempt; a dict with `statusCode` >= 400
    fails it (500s are retryable, 4xx are not) and otherwise its body is read on; a dict with
    `batchItemFailures` fails those items (its optional `outputs` list gives the others'
    outputs, and one of the wrong length fails the attempt); a list as long as Items is one
    output per item; anything else, a list of another length included, is one output shared
    by every item (issue #3's contract: such a list is the batch's own result).
    """
    result = _decode(payload_bytes)
    if function_error:
        error_type, message = _error_fields(result, default_type=function_error)
        outcome = TIMEOUT if error_type == _TIMED_OUT else FUNCTION_ERROR
        return outcome, None, (), error_type, message
    if isinstance(result, dict) and "statusCode" in result:
        status = _as_int(result["statusCode"])
        if status is not None:
            body = result.get("body")
            body = _decode(body) if isinstance(body, (str, bytes)) else body
            if status >= 400:
                error_type, message = _error_fields(body, default_type=f"StatusCode{status}")
                outcome = REPORTED_FAILURE if status >= 500 else CLIENT_ERROR
                return outcome, None, (), error_type, message
            result = body
    if isinstance(result, dict) and "batchItemFailures" in result:
        outputs = result.get("outputs")
        if isinstance(outputs, list) and len(outputs) != n_items:
            return _count_mismatch("an `outputs` list", len(outputs), n_items)
        return _read_item_failures(result, n_items, ids)
    if isinstance(result, list) and len(result) == n_items:
        return OK, list(result), (), None, None
    return OK, [result] * n_items, (), None, None


def _count_mismatch(what: str, got: int, n_items: int) -> ResponseReading:
    """An `outputs` list that cannot be matched to the items: no record may take a wrong one."""
    message = (
        f"the function returned {what} of {got} outputs for {n_items} items; return one "
        f"output per item, in order"
    )
    return FUNCTION_ERROR, None, (), "Lambdakit.OutputCountMismatch", message


def _decode(raw: str | bytes) -> Any:
    """JSON-decode a payload or body; text that is not JSON is kept as text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _error_fields(body: Any, *, default_type: str) -> tuple[str, str]:
    """The error type and message of an error body (a runtime error dict, a dict or text)."""
    if isinstance(body, dict):
        error_type = body.get("errorType") or body.get("type") or body.get("error_type")
        message = body.get("errorMessage") or body.get("message") or body.get("error")
        if message is None:
            message = orjson.dumps(body).decode()
        return str(error_type or default_type), str(message)
    if body is None or body == "":
        return default_type, "(empty response)"
    return default_type, body if isinstance(body, str) else orjson.dumps(body).decode()


def _read_item_failures(
    result: dict[str, Any], n_items: int, ids: Sequence[Any] | None
) -> ResponseReading:
    failures = result.get("batchItemFailures") or []
    outputs = result.get("outputs")
    if not (isinstance(outputs, list) and len(outputs) == n_items):
        outputs = [None] * n_items
    positions = _positions(ids, n_items)
    failed: set[int] = set()
    unknown: list[Any] = []
    for entry in failures if isinstance(failures, list) else [failures]:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        found = positions.get(str(identifier))
        if found is None:
            unknown.append(identifier)
        else:
            failed.update(found)
    if unknown:
        # As Lambda's event source mappings do: an identifier that names no item fails the
        # whole batch, so that no record is taken for a success it may not be.
        key = "record ids" if ids is not None else "positions 0..n-1"
        message = f"batchItemFailures names items not in the batch ({key}): {unknown[:5]!r}"
        if ids is None and any(not str(i).lstrip("-").isdigit() for i in unknown):
            message += "; if the function reports a record field, pass id_field= its name"
        return REPORTED_FAILURE, None, tuple(range(n_items)), "InvalidItemIdentifier", message
    if not failed:
        return OK, outputs, (), None, None
    first = next((f for f in failures if isinstance(f, dict) and len(f) > 1), None)
    detail = f": {_error_fields(first, default_type='')[1]}" if first else ""
    message = f"{len(failed)} of {n_items} items reported failed{detail}"
    return REPORTED_FAILURE, outputs, tuple(sorted(failed)), "BatchItemFailures", message


def read_item_errors(
    payload_bytes: bytes, n_items: int, ids: Sequence[Any] | None = None
) -> dict[int, str]:
    """Each failed item's own reason in a `batchItemFailures` reply: {position: message}.

    read_response's message names only the first reason; this keeps every item's, so that
    each failed record is explained by its own. Items with no reason are left out.
    """
    result = _decode(payload_bytes)
    if isinstance(result, dict) and _as_int(result.get("statusCode")) is not None:
        body = result.get("body")
        result = _decode(body) if isinstance(body, (str, bytes)) else body
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if not isinstance(failures, list):
        return {}
    positions = _positions(ids, n_items)
    reasons: dict[int, str] = {}
    for entry in failures:
        if isinstance(entry, dict) and len(entry) > 1:
            message = _error_fields(entry, default_type="")[1]
            for position in positions.get(str(entry.get("itemIdentifier")), []):
                reasons[position] = message
    return reasons


def _positions(ids: Sequence[Any] | None, n_items: int) -> dict[str, list[int]]:
    """itemIdentifier (as text, since handlers often stringify ids) -> positions in the batch."""
    if ids is None:
        return {str(i): [i] for i in range(n_items)}
    positions: dict[str, list[int]] = {}
    for position, record_id in enumerate(ids):
        positions.setdefault(str(record_id), []).append(position)
    return positions


@dataclass(slots=True)
class Outcome:
    """What one invocation attempt came to; outputs are per item of the batch."""

    outcome: str
    http_status: int | None = None
    executed_version: str | None = None
    request_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    retry_after_s: float | None = None
    outputs: list[Any] | None = None
    failed_items: tuple[int, ...] = ()
    log_tail: str | None = None
    report: Report | None = None
    item_errors: dict[int, str] = field(default_factory=dict)  # failed item's own reason


@runtime_checkable
class Invoker(Protocol):
    """Anything that sends a batch and says what came of it, without raising for failures."""

    def invoke(self, batch: Batch) -> Outcome:
        """Send one batch once; failures come back as an Outcome."""
        ...


class LambdaInvoker:
    """Invoke a Lambda function with boto3 (RequestResponse, LogType=Tail); never raises.

    `id_field` names the record field that handlers use as `itemIdentifier` in
    `batchItemFailures`; without it the identifier is the item's position in the batch.
    `function_name` is the FunctionName sent (default: the target's ARN); give the plain name
    the target was resolved from, as run() does, since botocore sends an ARN more slowly.
    """

    def __init__(
        self,
        client: Any,
        target: Target,
        *,
        id_field: str | None = None,
        qualifier: str | None = None,
        function_name: str | None = None,
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.client = client
        self.target = target
        self.function_name = function_name or target.function_arn
        self.id_field = id_field
        self.qualifier = qualifier if qualifier is not None else target.qualifier
        # InvocationType is left to its default, RequestResponse: one header less to sign and
        # send, which at batch_size=1 was ~5% of the client's CPU per invocation.
        self._request: dict[str, Any] = {"FunctionName": self.function_name, "LogType": "Tail"}
        if self.qualifier:
            self._request["Qualifier"] = self.qualifier
        self._errors = (ClientError, BotoCoreError)

    def invoke(self, batch: Batch) -> Outcome:
        """Send `batch.body` once and read the response by the batch contract."""
        try:
            response = self.client.invoke(**self._request, Payload=batch.body)
            payload = response["Payload"].read()
        except self._errors as exc:
            if isinstance(exc, self._errors[0]):
                return _api_error_outcome(exc)
            return _transport_error_outcome(exc)

        log_tail = _decode_log(response.get("LogResult"))
        ids = self._ids(batch.items) if self.id_field else None
        outcome, outputs, failed, error_type, message = read_response(
            payload, response.get("FunctionError"), len(batch.items), ids
        )
        reasons = read_item_errors(payload, len(batch.items), ids) if failed else {}
        return Outcome(
            outcome=outcome,
            http_status=response.get("StatusCode"),
            executed_version=response.get("ExecutedVersion"),
            request_id=response["ResponseMetadata"].get("RequestId"),
            error_type=error_type,
            error_message=message,
            outputs=outputs,
            failed_items=failed,
            log_tail=log_tail,
            report=parse_report(log_tail),
            item_errors=reasons,
        )

    def _ids(self, items: Sequence[Any]) -> list[Any]:
        # A record without the field gets None; an identifier naming it then matches nothing
        # and fails the whole batch instead of being lost.
        return [item.get(self.id_field) if isinstance(item, dict) else None for item in items]


def _decode_log(log_result: str | None) -> str | None:
    if not log_result:
        return None
    try:
        return base64.b64decode(log_result).decode("utf-8", "replace")
    except ValueError:
        return None


def _api_error_outcome(exc: BaseException) -> Outcome:
    """An Outcome for an error reply of the Invoke API (via translate_client_error)."""
    error = translate_client_error(exc, operation="Invoke")
    if not isinstance(error, LambdaServiceError):
        return Outcome(CLIENT_ERROR, error_type=type(exc).__name__, error_message=str(error))
    status = error.status
    error_type = error.code or type(error).__name__
    message = error.message + (f" ({error.reason})" if error.reason else "")
    if status == 429:
        outcome = THROTTLE
    elif status == 413:
        outcome, error_type = CLIENT_ERROR, PAYLOAD_TOO_LARGE
    elif status is not None and status >= 500:
        outcome = SERVICE_ERROR
    else:
        outcome = CLIENT_ERROR
    return Outcome(
        outcome,
        http_status=status,
        request_id=error.request_id,
        error_type=error_type,
        error_message=message,
        retry_after_s=error.retry_after,
    )


def _transport_error_outcome(exc: BaseException) -> Outcome:
    """An Outcome for a call that got no answer: a timeout, a lost connection, no credentials."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, ReadTimeoutError

    message = str(translate_client_error(exc, operation="Invoke"))
    # A read timeout means the function may have run: the retry policy decides, not botocore.
    if isinstance(exc, ReadTimeoutError):
        outcome = TIMEOUT
    elif isinstance(exc, (BotoConnectionError, HTTPClientError)):
        # Refused, reset, closed mid-response, connect timeout, broken response stream.
        outcome = CONNECTION_ERROR
    else:
        outcome = CLIENT_ERROR  # e.g. no credentials: retrying cannot help
    return Outcome(outcome, error_type=type(exc).__name__, error_message=message)
