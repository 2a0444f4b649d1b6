"""Orchestrator: split {"Items": [...]} into chunks and invoke a worker function for each.

Request: {"Items": [...], "BatchInput": {...}?}   (BatchInput is passed on to every chunk)

Response: {"outputs": [one per item, in order], "batchItemFailures": [...], "chunks": N,
           "throttle_retries": N}
  An item fails when the worker reported it (its batchItemFailures) or when its whole chunk
  failed: a function error, an API error, a reply that breaks the batch contract, or
  throttles that outlasted the retries. Every failed item is listed with its position in
  this request (or its ID_FIELD value) and the reason, so nothing is lost silently; its
  output is null.

Environment:
  WORKER_FUNCTION       the worker's name or ARN (optionally name:qualifier); required
  CHUNK_SIZE            items per worker invocation (default 100)
  MAX_WORKERS           invocations in flight at once, one thread each (default 8)
  MAX_THROTTLE_RETRIES  retries of a throttled chunk (429) before it fails (default 20)
  RETRY_BASE_S          first backoff, doubled per throttle, full jitter (default 0.05)
  RETRY_MAX_S           longest backoff (default 2.0)
  ID_FIELD              record field to report as itemIdentifier instead of the position

Inside Lambda, boto3 finds the credentials Lambda injects; under lambdakit local,
AWS_ENDPOINT_URL_LAMBDA (set for every environment) points it at the local service. boto3's
own retries are off: a throttle is retried here, deliberately, and counted.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["ChunkFailed", "Throttled", "fan_out", "handler", "read_reply"]

Invoke = Callable[[bytes], bytes]  # a chunk's request body -> the worker's reply body


class Throttled(Exception):
    """The worker could not take the chunk now (HTTP 429): nothing ran, try again later."""


class ChunkFailed(Exception):
    """The chunk failed as a whole; the message says why."""


def read_reply(payload: bytes, n_items: int) -> tuple[list[Any], dict[int, str]]:
    """A worker's reply by the batch contract: (outputs, {position: reason} of failed items)."""
    try:
        reply = json.loads(payload)
    except ValueError as exc:
        raise ChunkFailed(f"the worker's reply is not JSON: {exc}") from None
    if isinstance(reply, list):
        if len(reply) != n_items:
            raise ChunkFailed(f"the worker returned {len(reply)} outputs for {n_items} items")
        return reply, {}
    if isinstance(reply, dict) and "batchItemFailures" in reply:
        outputs = reply.get("outputs")
        if not (isinstance(outputs, list) and len(outputs) == n_items):
            raise ChunkFailed(f"the worker's outputs beside batchItemFailures are not {n_items}")
        failed = {}
        for failure in reply["batchItemFailures"] or []:
            position = _position(failure, n_items)
            failed[position] = str(failure.get("errorMessage") or "reported by the worker")
        return outputs, failed
    raise ChunkFailed(f"the worker returned a {type(reply).__name__}, not one output per item")


def _position(failure: Any, n_items: int) -> int:
    identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
    try:
        position = int(str(identifier))
    except ValueError:
        position = -1
    if not 0 <= position < n_items:
        raise ChunkFailed(f"the worker reported an item that is not in the chunk: {identifier!r}")
    return position


