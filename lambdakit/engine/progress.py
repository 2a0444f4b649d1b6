"""Progress of a run: counter snapshots, events for dashboards, and the tqdm.auto bar."""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CANCELLED",
    "CANCELLING",
    "FAILED",
    "FINISHED",
    "RUNNING",
    "EventStream",
    "Progress",
    "ProgressBar",
    "ProgressEvent",
    "Tracker",
]

RUNNING = "running"
CANCELLING = "cancelling"
FINISHED = "finished"
CANCELLED = "cancelled"
FAILED = "failed"
_ENDED = (FINISHED, CANCELLED, FAILED)
_NOT_COUNTS = (
    *("state", "records_total", "batches_total", "records_done", "elapsed_s"),
    *("unreachable_s", "retry_in_s", "rate_limit"),
)


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run's counters (records_total is None when the source length is unknown).

    batches_total: the batches the source makes, when its length is known: exact once it is
    read to its end, estimated until then (the batches read, plus the records left at the
    records per batch so far, or at batch_size before the first).
    """

    state: str = RUNNING
    records_total: int | None = None
    batches_total: int | None = None
    records_read: int = 0
    records_done: int = 0  # ok + failed + rejected + cached
    ok_records: int = 0
    failed_records: int = 0
    rejected_records: int = 0
    cached_records: int = 0
    batches_read: int = 0
    batches_done: int = 0
    failed_batches: int = 0
    cached_batches: int = 0
    invocations: int = 0
    retries: int = 0
    throttles: int = 0
    in_flight: int = 0
    in_flight_limit: int = 0
    # Requests per second the run allows itself since a rate-type throttle (None: no limit).
    rate_limit: float | None = None
    elapsed_s: float = 0.0
    # An outage (engine/outage.py): seconds the endpoint has not answered (None: no outage)
    # and seconds until it is probed again (None while not waiting for a probe).
    unreachable_s: float | None = None
    retry_in_s: float | None = None

    @property
    def ended(self) -> bool:
        """Whether the run is over (finished, cancelled or failed)."""
        return self.state in _ENDED


@dataclass(frozen=True)
class ProgressEvent:
    """Something that happened in a run: its start, an attempt, a finished batch, its end."""

    kind: str  # "start" | "attempt" | "batch" | "end"
    t_s: float
    progress: Progress
    batch: int | None = None
    attempt: int | None = None
    records: int = 0
    outcome: str | None = None  # attempt outcome class, or the batch status for "batch"
    latency_s: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    log_tail: str | None = None  # failed attempts, and batches that failed or partly failed
    failed_items: int = 0  # "attempt": records that failed inside an otherwise delivered reply
    failed_records: int = 0  # "batch": the batch's records that failed for good


# Every optional field of a ProgressEvent with its default, for Tracker.emit's fast path.
_EVENT_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(ProgressEvent)
    if f.default is not dataclasses.MISSING
}


class EventStream:
    """A bounded, thread-safe feed of ProgressEvents; iterating blocks until the run ends.

    Only the newest `maxlen` events are kept, so a run nobody watches costs bounded memory;
    counters in each event are cumulative, so a consumer that falls behind loses no totals.
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        self._events: collections.deque[ProgressEvent] = collections.deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self._closed = False
        self._waiting = 0  # readers blocked in get() or iteration: put() wakes only those
        self.dropped = 0

    def put(self, event: ProgressEvent) -> None:
        """Append an event (dropping the oldest when full) and wake readers."""
        with self._cond:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(event)
            if self._waiting:
                self._cond.notify_all()

    def close(self) -> None:
        """Mark the stream finished: iteration ends once the remaining events are read."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Whether the run has ended (events may remain to be read)."""
        with self._cond:
            return self._closed

    def get(self, timeout: float | None = None) -> ProgressEvent | None:
        """The next event, waiting up to `timeout`; None on timeout or after the last event."""
        with self._cond:
            if not self._events and not self._closed:
                self._waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._waiting -= 1
            return self._events.popleft() if self._events else None

    def drain(self) -> list[ProgressEvent]:
        """Every event waiting now, without blocking."""
        with self._cond:
            events = list(self._events)
            self._events.clear()
            return events

    def __iter__(self) -> Iterator[ProgressEvent]:
        while True:
            with self._cond:
                while not self._events and not self._closed:
                    self._waiting += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._waiting -= 1
                if not self._events:
                    return
                event = self._events.popleft()
            yield event


