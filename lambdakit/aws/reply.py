"""Reading a Lambda reply: the batch contract (outputs, item failures, statusCode), REPORT lines."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from lambdakit.errors import InvalidInput
from lambdakit.invocation import CLIENT_ERROR, FUNCTION_ERROR, OK, REPORTED_FAILURE, TIMEOUT, Report
from lambdakit.records.encoding import dumps_exact, loads_exact

__all__ = [
    "COUNT_MISMATCH",
    "NOT_JSON",
    "NOT_PER_RECORD",
    "OUTPUT_MODES",
    "PER_BATCH",
    "PER_RECORD",
    "RAW",
    "check_outputs",
    "parse_report",
    "read_item_errors",
    "read_response",
    "read_retryable_items",
]

_TIMED_OUT = "Sandbox.Timedout"

# Alternatives longest first: at "Billed Duration" the scan must not stop at "Duration".
_REPORT_FIELD = re.compile(
    r"(Billed Duration|Init Duration|Max Memory Used|Memory Size|Duration):\s*([0-9.]+)\s*(ms|MB)"
)


def parse_report(log_text: str | None) -> Report | None:
    """Parse the last REPORT line in a log (tail), text or JSON form; None when there is none.

    The JSON form is LogFormat JSON's `platform.report` event (its record's metrics).

    >>> parse_report("REPORT RequestId: x\\tDuration: 1.50 ms\\tBilled Duration: 2 ms").duration_ms
    1.5
    """
    if not log_text:
        return None
    text_at = _text_report_at(log_text)
    json_at = log_text.rfind('"platform.report"')
    if json_at > text_at:
        found = _json_report(log_text, json_at)
        if found is not None:
            return found
    if text_at < 0:
        return None
    line = log_text[text_at:].split("\n", 1)[0]
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


def _text_report_at(log_text: str) -> int:
    """Where the last text REPORT line starts, -1 when there is none."""
    # Searched from the end (the REPORT line is the tail's last), not split line by line.
    end = len(log_text)
    while (start := log_text.rfind("REPORT ", 0, end)) >= 0:
        line_start = max(log_text.rfind("\n", 0, start), log_text.rfind("\r", 0, start)) + 1
        if not log_text[line_start:start].strip():  # at the start of a line, as Lambda puts it
            return start
        end = start
    return -1


def _json_report(log_text: str, at: int) -> Report | None:
    """The figures of the `platform.report` event on the line holding position `at`."""
    line_start = log_text.rfind("\n", 0, at) + 1
    line_end = log_text.find("\n", at)
    line = log_text[line_start : line_end if line_end >= 0 else len(log_text)]
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # a tail cut inside the line, or another log line quoting the word
    record = event.get("record") if isinstance(event, dict) else None
    if not isinstance(record, dict) or event.get("type") != "platform.report":
        return None
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        return None

    def number(key: str) -> float | None:
        value = metrics.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None

    memory, max_used = number("memorySizeMB"), number("maxMemoryUsedMB")
    return Report(
        duration_ms=number("durationMs"),
        billed_duration_ms=number("billedDurationMs"),
        memory_size_mb=int(memory) if memory is not None else None,
        max_memory_used_mb=int(max_used) if max_used is not None else None,
        init_duration_ms=number("initDurationMs"),
    )


# How a reply that is not one output per record may be read (run(outputs=...)).
PER_RECORD, PER_BATCH, RAW = "per_record", "per_batch", "raw"
OUTPUT_MODES: tuple[str, ...] = (PER_RECORD, PER_BATCH, RAW)

NOT_JSON = "Lambdakit.ResponseNotJSON"
COUNT_MISMATCH = "Lambdakit.OutputCountMismatch"
NOT_PER_RECORD = "Lambdakit.OutputNotPerRecord"
_RETRYABLE = "retryable"  # beside itemIdentifier: this item's failure is transient
_EXCERPT = 200  # characters of a wrong reply quoted in the error message

# (outcome, outputs, failed_items, error_type, error_message)
ResponseReading = tuple[str, list[Any] | None, tuple[int, ...], str | None, str | None]


def check_outputs(outputs: Any) -> str:
    """`outputs` if it names a way to read replies; InvalidInput naming the choices if not."""
    if isinstance(outputs, str) and outputs in OUTPUT_MODES:
        return outputs
    choices = ", ".join(repr(mode) for mode in OUTPUT_MODES)
    raise InvalidInput(
        f"outputs must be one of {choices} (one output per record, one output for the whole "
        f"batch, or the reply's text as it is), got {outputs!r}"
    )


def read_response(
    payload_bytes: bytes,
    function_error: str | None,
    n_items: int,
    ids: Sequence[Any] | None = None,
    outputs: str = PER_RECORD,
) -> ResponseReading:
    """Apply the batch contract to a delivered response.

    Returns (outcome, outputs, failed_items, error_type, error_message). Order, as in
    docs/architecture.md: a FunctionError fails the attempt; with outputs="raw" the reply's
    text is every record's output; a reply that is not JSON fails the attempt
    (Lambdakit.ResponseNotJSON); a dict with `statusCode` >= 400 fails it (500s are
    retryable, 4xx are not) and otherwise its body is read on; a dict with
    `batchItemFailures` fails those items (its optional `outputs` list gives the others'
    outputs, and one of the wrong length fails the attempt); a list is one output per item
    and must be as long as Items (else Lambdakit.OutputCountMismatch); any other value is one
    output for the whole batch with outputs="per_batch", and fails the attempt with the
    default outputs="per_record" (Lambdakit.OutputNotPerRecord).
    """
    if function_error:
        error_type, message = _error_fields(_decode(payload_bytes), default_type=function_error)
        outcome = TIMEOUT if error_type == _TIMED_OUT else FUNCTION_ERROR
        return outcome, None, (), error_type, message
    if outputs == RAW:
        # For custom runtimes whose replies are text: nothing is interpreted.
        return OK, [payload_bytes.decode("utf-8", "replace")] * n_items, (), None, None
    try:
        # Every digit kept: an int beyond 64 bits stays an int, a fraction a float cannot
        # hold is a JsonNumber (orjson alone reads both as floats, silently).
        result = loads_exact(payload_bytes)
    except orjson.JSONDecodeError:
        return _not_json(payload_bytes)
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
        given = result.get("outputs")
        if isinstance(given, list) and len(given) != n_items:
            return _count_mismatch("an `outputs` list", len(given), n_items)
        if given is not None and not isinstance(given, list):
            return _failed_contract(
                COUNT_MISMATCH,
                f"the function returned `outputs` as {_kind(given)} beside batchItemFailures; "
                f"return a list of {n_items} outputs, one per item, in order",
            )
        return _read_item_failures(result, n_items, ids)
    if isinstance(result, list):
        if len(result) == n_items:
            return OK, result, (), None, None
        return _count_mismatch("a list", len(result), n_items)
    if outputs == PER_BATCH:
        return OK, [result] * n_items, (), None, None
    return _failed_contract(
        NOT_PER_RECORD,
        f"the function returned {_kind(result)}, not a list of {n_items} outputs (one per "
        f'item); return one output per item, or run with outputs="per_batch" to give this '
        f"value to every record of the batch",
    )


def _failed_contract(error_type: str, message: str) -> ResponseReading:
    """A reply that breaks the contract: the attempt fails, so no record takes a wrong output."""
    return FUNCTION_ERROR, None, (), error_type, message


def _count_mismatch(what: str, got: int, n_items: int) -> ResponseReading:
    """An outputs list that cannot be matched to the items: no record may take a wrong one."""
    message = (
        f"the function returned {what} of {got} outputs for {n_items} items; return one "
        f"output per item, in order"
    )
    return _failed_contract(COUNT_MISMATCH, message)


def _not_json(payload_bytes: bytes) -> ResponseReading:
    text = payload_bytes.decode("utf-8", "replace")
    excerpt = text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else "")
    message = (
        f"the reply is not JSON ({len(payload_bytes)} bytes): {excerpt!r}; a function must "
        f'reply with JSON, or run with outputs="raw" to take its text as every record\'s output'
    )
    return _failed_contract(NOT_JSON, message)


def _kind(value: Any) -> str:
    """How a reply's value is named in an error message."""
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:5])
        return f"a dict (keys {keys})" if value else "an empty dict"
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, (int, float)):
        kind = "a number"
    else:
        kind = "a string" if isinstance(value, str) else "a value"
    return f"{kind} ({dumps_exact(value).decode()[:_EXCERPT]})"


