"""Reading a Lambda reply: the batch contract (outputs, item failures, statusCode), REPORT lines."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from lambdakit.invocation import CLIENT_ERROR, FUNCTION_ERROR, OK, REPORTED_FAILURE, TIMEOUT, Report

__all__ = ["parse_report", "read_item_errors", "read_response"]

_TIMED_OUT = "Sandbox.Timedout"

# Alternatives longest first: at "Billed Duration" the scan must not stop at "Duration".
_REPORT_FIELD = re.compile(
    r"(Billed Duration|Init Duration|Max Memory Used|Memory Size|Duration):\s*([0-9.]+)\s*(ms|MB)"
)


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
