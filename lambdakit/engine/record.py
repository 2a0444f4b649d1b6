"""The record a run keeps as it goes (attempts, batches, failures, rejections) -> RunResult."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lambdakit.invocation import (
    BATCH_CACHED,
    BATCH_CANCELLED,
    BATCH_NOT_RUN,
    BATCH_OK,
    OK,
    THROTTLE,
)
from lambdakit.records.validation import Rejection
from lambdakit.results.outputs import OutputStore

if TYPE_CHECKING:
    import pandas as pd

    from lambdakit.engine.cache import CacheEntry
    from lambdakit.invocation import Batch, Outcome
    from lambdakit.results.result import RunResult

__all__ = ["ATTEMPT_FIELDS", "BATCH_FIELDS", "Attempt", "BatchState", "RunRecord"]

# The column order of docs/architecture.md; rows are kept as tuples to stay compact.
ATTEMPT_FIELDS: tuple[str, ...] = (
    *("batch", "attempt", "records", "payload_bytes", "started_at", "ended_at"),
    *("start_s", "end_s", "latency_s", "outcome", "error_type", "error_message"),
    *("http_status", "throttled", "throttle_reason", "retry_after_s", "executed_version"),
    *("request_id", "failed_items", "duration_ms", "billed_duration_ms", "memory_size_mb"),
    *("max_memory_used_mb", "init_duration_ms", "cold_start", "slot", "in_flight_limit"),
    *("rate_limit", "backup", "log_tail"),
)
BATCH_FIELDS: tuple[str, ...] = (
    *("batch", "first_record", "records", "payload_bytes", "status", "attempts"),
    *("executed_version", "ok_records", "failed_records", "start_s", "end_s", "latency_s"),
    *("error_type", "error_message", "cached", "memory_mb"),
)
_METRIC_FIELDS = (
    *("duration_ms", "billed_duration_ms", "memory_size_mb", "max_memory_used_mb"),
    "init_duration_ms",
)


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass(slots=True)
class Attempt:
    """What a worker thread hands back: the attempt's facts, a cache hit, or an exception."""

    piece: Any  # the engine's piece of a batch that was sent
    slot: int  # concurrency slot it ran in, for the timeline
    limit: int  # the adaptive in-flight limit when it was sent
    epoch: int  # the limit's epoch when it was sent (see retry.AdaptiveLimit)
    started_at: float  # wall clock, epoch seconds
    start_s: float  # run clock, seconds since the run started
    end_s: float
    ended_at: float
    outcome: Outcome | None
    error: BaseException | None = None
    cached: CacheEntry | None = None  # a cache hit: nothing was invoked
    attempt: int = 0  # numbered when handled, in the order attempts come back
    rate: float | None = None  # the adaptive rate limit (requests/s) when sent; None: none


@dataclass(slots=True)
class BatchState:
    """A batch from the source, until every piece of it has succeeded or failed for good."""

    batch: Batch
    attempts: int = 0
    pending: int = 1  # pieces not yet finished (bisection and item retries add pieces)
    ok: int = 0
    failed: int = 0
    outputs: list[Any] | None = None  # by position, kept only to fill the cache
    versions: set[str] = field(default_factory=set)
    start_s: float | None = None
    end_s: float | None = None
    latency_s: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    log_tail: str | None = None  # of the last attempt that failed records for good
    metrics: dict[str, Any] = field(default_factory=dict)
    memory_mb: int | None = None  # the memory ladder's rung it finished on (None: not used)
    # Positions ok or failed for good, kept only when the batch is not done in one piece:
    # if the run stops before the rest, the others are its records that did not run.
    settled: set[int] | None = None

    def settle(self, positions: Iterable[int]) -> None:
        """Note positions of the batch that are done (ok or failed for good)."""
        if self.settled is None:
            self.settled = set(positions)
        else:
            self.settled.update(positions)

    def timed(self, start_s: float, end_s: float) -> None:
        """Note an attempt's times: the batch spans its first start to its last end."""
        self.start_s = start_s if self.start_s is None else min(self.start_s, start_s)
        self.end_s = end_s if self.end_s is None else max(self.end_s, end_s)
        self.latency_s = end_s - start_s


