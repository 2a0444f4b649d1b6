"""A batch handler with knobs for latency and failures, to demonstrate retries and throttling.

Every knob is an environment variable (deploy with environment={...}); all default to off:

  SLEEP_MS           fixed latency per invocation
  SLEEP_PER_ITEM_MS  extra latency per record in the batch
  JITTER_MS          extra latency drawn uniformly from [0, JITTER_MS)
  FAIL_RATE          probability that the invocation raises (a function error, "Unhandled")
  ITEM_FAIL_RATE     probability that a record is reported in batchItemFailures
  ITEM_RETRYABLE     1: mark those item failures "retryable": true (transient), so lambdakit
                     retries them (up to max_attempts); 0: they are verdicts, not retried
  THROTTLE_RATE      probability of answering {"statusCode": 503} as a rate-limited downstream
                     would (a retryable reported failure; Lambda's own 429s come from reserved
                     concurrency or `lambdakit local faults`)
  TIMEOUT_RATE       probability of sleeping past the function's timeout (Sandbox.Timedout)
  ALLOCATE_MB        memory to allocate and touch, to approach or exceed MemorySize
  SLOW_RATE          probability that the invocation is a straggler, taking SLOW_FACTOR x its
                     latency (SLOW_FACTOR defaults to 20). Drawn per invocation even with
                     SEED: stragglers come from the machine, not the record, so a second try
                     of the same batch is most likely fast (what hedge= relies on)
  SLOW_FACTOR        how much longer a straggler takes (default 20)
  SEED               when set, every draw is a pure function of SEED and the record content:
                     runs are reproducible, and a record that fails fails on every attempt.
                     Unset, draws are random, so a retry may succeed.

Output: one {"echo": record} per record.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from typing import Any

_KNOBS = (
    "SLEEP_MS",
    "SLEEP_PER_ITEM_MS",
    "JITTER_MS",
    "FAIL_RATE",
    "ITEM_FAIL_RATE",
    "ITEM_RETRYABLE",
    "THROTTLE_RATE",
    "TIMEOUT_RATE",
    "ALLOCATE_MB",
    "SLOW_RATE",
    "SLOW_FACTOR",
)


def knobs() -> dict[str, float]:
    """The knob values from the environment; a value that is not a number is an error."""
    values = {}
    for name in _KNOBS:
        raw = os.environ.get(name, "") or "0"
        try:
            values[name] = float(raw)
        except ValueError:
            raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None
    return values


def draws(salt: str, content: Any) -> random.Random:
    """A random source: seeded by SEED and the content when SEED is set, else fresh."""
    seed = os.environ.get("SEED")
    if seed is None:
        return random.Random()
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{seed}|{salt}|{canonical}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def handler(event: dict[str, Any], context: Any) -> Any:
    """Lambda entry point."""
    items = event.get("Items") if isinstance(event, dict) else None
    if not isinstance(items, list):
        raise ValueError('expected a batch request {"Items": [...]}')
    knob = knobs()
    batch = draws("batch", items)
    # Always draw in the same order, so that turning one knob never shifts another's dice.
    timeout_draw, throttle_draw, fail_draw, jitter_draw = (batch.random() for _ in range(4))

    if knob["ALLOCATE_MB"] > 0:
        ballast = bytearray(int(knob["ALLOCATE_MB"] * 1024 * 1024))
        ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it counts in RSS
    if timeout_draw < knob["TIMEOUT_RATE"]:
        remaining_ms = context.get_remaining_time_in_millis() if context is not None else 0
        time.sleep(remaining_ms / 1000 + 1.0)
    sleep_ms = (
        knob["SLEEP_MS"] + knob["SLEEP_PER_ITEM_MS"] * len(items) + jitter_draw * knob["JITTER_MS"]
    )
    # A fresh draw, never seeded, and outside the batch's dice: no other knob shifts.
    if knob["SLOW_RATE"] > 0 and random.random() < knob["SLOW_RATE"]:
        sleep_ms *= knob["SLOW_FACTOR"] or 20.0
    if sleep_ms > 0:
        time.sleep(sleep_ms / 1000)
    if throttle_draw < knob["THROTTLE_RATE"]:
        body = {"errorType": "DownstreamThrottled", "message": "rate limited (THROTTLE_RATE)"}
        return {"statusCode": 503, "body": json.dumps(body)}
    if fail_draw < knob["FAIL_RATE"]:
        raise RuntimeError(f"simulated failure (FAIL_RATE={knob['FAIL_RATE']})")

    failures = [
        {"itemIdentifier": str(position), "errorMessage": "simulated item failure"}
        for position, record in enumerate(items)
        if draws("item", record).random() < knob["ITEM_FAIL_RATE"]
    ]
    if knob["ITEM_RETRYABLE"] > 0:
        # lambdakit's extension to the partial batch response: a transient item failure.
        failures = [{**failure, "retryable": True} for failure in failures]
    outputs = [{"echo": record} for record in items]
    if failures:
        failed = {int(f["itemIdentifier"]) for f in failures}
        outputs = [None if i in failed else out for i, out in enumerate(outputs)]
        return {"batchItemFailures": failures, "outputs": outputs}
    return outputs