def _decode(raw: str | bytes) -> Any:
    """JSON-decode a payload or body (every digit kept); text that is not JSON is kept as text."""
    try:
        return loads_exact(raw)
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
            message = dumps_exact(body).decode()
        return str(error_type or default_type), str(message)
    if body is None or body == "":
        return default_type, "(empty response)"
    return default_type, body if isinstance(body, str) else dumps_exact(body).decode()


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
        # whole batch, so that no record is taken for a success it may not be. The reply as
        # a whole is unusable, so it is a whole-attempt failure (no item singled out).
        key = "record ids" if ids is not None else "positions 0..n-1"
        message = f"batchItemFailures names items not in the batch ({key}): {unknown[:5]!r}"
        if ids is None and any(not str(i).lstrip("-").isdigit() for i in unknown):
            message += "; if the function reports a record field, pass id_field= its name"
        return REPORTED_FAILURE, None, (), "InvalidItemIdentifier", message
    if not failed:
        return OK, outputs, (), None, None
    reasons = (_reason(f) for f in failures if isinstance(f, dict))
    first = next((reason for reason in reasons if reason is not None), None)
    detail = f": {first}" if first is not None else ""
    message = f"{len(failed)} of {n_items} items reported failed{detail}"
    return REPORTED_FAILURE, outputs, tuple(sorted(failed)), "BatchItemFailures", message


