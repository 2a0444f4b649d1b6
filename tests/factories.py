"""Builds realistic RunResults by simulating a run: slots, retries, throttles, cold starts.

Each batch follows a script of attempt outcomes, e.g. ``["throttle", "ok"]`` or
``[("reported_failure", (1, 3)), "ok"]`` (positions that failed inside a delivered
attempt; the next attempt sends only those). A script not ending in "ok" leaves the
batch's remaining records failed. Tests derive expected figures from the DataFrames this
produces, never from the script.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lambdakit.results.outputs import OutputStore
from lambdakit.results.result import RunResult

Step = str | tuple[str, Sequence[int]]

BASE_TIME = pd.Timestamp("2026-01-01T00:00:00", tz="UTC")
ARN = "arn:aws:lambda:us-east-1:123456789012:function:enrich"
# error_type, error_message, http_status, whether the function ran (a REPORT line exists)
_FAILURES: dict[str, tuple[str, str, float, bool]] = {
    "throttle": ("TooManyRequestsException", "Rate Exceeded.", 429.0, False),
    "timeout": ("Sandbox.Timedout", "Task timed out after 3.00 seconds", 200.0, True),
    "function_error": ("ValueError", "bad value in record", 200.0, True),
    "reported_failure": ("BatchItemFailures", "items failed", 200.0, True),
    "service_error": ("ServiceException", "internal failure", 500.0, False),
    "connection_error": ("EndpointConnectionError", "could not connect", math.nan, False),
    "client_error": ("InvalidRequestContentException", "bad JSON", 400.0, False),
}


def record_input(index: int) -> dict[str, Any]:
    """The synthetic input record at `index`."""
    return {"id": index, "text": f"row {index}", "value": index * 1.5}


def record_output(index: int) -> dict[str, Any]:
    """The output the synthetic function gives for record `index`."""
    return {"id": index, "doubled": index * 2}


def _log_tail(request_id: str, outcome: str, duration_ms: float, cold: bool) -> str:
    lines = [f"START RequestId: {request_id} Version: 3"]
    if outcome == "function_error":
        lines += ["Traceback (most recent call last):", "ValueError: bad value in record"]
    if outcome == "timeout":
        lines += [f"{request_id} Task timed out after 3.00 seconds"]
    init = "\tInit Duration: 150.00 ms" if cold else ""
    lines += [
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: 512 MB\t"
        f"Max Memory Used: 80 MB{init}",
    ]
    return "\n".join(lines)


def make_run(
    *,
    records: int = 120,
    batch_size: int = 10,
    scripts: Mapping[int, Sequence[Step]] | None = None,
    rejected: Iterable[int] = (),
    cached: Iterable[int] = (),
    concurrency: int = 4,
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> RunResult:
    """Simulate a run and return its RunResult (see the module docstring for scripts)."""
    rng = np.random.default_rng(seed)
    scripts = dict(scripts or {})
    rejected = sorted(set(rejected))
    cached = set(cached)
    accepted = [i for i in range(records) if i not in set(rejected)]
    chunks = [accepted[i : i + batch_size] for i in range(0, len(accepted), batch_size)]
    store = OutputStore()
    attempt_rows: list[dict[str, Any]] = []
    failure_rows: list[dict[str, Any]] = []
    batch_state: dict[int, dict[str, Any]] = {}
    queue: list[tuple[float, int, int, tuple[int, ...]]] = []
    for b, chunk in enumerate(chunks):
        batch_state[b] = {"ok": 0, "failed": 0, "attempts": [], "error": (None, None)}
        if b in cached:
            store.put(chunk, [record_output(i) for i in chunk])
            batch_state[b]["ok"] = len(chunk)
        else:
            heapq.heappush(queue, (b * 0.01, b, 1, tuple(chunk)))
    slot_free = [0.0] * concurrency
    slot_warm = [False] * concurrency
    limit = concurrency
    while queue:
        ready, b, attempt, items = heapq.heappop(queue)
        script = list(scripts.get(b, ["ok"]))
        step = script[attempt - 1]
        outcome, positions = (step, ()) if isinstance(step, str) else (step[0], tuple(step[1]))
        slot = min(range(concurrency), key=lambda s: (slot_free[s], s))
        start = max(ready, slot_free[slot])
        ran = outcome == "ok" or _FAILURES[outcome][3]
        latency = {"throttle": 0.01, "timeout": 3.0}.get(outcome, float(rng.uniform(0.05, 0.4)))
        end = start + latency
        cold = ran and not slot_warm[slot]
        # A timed-out environment is thrown away: the next call on the slot starts cold.
        slot_warm[slot] = (ran and outcome != "timeout") or (not ran and slot_warm[slot])
        slot_free[slot] = end
        request_id = f"req-{seed}-{b}-{attempt}-{int(rng.integers(1e9))}"
        duration = latency * 1000 - 4 if ran else math.nan
        error_type, message, status, _ = _FAILURES.get(outcome, (None, None, 200.0, True))
        attempt_rows.append(
            {
                "batch": b,
                "attempt": attempt,
                "records": len(items),
                "payload_bytes": 40 * len(items) + 12,
                "started_at": BASE_TIME + pd.Timedelta(seconds=start),
                "ended_at": BASE_TIME + pd.Timedelta(seconds=end),
                "start_s": start,
                "end_s": end,
                "latency_s": latency,
                "outcome": outcome,
                "error_type": error_type,
                "error_message": message,
                "http_status": status,
                "throttled": outcome == "throttle",
                "throttle_reason": "ConcurrentInvocationLimitExceeded"
                if outcome == "throttle"
                else None,
                "retry_after_s": 1.0 if outcome == "throttle" else math.nan,
                "executed_version": "3" if ran else None,
                "request_id": request_id,
                "failed_items": positions,
                "duration_ms": duration,
                "billed_duration_ms": float(math.ceil(duration)) if ran else math.nan,
                "memory_size_mb": 512.0 if ran else math.nan,
                "max_memory_used_mb": 80.0 if ran else math.nan,
                "init_duration_ms": 150.0 if cold else math.nan,
                "cold_start": cold,
                "slot": float(slot),
                "in_flight_limit": float(limit),
                "rate_limit": math.nan,
                "log_tail": _log_tail(request_id, outcome, duration, cold) if ran else None,
            }
        )
        limit = max(1, limit // 2) if outcome == "throttle" else min(concurrency, limit + 1)
        state = batch_state[b]
        state["attempts"].append(len(attempt_rows) - 1)
        delivered = outcome == "ok" or (outcome == "reported_failure" and positions)
        still_failing = tuple(items[p] for p in positions) if delivered else items
        done = [i for i in items if i not in set(still_failing)] if delivered else []
        if done:
            store.put(done, [record_output(i) for i in done])
            state["ok"] += len(done)
        if outcome != "ok":
            state["error"] = (error_type, message)
            if attempt < len(script):
                heapq.heappush(queue, (end + 0.05 * attempt, b, attempt + 1, still_failing))
            else:
                state["failed"] += len(still_failing)
                for i in still_failing:
                    failure_rows.append(
                        {
                            "record": i,
                            "batch": b,
                            "error_type": error_type,
                            "error_message": message,
                            "log_tail": attempt_rows[-1]["log_tail"],
                            "input": record_input(i),
                        }
                    )
    batch_rows = []
    for b, chunk in enumerate(chunks):
        state = batch_state[b]
        rows = [attempt_rows[k] for k in state["attempts"]]
        if b in cached:
            status = "cached"
        elif state["failed"] == 0:
            status = "ok"
        else:
            status = "failed" if state["ok"] == 0 else "partial"
        failed = status in ("failed", "partial")
        batch_rows.append(
            {
                "batch": b,
                "first_record": chunk[0],
                "records": len(chunk),
                "payload_bytes": 40 * len(chunk) + 12,
                "status": status,
                "attempts": len(rows),
                "executed_version": "3",
                "ok_records": state["ok"],
                "failed_records": state["failed"],
                "start_s": rows[0]["start_s"] if rows else math.nan,
                "end_s": rows[-1]["end_s"] if rows else math.nan,
                "latency_s": rows[-1]["latency_s"] if rows else math.nan,
                "error_type": state["error"][0] if failed else None,
                "error_message": state["error"][1] if failed else None,
                "cached": b in cached,
            }
        )
    ends = [row["end_s"] for row in attempt_rows]
    run_meta = {
        "function": "enrich",
        "function_arn": ARN,
        "qualifier": "live",
        "executed_versions": ["3"],
        "code_sha256": "q3Yy0bG1t0kU3n4HkqJ8oXfQ2c0dWZ6bT9e1sL7mR4A=",
        "params": {"batch_size": batch_size, "concurrency": concurrency, "retry": "Retry()"},
        "dataset_fingerprint": f"sha256:{records:08x}",
        "lambdakit_version": "0.1.0",
        "started_at": BASE_TIME,
        "ended_at": BASE_TIME + pd.Timedelta(seconds=max(ends, default=0.0)),
        "elapsed_s": max(ends, default=0.0) + 0.05,
        "memory_mb": 512,
        "cancelled": False,
        **dict(meta or {}),
    }
    return RunResult(
        attempts=pd.DataFrame(attempt_rows),
        batches=pd.DataFrame(batch_rows),
        failures=pd.DataFrame(failure_rows),
        rejections=pd.DataFrame(
            {
                "record": pd.Series(rejected, dtype="int64"),
                "reason": [f"record {i}: 'value' is not of type 'number'" for i in rejected],
                "input": pd.Series([record_input(i) for i in rejected], dtype=object),
            }
        ),
        outputs=store,
        records=records,
        meta=run_meta,
    )


# A run with a bit of everything: retries to success, throttles, a timeout, a permanent
# function error, a partial batch failure retried, a final partial failure, cache hits.
MIXED_SCRIPTS: dict[int, list[Step]] = {
    1: ["throttle", "throttle", "ok"],
    3: ["timeout", "ok"],
    4: ["function_error", "function_error", "function_error"],
    6: [("reported_failure", (1, 4)), "ok"],
    8: ["service_error", "ok"],
    9: [("reported_failure", (0, 2, 5)), ("reported_failure", (1,))],
    10: ["throttle", "ok"],
}


def mixed_run(seed: int = 0, **kwargs: Any) -> RunResult:
    """A 120-record run with every kind of attempt, 3 rejected records and 1 cached batch."""
    options: dict[str, Any] = {
        "scripts": MIXED_SCRIPTS,
        "rejected": (5, 50, 77),
        "cached": (2,),
        "seed": seed,
    }
    options.update(kwargs)
    return make_run(**options)