class RunRecord:
    """Accumulates one run's facts; only the scheduler thread writes (rejections aside)."""

    def __init__(self, outputs: OutputStore) -> None:
        self.outputs = outputs
        self.attempts: list[tuple[Any, ...]] = []
        self.batches: list[tuple[Any, ...]] = []
        self.failures: list[tuple[Any, ...]] = []
        self.rejections: list[tuple[Any, ...]] = []
        # Records read but never done (the run stopped first): (record, batch, input).
        self.not_run: list[tuple[Any, ...]] = []
        self.executed_versions: set[str] = set()
        self._lock = threading.Lock()

    def on_reject(self, rejection: Rejection) -> None:
        """Keep a rejected record (index, reason, input): counted, never sent."""
        with self._lock:
            self.rejections.append((rejection.index, rejection.reason, rejection.input))

    def add_attempt(self, batch: Batch, done: Attempt, outcome: Outcome) -> None:
        """One row per invocation, with the REPORT figures when the log tail had them."""
        report = outcome.report
        nan = math.nan
        # None becomes NaN here and the columns become float64 in build(); written out, not
        # via _nan(), since this runs once per invocation.
        if report is None:
            duration = billed = memory = max_used = init = nan
        else:
            duration = nan if report.duration_ms is None else report.duration_ms
            billed = nan if report.billed_duration_ms is None else report.billed_duration_ms
            memory = nan if report.memory_size_mb is None else report.memory_size_mb
            max_used = nan if report.max_memory_used_mb is None else report.max_memory_used_mb
            init = nan if report.init_duration_ms is None else report.init_duration_ms
        if outcome.failed_items:
            failed_items = tuple(batch.record_indices[p] for p in outcome.failed_items)
        else:
            failed_items = ()
        ok = outcome.outcome == OK
        if outcome.executed_version:
            self.executed_versions.add(outcome.executed_version)
        self.attempts.append(
            (
                batch.index,
                done.attempt,
                len(batch.items),
                len(batch.body),
                done.started_at,
                done.ended_at,
                done.start_s,
                done.end_s,
                done.end_s - done.start_s,
                outcome.outcome,
                None if ok else outcome.error_type,
                None if ok else outcome.error_message,
                nan if outcome.http_status is None else outcome.http_status,
                outcome.outcome == THROTTLE,
                outcome.reason,
                nan if outcome.retry_after_s is None else outcome.retry_after_s,
                outcome.executed_version,
                outcome.request_id,
                failed_items,
                duration,
                billed,
                memory,
                max_used,
                init,
                report is not None and report.init_duration_ms is not None,
                done.slot,
                done.limit,
                nan if done.rate is None else done.rate,
                getattr(done.piece, "backup", False),
                # Successful attempts' logs are not kept: at 4 KB each they would dominate
                # memory on long runs, and their figures are already in the columns above.
                None if ok else outcome.log_tail,
            )
        )

    @staticmethod
    def metrics_of(done: Attempt, outcome: Outcome) -> dict[str, Any]:
        """The figures of a successful attempt, stored beside its cached outputs."""
        report = outcome.report
        metrics: dict[str, Any] = {
            "latency_s": done.end_s - done.start_s,
            "executed_version": outcome.executed_version,
            "request_id": outcome.request_id,
        }
        for name in _METRIC_FIELDS:
            metrics[name] = getattr(report, name) if report is not None else None
        return metrics

    def add_failure(self, batch: Batch, position: int, outcome: Outcome) -> None:
        """A record that failed for good, with its input so it can be rerun."""
        self.failures.append(
            (
                batch.record_indices[position],
                batch.index,
                outcome.error_type or outcome.outcome,
                # The item's own reason (batchItemFailures) beats the batch's first one.
                outcome.item_errors.get(position) or outcome.error_message,
                outcome.log_tail,
                batch.items[position],
            )
        )

    def add_batch(self, state: BatchState, *, status: str) -> None:
        """The final row of a batch that was invoked (or cancelled before it could finish).

        A batch the run stopped before finishing keeps each record neither ok nor failed as
        a not-run row, with its input, so that a rerun can take exactly those.
        """
        batch = state.batch
        if status in (BATCH_CANCELLED, BATCH_NOT_RUN):
            settled = state.settled or ()
            for position, record in enumerate(batch.record_indices):
                if position not in settled:
                    self.not_run.append((record, batch.index, batch.items[position]))
        versions = sorted(state.versions)
        self.batches.append(
            (
                batch.index,
                batch.record_indices[0],
                len(batch.items),
                len(batch.body),
                status,
                state.attempts,
                ",".join(versions) if versions else None,
                state.ok,
                state.failed,
                _nan(state.start_s),
                _nan(state.end_s),
                _nan(state.latency_s),
                state.error_type if status != BATCH_OK else None,
                state.error_message if status != BATCH_OK else None,
                False,
                _nan(state.memory_mb),
            )
        )

    def add_cached_batch(self, batch: Batch, entry: CacheEntry) -> None:
        """The row of a batch served from the cache: no attempts, the version that made it."""
        self.executed_versions.add(entry.executed_version)
        self.batches.append(
            (
                batch.index,
                batch.record_indices[0],
                len(batch.items),
                len(batch.body),
                BATCH_CACHED,
                0,
                entry.executed_version,
                len(batch.items),
                0,
                math.nan,
                math.nan,
                _nan(entry.metrics.get("latency_s")),
                None,
                None,
                True,
                math.nan,
            )
        )

    def build(self, *, records: int, meta: dict[str, Any], source: Any = None) -> RunResult:
        """The RunResult of everything recorded so far (`source`: to read unread records)."""
        from lambdakit.results.result import RunResult
        from lambdakit.results.tables import (
            ATTEMPT_COLUMNS,
            BATCH_COLUMNS,
            FAILURE_COLUMNS,
            NOT_RUN_COLUMNS,
            REJECTION_COLUMNS,
        )

        attempts = _frame(self.attempts, ATTEMPT_COLUMNS)
        batches = _frame(self.batches, BATCH_COLUMNS)
        if not batches["batch"].is_monotonic_increasing:  # cached batches come back early
            batches = batches.sort_values("batch", kind="stable").reset_index(drop=True)
        failures = _frame(self.failures, FAILURE_COLUMNS)
        if not failures["record"].is_monotonic_increasing:
            failures = failures.sort_values("record", kind="stable").reset_index(drop=True)
        with self._lock:
            rejections = _frame(self.rejections, REJECTION_COLUMNS)
        not_run = _frame(sorted(self.not_run, key=lambda row: row[0]), NOT_RUN_COLUMNS)
        return RunResult(
            attempts=attempts,
            batches=batches,
            failures=failures,
            rejections=rejections,
            not_run=not_run,
            outputs=self.outputs,
            records=records,
            meta=meta,
            source=source,
        )


def _frame(rows: list[tuple[Any, ...]], schema: dict[str, str]) -> pd.DataFrame:
    """A table from row tuples, built column by column with the schema's numeric dtypes.

    Several times faster than DataFrame.from_records followed by astype, which was most of
    the fixed cost of a small run. Text columns keep pandas' own inference (str, or object
    where a value is missing), as from_records gave them.
    """
    import numpy as np
    import pandas as pd

    if not rows:
        return pd.DataFrame.from_records(rows, columns=list(schema))
    data: dict[str, Any] = {}
    for (name, dtype), values in zip(schema.items(), zip(*rows, strict=True), strict=True):
        if dtype in ("int64", "float64", "bool"):
            data[name] = np.array(values, dtype=dtype)
        elif dtype.startswith("datetime64"):
            # The unit is pinned: pandas 3 picks one from the values (whole seconds give "us").
            seconds = np.array(values, dtype="float64")
            data[name] = pd.to_datetime(seconds, unit="s", utc=True).as_unit("ns")
        else:
            data[name] = list(values)
    return pd.DataFrame(data)