def _reason(entry: dict[str, Any]) -> str | None:
    """A batchItemFailures entry's reason, if it gives one beside its identifier."""
    given = {k: v for k, v in entry.items() if k != _RETRYABLE}
    if all(k == "itemIdentifier" for k in given):
        return None
    return _error_fields(given, default_type="")[1]


def _failure_entries(payload_bytes: bytes) -> list[Any]:
    """The batchItemFailures list of a reply (inside a statusCode body too); [] if none."""
    result = _decode(payload_bytes)
    if isinstance(result, dict) and _as_int(result.get("statusCode")) is not None:
        body = result.get("body")
        result = _decode(body) if isinstance(body, (str, bytes)) else body
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    return failures if isinstance(failures, list) else []


def read_item_errors(
    payload_bytes: bytes, n_items: int, ids: Sequence[Any] | None = None
) -> dict[int, str]:
    """Each failed item's own reason in a `batchItemFailures` reply: {position: message}.

    read_response's message names only the first reason; this keeps every item's, so that
    each failed record is explained by its own. Items with no reason are left out.
    """
    positions = _positions(ids, n_items)
    reasons: dict[int, str] = {}
    for entry in _failure_entries(payload_bytes):
        reason = _reason(entry) if isinstance(entry, dict) else None
        if reason is not None:
            for position in positions.get(str(entry.get("itemIdentifier")), []):
                reasons[position] = reason
    return reasons


def read_retryable_items(
    payload_bytes: bytes, n_items: int, ids: Sequence[Any] | None = None
) -> tuple[int, ...]:
    """Positions of the failed items whose entry says `"retryable": true` (our extension).

    An item failure is taken as a verdict on the record (retried only `Retry.item_attempts`
    times); a handler marks a transient one (a downstream timeout, a lock) retryable, and it
    is retried as a failed attempt is, up to `Retry.max_attempts`. Only JSON `true` counts.
    """
    positions = _positions(ids, n_items)
    retryable: set[int] = set()
    for entry in _failure_entries(payload_bytes):
        if isinstance(entry, dict) and entry.get(_RETRYABLE) is True:
            retryable.update(positions.get(str(entry.get("itemIdentifier")), []))
    return tuple(sorted(retryable))


def _positions(ids: Sequence[Any] | None, n_items: int) -> dict[str, list[int]]:
    """itemIdentifier (as text, since handlers often stringify ids) -> positions in the batch."""
    if ids is None:
        return {str(i): [i] for i in range(n_items)}
    positions: dict[str, list[int]] = {}
    for position, record_id in enumerate(ids):
        positions.setdefault(str(record_id), []).append(position)
    return positions
