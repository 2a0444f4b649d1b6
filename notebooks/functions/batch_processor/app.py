"""Batch handler: validate each record of {"Items": [...]} and return one output per record.

Request: {"Items": [{"id": ..., "value": <number>, "tags": [<str>, ...]?}, ...],
          "BatchInput": {"multiplier": <number>}?}   (Step Functions' ItemBatcher shape)

Response, by default:
  a list with one output per record when every record is valid, else
  {"batchItemFailures": [{"itemIdentifier": ..., "errorMessage": ...}], "outputs": [...]}
  where itemIdentifier is the record's position in the batch, or its ID_FIELD value.

Environment:
  ON_INVALID  "batch_item_failures" (default), or "status400" for the older
              {"statusCode": 400, "body": ...} contract, which fails the whole batch.
  ID_FIELD    record field to report as itemIdentifier instead of the position.

Behind a function URL or an API Gateway HTTP API (payload format 2.0), the batch is the
JSON body of the event; the reply is the same (Lambda sends a list or a dict without
statusCode as 200 JSON, and {"statusCode": 400, ...} as HTTP 400).

A malformed request (no Items list) raises: an unhandled error is reported by Lambda as a
function error, never swallowed into a success.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


class InvalidRecord(ValueError):
    """A record that cannot be processed; the message says why."""


def process(record: Any, multiplier: float) -> dict[str, Any]:
    """The output for one valid record; raises InvalidRecord for an invalid one."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"record must be an object, got {type(record).__name__}")
    if "id" not in record or record["id"] in (None, ""):
        raise InvalidRecord("record has no id")
    value = record.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRecord(
            f"record {record['id']!r}: value must be a finite number, got {value!r}"
        )
    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidRecord(f"record {record['id']!r}: tags must be a list of strings")
    return {
        "id": record["id"],
        "value": value,
        "score": round(value * multiplier, 6),
        "tags": sorted({t.strip().lower() for t in tags if t.strip()}),
    }


def http_batch(event: Any) -> Any:
    """The batch request inside a function URL / HTTP API event, or the event itself."""
    if not (isinstance(event, dict) and event.get("version") == "2.0" and "rawPath" in event):
        return event
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        import base64

        body = base64.b64decode(body).decode("utf-8")
    return json.loads(body) if body else {}


def handler(event: dict[str, Any], context: Any) -> Any:
    """Lambda entry point."""
    event = http_batch(event)
    items = event.get("Items") if isinstance(event, dict) else None
    if not isinstance(items, list):
        raise ValueError('expected a batch request {"Items": [...]}; got ' + type(event).__name__)
    batch_input = event.get("BatchInput") or {}
    multiplier = float(batch_input.get("multiplier", 1.0))
    id_field = os.environ.get("ID_FIELD") or None
    on_invalid = os.environ.get("ON_INVALID") or "batch_item_failures"
    if on_invalid not in ("batch_item_failures", "status400"):
        raise ValueError(f"ON_INVALID must be batch_item_failures or status400, not {on_invalid!r}")

    outputs: list[Any] = []
    failures: list[dict[str, Any]] = []
    for position, record in enumerate(items):
        try:
            outputs.append(process(record, multiplier))
        except InvalidRecord as exc:
            # Only invalid records are caught: any other exception is a bug and must fail.
            identifier = record.get(id_field) if id_field and isinstance(record, dict) else None
            identifier = position if identifier is None else identifier
            logger.warning("invalid record at position %d: %s", position, exc)
            failures.append({"itemIdentifier": str(identifier), "errorMessage": str(exc)})
            outputs.append(None)

    if not failures:
        return outputs
    if on_invalid == "status400":
        first = failures[0]["errorMessage"]
        body = {"error": f"{len(failures)} invalid record(s), first: {first}", "invalid": failures}
        return {"statusCode": 400, "body": json.dumps(body)}
    return {"batchItemFailures": failures, "outputs": outputs}