def fan_out(
    items: list[Any],
    invoke: Invoke,
    *,
    chunk_size: int = 100,
    max_workers: int = 8,
    batch_input: Any = None,
    max_throttle_retries: int = 20,
    retry_base_s: float = 0.05,
    retry_max_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Invoke the worker for every chunk of `items` in threads; gather outputs and failures."""
    if chunk_size < 1 or max_workers < 1:
        raise ValueError("CHUNK_SIZE and MAX_WORKERS must be at least 1")
    rng = rng or random.Random()
    starts = list(range(0, len(items), chunk_size))
    throttle_retries = [0] * len(starts)

    def run_chunk(index: int) -> tuple[list[Any], dict[int, str]]:
        chunk = items[starts[index] : starts[index] + chunk_size]
        request: dict[str, Any] = {"Items": chunk}
        if batch_input is not None:
            request["BatchInput"] = batch_input
        body = json.dumps(request).encode()
        for attempt in range(max_throttle_retries + 1):
            try:
                return read_reply(invoke(body), len(chunk))
            except Throttled:
                if attempt == max_throttle_retries:
                    raise ChunkFailed(
                        f"throttled {attempt + 1} times: the worker's concurrency stayed full"
                    ) from None
                throttle_retries[index] += 1
                # Full jitter: chunks throttled together do not all come back together.
                sleep(rng.uniform(0, min(retry_max_s, retry_base_s * 2**attempt)))
        raise AssertionError("unreachable")  # the loop returns or raises

    outputs: list[Any] = [None] * len(items)
    failures: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [pool.submit(run_chunk, index) for index in range(len(starts))]
        for index, future in enumerate(futures):
            start = starts[index]
            size = min(chunk_size, len(items) - start)
            try:
                chunk_outputs, failed = future.result()
            except ChunkFailed as exc:
                failures.update({start + i: f"chunk {index}: {exc}" for i in range(size)})
                continue
            for i, output in enumerate(chunk_outputs):
                if i in failed:
                    failures[start + i] = failed[i]
                else:
                    outputs[start + i] = output
    return {
        "outputs": outputs,
        "failures": failures,
        "chunks": len(starts),
        "throttle_retries": sum(throttle_retries),
    }


def _lambda_invoke(function: str, timeout_s: float, max_workers: int) -> Invoke:
    """The worker's Invoke through boto3, 429 raised as Throttled, errors as ChunkFailed."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    config = Config(
        retries={"total_max_attempts": 1},  # throttles are retried by fan_out, on purpose
        max_pool_connections=max_workers,
        read_timeout=timeout_s,
        connect_timeout=10,
    )
    client = boto3.client("lambda", config=config)

    def invoke(body: bytes) -> bytes:
        try:
            response = client.invoke(FunctionName=function, Payload=body)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "TooManyRequestsException":
                raise Throttled(error.get("Message", "")) from None
            raise ChunkFailed(f"{error.get('Code')}: {error.get('Message')}") from None
        except BotoCoreError as exc:
            raise ChunkFailed(f"{type(exc).__name__}: {exc}") from None
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            try:
                detail = json.loads(payload)
                reason = f"{detail.get('errorType')}: {detail.get('errorMessage')}"
            except (ValueError, AttributeError):
                reason = payload[:200].decode("utf-8", "replace")
            raise ChunkFailed(f"the worker failed ({reason})")
        return payload

    return invoke


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    items = event.get("Items") if isinstance(event, dict) else None
    if not isinstance(items, list):
        raise ValueError('expected a batch request {"Items": [...]}; got ' + type(event).__name__)
    worker = os.environ.get("WORKER_FUNCTION")
    if not worker:
        raise ValueError("WORKER_FUNCTION must name the worker function")
    max_workers = int(os.environ.get("MAX_WORKERS", "8"))
    # A worker call may take as long as this invocation has left, not longer.
    remaining_s = context.get_remaining_time_in_millis() / 1000 if context else 60.0
    result = fan_out(
        items,
        _lambda_invoke(worker, max(remaining_s, 1.0), max_workers),
        chunk_size=int(os.environ.get("CHUNK_SIZE", "100")),
        max_workers=max_workers,
        batch_input=event.get("BatchInput"),
        max_throttle_retries=int(os.environ.get("MAX_THROTTLE_RETRIES", "20")),
        retry_base_s=float(os.environ.get("RETRY_BASE_S", "0.05")),
        retry_max_s=float(os.environ.get("RETRY_MAX_S", "2.0")),
    )
    id_field = os.environ.get("ID_FIELD") or None
    failures = []
    for position, reason in sorted(result["failures"].items()):
        record = items[position]
        identifier = record.get(id_field) if id_field and isinstance(record, dict) else None
        failures.append(
            {"itemIdentifier": str(position if identifier is None else identifier),
             "errorMessage": reason}
        )  # fmt: skip
    print(
        f"fan_out: {len(items)} items in {result['chunks']} chunks, {len(failures)} failed, "
        f"{result['throttle_retries']} throttle retries"
    )
    return {
        "outputs": result["outputs"],
        "batchItemFailures": failures,
        "chunks": result["chunks"],
        "throttle_retries": result["throttle_retries"],
    }