class ProgressBar:
    """A tqdm.auto bar over records (notebook widget in a kernel, text elsewhere); or nothing.

    tqdm's own `TQDM_DISABLE=1` is honoured, since tqdm reads it.
    """

    def __init__(self, enabled: bool, total: int | None, description: str) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="rec", desc=description, dynamic_ncols=True)
        self._shown = 0

    @property
    def enabled(self) -> bool:
        """Whether a bar is drawn."""
        return self._bar is not None

    def update(self, progress: Progress) -> None:
        """Move the bar to `progress.records_done` and show the failure counts."""
        if self._bar is None:
            return
        step = progress.records_done - self._shown
        if step > 0:
            self._shown = progress.records_done
            self._bar.set_postfix(
                failed=progress.failed_records,
                cached=progress.cached_records,
                retries=progress.retries,
                refresh=False,
            )
            self._bar.update(step)

    def close(self) -> None:
        """Finish the bar (leaves it displayed)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Tracker:
    """A run's live counters: cheap to bump, turned into a Progress only when looked at."""

    def __init__(
        self,
        *,
        records_total: int | None,
        in_flight_limit: int,
        batch_size: int = 1,
        clock: Callable[[], float],
        events: EventStream | None,
        bar: ProgressBar,
    ) -> None:
        self.counts: dict[str, int] = {
            name: 0 for name in Progress.__dataclass_fields__ if name not in _NOT_COUNTS
        }
        self.counts["in_flight_limit"] = in_flight_limit
        self.records_total = records_total
        self._batch_size = max(1, batch_size)
        self.batches_total = (
            None if records_total is None else -(-records_total // self._batch_size)
        )
        self.state = RUNNING
        self.events = events
        self.bar = bar
        self._clock = clock
        self._t0 = clock()
        self._snapshot: Progress | None = None
        self._outage: tuple[float, float | None] | None = None  # (since, next probe), run clock
        self._rate_limit: float | None = None
        # Readers (dashboards) run in other threads: without the lock one could cache a
        # snapshot built just before a change, and show it forever once the run ends.
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        """Seconds since the run started, by the run's clock."""
        return self._clock() - self._t0

    def add(self, **deltas: int) -> None:
        """Add to counters (booleans count as 0/1)."""
        with self._lock:
            counts = self.counts
            for name, delta in deltas.items():
                counts[name] += int(delta)
            self._snapshot = None

    # The scheduler's hot path: one lock and no keyword dict per call.

    def attempt_done(
        self, retry: bool, throttled: bool, in_flight_limit: int, rate_limit: float | None = None
    ) -> None:
        """Count one finished invocation."""
        with self._lock:
            self._rate_limit = rate_limit
            counts = self.counts
            counts["invocations"] += 1
            counts["retries"] += retry
            counts["throttles"] += throttled
            counts["in_flight_limit"] = in_flight_limit
            self._snapshot = None

    def batch_read(self, records_read: int, rejected_records: int) -> None:
        """Count one batch taken from the source, and the records read and rejected so far."""
        with self._lock:
            counts = self.counts
            counts["batches_read"] += 1
            counts["records_read"] = records_read
            counts["rejected_records"] = rejected_records
            if self.records_total is not None:
                self.batches_total = self._batches_estimate(counts["batches_read"], records_read)
            self._snapshot = None

    def _batches_estimate(self, batches: int, records: int) -> int:
        left = max(0, self.records_total - records)  # type: ignore[operator]
        if not left:
            return batches
        per_batch = records / batches if records else self._batch_size  # cut by bytes too
        return batches + max(1, round(left / per_batch))

    def source_read(self, batches: int) -> None:
        """The source is read to its end and made `batches` batches: the exact total."""
        with self._lock:
            if self.records_total is not None:
                self.batches_total = batches
            self._snapshot = None

    def batch_done(self, failed: bool) -> None:
        """Count one batch finished (failed: some or all of its records failed)."""
        with self._lock:
            self.counts["batches_done"] += 1
            self.counts["failed_batches"] += failed
            self._snapshot = None

    @property
    def wants_batch_events(self) -> bool:
        """Whether "batch" events have a reader: the event stream or the bar."""
        return self.events is not None or self.bar.enabled

    def set_in_flight(self, in_flight: int) -> None:
        """The number of pieces submitted and not yet settled."""
        if self.counts["in_flight"] != in_flight:
            with self._lock:
                self.counts["in_flight"] = in_flight
                self._snapshot = None

    def set(self, **values: int) -> None:
        """Overwrite counters (in_flight, records_read, ...)."""
        with self._lock:
            self.counts.update(values)
            self._snapshot = None

    def set_outage(self, since: float | None, probe_at: float | None) -> None:
        """An outage began at `since` (run clock; None: it is over), next probe at `probe_at`."""
        with self._lock:
            self._outage = None if since is None else (since, probe_at)
            self._snapshot = None

    def snapshot(self) -> Progress:
        """The counters as a frozen Progress (rebuilt only after a change, or in an outage)."""
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or self._outage is not None:  # an outage's clocks keep going
                counts = self.counts
                done = counts["ok_records"] + counts["failed_records"] + counts["rejected_records"]
                # Filled in directly: a frozen dataclass's __init__ sets each of its ~20 fields
                # through object.__setattr__, and a run makes two snapshots per attempt.
                snapshot = object.__new__(Progress)
                snapshot.__dict__.update(
                    counts,
                    state=self.state,
                    records_total=self.records_total,
                    batches_total=self.batches_total,
                    records_done=done,
                    elapsed_s=self.elapsed(),
                    unreachable_s=None,
                    retry_in_s=None,
                    rate_limit=self._rate_limit,
                )
                if self._outage is not None:
                    now, (since, probe_at) = self._clock(), self._outage
                    snapshot.__dict__["unreachable_s"] = now - since
                    if probe_at is not None:
                        snapshot.__dict__["retry_in_s"] = max(0.0, probe_at - now)
                self._snapshot = snapshot
            return snapshot

    def set_state(self, state: str) -> None:
        """Change the run's state (running, cancelling, then how it ended)."""
        with self._lock:
            self.state = state
            self._snapshot = None

    def emit(self, kind: str, **fields: Any) -> None:
        """Publish an event with the current counters; finished batches move the bar."""
        if self.events is None:  # nobody can read events: only the bar may need counters
            if kind == "batch" and self.bar.enabled:
                self.bar.update(self.snapshot())
            return
        progress = self.snapshot()
        # Filled in directly, as snapshot() does: a frozen dataclass's __init__ sets each of
        # its 14 fields through object.__setattr__, and a run makes two events per attempt.
        event = object.__new__(ProgressEvent)
        event.__dict__.update(_EVENT_DEFAULTS, kind=kind, t_s=self.elapsed(), progress=progress)
        if not fields.keys() <= _EVENT_DEFAULTS.keys():  # what __init__ would have refused
            raise TypeError(f"ProgressEvent has no fields {set(fields) - set(_EVENT_DEFAULTS)}")
        event.__dict__.update(fields)
        self.events.put(event)
        if kind == "batch":
            self.bar.update(progress)

    def emit_attempt(
        self, batch: int, attempt: int, records: int, outcome: Any, latency_s: float
    ) -> None:
        """The event of one finished attempt (`outcome`: an invoke.Outcome)."""
        if self.events is None:
            return
        self.emit(
            "attempt",
            batch=batch,
            attempt=attempt,
            records=records,
            outcome=outcome.outcome,
            latency_s=latency_s,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
            log_tail=outcome.log_tail if outcome.outcome != "ok" else None,
            failed_items=len(outcome.failed_items),
        )

    def finish(self, state: str) -> None:
        """Final counters, the "end" event, and the stream closed."""
        self.set_state(state)
        self.bar.update(self.snapshot())
        self.bar.close()
        self.emit("end")
        if self.events is not None:
            self.events.close()
