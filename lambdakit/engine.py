"""The scheduler behind run()/start(): bounded in-flight invokes, retries, bisection, cache."""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lambdakit.batching import Batch, BatchStream, Envelope, ReadAhead, split_batch, sub_batch
from lambdakit.cache import Cache, CacheEntry, CacheWriter
from lambdakit.invoke import PAYLOAD_TOO_LARGE, Invoker, Outcome
from lambdakit.progress import CANCELLING, Tracker
from lambdakit.record import Attempt, BatchState, RunRecord
from lambdakit.retry import CANCELLED, OK, REPORTED_FAILURE, THROTTLE, AdaptiveLimit, Retry

__all__ = ["Engine", "Plan"]

log = logging.getLogger("lambdakit.engine")

# A 413 on the request, or a response over Lambda's 6 MB: smaller batches get through.
_TOO_LARGE = (PAYLOAD_TOO_LARGE, "Function.ResponseSizeTooLarge")
_WAKE = object()  # put on the completion queue by cancel(), to end a blocking wait at once
_STOP = object()  # put on the work queue once per worker thread when the run ends
_ONE = (0,)  # the positions of a one-item batch
# Pieces queued for workers beyond the in-flight limit, so that a worker back from an
# invocation starts the next one at once and completions are settled several at a time.
# Only for small batches (big ones cost more to hold than their bookkeeping) and only until
# the first throttle: from then on the adaptive limit counts exactly what is sent.
_SMALL_BODY = 64 * 1024
_SETTLE_EVERY = 16  # completions waiting that make a worker take the scheduler's turn
_SETTLE_AFTER_S = 0.05  # ... or the time since the last turn (progress stays live)


@dataclass(slots=True)
class _Piece:
    """Some items of a batch, sent together: the whole batch, a bisected half, or a retry."""

    batch: Batch
    state: BatchState
    positions: tuple[int, ...]  # position of each item in the source batch
    failures: int = 0  # failed attempts so far (throttles excluded)
    throttles: int = 0
    due: float = 0.0
    lookup: bool = False  # a fresh batch: the worker first looks it up in the cache
    # Set when sent; each piece is sent once (a retry is a new piece).
    slot: int = 0
    limit: int = 0
    epoch: int = 0
    started_at: float = 0.0
    start_s: float = 0.0
    sent: bool = False  # handed to the invoker (until then, the end of the grace drops it)
    abandoned: bool = False  # not back when the grace ended: the run stopped waiting for it


@dataclass(frozen=True, slots=True)
class _Unsent:
    """A queued piece a worker did not send because the run was stopping."""

    piece: _Piece


@dataclass(frozen=True)
class Plan:
    """How a run goes: everything the Engine needs besides its source, invoker and record."""

    target: Any  # discovery.Target
    envelope: Envelope
    concurrency: int
    retry: Retry
    cache: Cache | None
    run_id: str
    tolerated: Callable[[int, int], bool]  # (failed records, records read) -> still fine
    sleep: Callable[[float], None] | None  # None: an interruptible wait on the queue
    clock: Callable[[], float]
    grace_s: float


class Engine:
    """Runs one stream of batches through an Invoker; `run()` is called in its own thread."""

    def __init__(
        self, stream: BatchStream, invoker: Invoker, record: RunRecord, tracker: Tracker, plan: Plan
    ) -> None:
        self.stream = stream
        self.invoker = invoker
        self.record = record
        self.tracker = tracker
        self.plan = plan
        self.target, self.envelope, self.cache = plan.target, plan.envelope, plan.cache
        self.concurrency, self.clock = plan.concurrency, plan.clock
        self.limit = AdaptiveLimit(plan.concurrency)
        # Its current value and epoch, as the scheduler last set them: read on every submit,
        # and the limit only changes through the scheduler's own on_success/on_throttle.
        self._limit, self._epoch = self.limit.limit, self.limit.epoch
        self.stop_reason: str | None = None  # "cancelled" or "tolerance"
        self._cancel = threading.Event()
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._delayed: list[tuple[float, int, _Piece]] = []
        self._seq = itertools.count()
        self._extra = plan.concurrency  # see _SMALL_BODY; 0 once throttled or batches are big
        self._last_turn = 0.0  # time.monotonic() of the last scheduler turn
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._in_flight = 0
        # Pieces sent and not yet handed back, by id; the lock orders a worker's hand-over
        # against the scheduler abandoning it at the end of the grace period.
        self._flying: dict[int, _Piece] = {}
        self._flight_lock = threading.Lock()
        self._active: dict[int, BatchState] = {}
        self._source = ReadAhead(stream, ahead=plan.concurrency)
        self._writer: CacheWriter | None = None  # started by run()
        # The scheduler's state is changed only under _lock, by whichever thread holds it: a
        # worker back from an invocation settles it and submits the next piece itself (see
        # _pump), so the common path wakes no other thread. run()'s thread is woken through
        # _wake only when it is needed: nothing in flight, a retry to time, a stop, an error.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._draining = False  # the run is ending: run()'s thread handles what comes back
        self._failure: BaseException | None = None  # raised in a worker's turn at the lock

    def cancel(self) -> None:
        """Stop submitting; in-flight work gets the grace period (callable from any thread)."""
        self._cancel.set()
        self._wake.set()
        self._done.put(_WAKE)

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Drive the stream to the end (or a stop), then wait out the grace for in-flight work."""
        self.tracker.emit("start")
        self._writer = self.cache.writer() if self.cache is not None else None
        # Not a `with` block: its exit would join workers still busy after the grace period.
        try:
            while True:
                with self._lock:
                    self._step()
                    if self._stopping():
                        break
                    if self._source.empty and not self._in_flight and not self._delayed:
                        break
                    timeout = self._timeout()
                self._wait_for_work(timeout)
        finally:
            with self._lock:
                self._draining = True
            self._drain_in_flight()
            # Not joined: a worker still in an abandoned invocation ends when it returns.
            for _ in self._workers:
                self._inbox.put(_STOP)
            if self._writer is not None:
                self._writer.close()  # completed batches are on disk before the result exists

    def _stopping(self) -> bool:
        if self._cancel.is_set() and self.stop_reason is None:
            self._stop("cancelled")
        return self.stop_reason is not None

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.tracker.set_state(CANCELLING)

    def _room(self) -> bool:
        # At most `concurrency` worker threads: pieces beyond the limit wait in the inbox.
        return self._in_flight < self._limit + self._extra

    def _submit_ready(self) -> None:
        now = self.clock()
        while self._room() and self._delayed and self._delayed[0][0] <= now:
            self._submit(heapq.heappop(self._delayed)[2])
        # New batches only while retries waiting plus work in flight stay bounded: that is
        # what keeps memory flat however long the source is.
        while self._room() and not self._stopping():
            if self._in_flight + len(self._delayed) >= 3 * self.concurrency:
                break
            batch = self._source.take()
            if batch is None:
                self.tracker.set(records_read=self.stream.records)
                return
            self._start_batch(batch)

    def _start_batch(self, batch: Batch) -> None:
        self.tracker.batch_read(self.stream.records, self.stream.rejected)
        if self._extra and len(batch.body) > _SMALL_BODY:
            self._extra = 0
        state = BatchState(batch)
        if self.cache is not None:
            state.outputs = [None] * len(batch.items)
        self._active[batch.index] = state
        n = len(batch.items)
        positions = _ONE if n == 1 else tuple(range(n))
        self._submit(_Piece(batch, state, positions, lookup=self.cache is not None))

    def _submit(self, piece: _Piece) -> None:
        piece.limit, piece.epoch = self._limit, self._epoch
        self._in_flight += 1
        self._flying[id(piece)] = piece
        workers = len(self._workers)
        if self._in_flight > workers and workers < self.concurrency:  # started as needed
            worker = threading.Thread(
                target=self._work, args=(workers,), name="lambdakit-invoke", daemon=True
            )
            self._workers.append(worker)
            worker.start()
        self._inbox.put(piece)

    def _work(self, slot: int) -> None:
        """Worker thread `slot` (its lane in the timeline): attempt pieces until the run ends.

        A plain queue, not a ThreadPoolExecutor: its Future, Condition and semaphore per
        submit were a third of the scheduler's time at batch_size=1. Daemon threads, so an
        abandoned invocation never holds up the interpreter's exit.
        """
        inbox = self._inbox
        while (piece := inbox.get()) is not _STOP:
            piece.slot = slot
            self._attempt(piece)

    def _attempt(self, piece: _Piece) -> None:
        """Worker thread: a cache lookup and/or one invocation; all is handed back, never lost."""
        started_at, start_s = time.time(), self.tracker.elapsed()
        outcome: Outcome | None = None
        cached: CacheEntry | None = None
        error: BaseException | None = None
        try:
            # Looked up here, not on the scheduler thread: sqlite releases the GIL, and the
            # scheduler would then wait for it behind every busy worker.
            if piece.lookup and self.cache is not None:
                cached = self.cache.lookup(self.target, piece.batch.body)
                cached = cached if cached and len(cached.outputs) == len(piece.batch) else None
            if cached is None:
                if self._cancel.is_set() or self.stop_reason is not None:
                    # Queued before the stop: a stopping run sends nothing more.
                    self._done.put(_Unsent(piece))
                    self._pump()
                    return
                with self._flight_lock:
                    if piece.abandoned:
                        return  # the run stopped before this was sent: nothing to record
                    piece.sent = True
                    piece.started_at, piece.start_s = started_at, start_s
                outcome = self.invoker.invoke(piece.batch)
        except BaseException as exc:  # handed to the scheduler, which ends the run with it
            error = exc
        end_s = self.tracker.elapsed()
        done = Attempt(piece, piece.slot, piece.limit, piece.epoch, started_at, start_s, end_s,
                       time.time(), outcome, error, cached)  # fmt: skip
        with self._flight_lock:
            abandoned = piece.abandoned
            if not abandoned:
                self._done.put(done)
        if abandoned:
            self._finish_late(done)
        elif (
            self._inbox.empty()
            or self._done.qsize() >= _SETTLE_EVERY
            or time.monotonic() - self._last_turn > _SETTLE_AFTER_S
        ):
            self._pump()  # else the next piece is waiting: settle this one with later ones

    def _pump(self) -> None:
        """Worker thread: take the scheduler's turn here, unless another thread has it.

        Whoever holds the lock handles every completion queued so far; one queued while it
        held the lock is seen by its check after letting go, so none is left behind.
        """
        while self._failure is None:
            if not self._lock.acquire(blocking=False):
                return  # the holder will see what this thread queued
            try:
                if self._draining:
                    return  # run()'s thread takes what comes back now
                self._step()
                if (
                    not self._in_flight
                    or self._delayed
                    or self.stop_reason is not None
                    or self._source.running_low
                ):
                    self._wake.set()  # run()'s thread has something to decide, time or read
            except BaseException as exc:  # ends the run, raised by run()'s thread
                self._failure = exc
                self._wake.set()
            finally:
                self._lock.release()
            if self._done.empty():
                return

    def _step(self) -> None:
        """Handle every completion waiting, then submit what is ready (under the lock)."""
        if self._failure is not None:
            raise self._failure
        self._last_turn = time.monotonic()
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                break
            self._handle(item)
        if not self._stopping():
            self._submit_ready()
        self.tracker.set_in_flight(self._in_flight)

    def _timeout(self) -> float | None:
        """How long run()'s thread may wait: until the next retry is due (if it can go)."""
        if not self._delayed or not (self._room() or not self._in_flight):
            return None
        return max(0.0, self._delayed[0][0] - self.clock())

    def _wait_for_work(self, timeout: float | None) -> None:
        """run()'s thread: read ahead while workers are busy, then wait to be needed."""
        if not self._in_flight:
            if timeout is not None and self.plan.sleep is not None:
                self.plan.sleep(timeout)
                return
            if timeout is None:
                return  # nothing in flight or waiting: nobody would wake this thread
        # Workers are busy: batch ahead now, one batch per turn at the lock.
        while self._in_flight and not self._wake.is_set():
            with self._lock:
                if self._stopping() or not self._source.prefetch():
                    break
        if self._in_flight:
            # Workers leave completions to be settled in groups; while they are all busy in
            # long invocations, this thread settles what came back, so progress stays live.
            timeout = _SETTLE_AFTER_S if timeout is None else min(timeout, _SETTLE_AFTER_S)
        if self._done.empty():
            self._wake.wait(timeout)
        self._wake.clear()

    def _drain_in_flight(self) -> None:
        deadline = time.monotonic() + self.plan.grace_s
        while self._in_flight:
            try:
                item = self._done.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            try:
                self._handle(item)
            except BaseException:  # the run is already ending with the first error
                log.exception("error while finishing in-flight work")
        if self._in_flight:
            self._abandon_in_flight()
        self._delayed.clear()  # their batches are still active: recorded as cancelled below
        for state in list(self._active.values()):
            self.record.add_batch(state, status="cancelled")
        self._active.clear()
        # Batches read ahead but never sent: their records are counted, so they get rows.
        for batch in self._source.take_ready():
            self.record.add_batch(BatchState(batch), status="cancelled")

    def _abandon_in_flight(self) -> None:
        """Give each invocation still running at the end of the grace a `cancelled` attempt row.

        What came back before the lock is handled as usual; the rest is abandoned, and a worker
        finishing later stores a success in the cache only (see `_finish_late`).
        """
        with self._flight_lock:
            arrived = []
            while True:
                try:
                    arrived.append(self._done.get_nowait())
                except queue.Empty:
                    break
            for item in arrived:
                try:
                    self._handle(item)
                except BaseException:  # the run is already ending with the first error
                    log.exception("error while finishing in-flight work")
            abandoned = list(self._flying.values())
            for piece in abandoned:
                piece.abandoned = True
        self._flying.clear()
        self._in_flight = 0
        # Never taken up by a worker: not an invocation, only the batch's cancelled row.
        abandoned = [piece for piece in abandoned if piece.sent]
        if abandoned:
            log.warning(
                "%d invocations still running after the grace period (%.1f s): recorded as "
                "cancelled (they may still run; a late success is cached)",
                len(abandoned),
                self.plan.grace_s,
            )
        message = (
            f"still running when the run stopped waiting ({self.plan.grace_s:g} s grace "
            "period); the function may have run, its result is not in this run"
        )
        for piece in abandoned:
            outcome = Outcome(CANCELLED, error_type="Lambdakit.Cancelled", error_message=message)
            state = piece.state
            state.attempts += 1
            end_s = self.tracker.elapsed()
            done = Attempt(piece, piece.slot, piece.limit, piece.epoch, piece.started_at,
                           piece.start_s, end_s, time.time(), outcome)  # fmt: skip
            done.attempt = state.attempts
            self.record.add_attempt(piece.batch, done, outcome)
            state.timed(done.start_s, end_s)
            self.tracker.add(invocations=1, retries=done.attempt > 1)
            self.tracker.emit_attempt(
                piece.batch.index, done.attempt, len(piece.batch), outcome, end_s - done.start_s
            )
        self.tracker.set(in_flight=self._in_flight)

    def _finish_late(self, done: Attempt) -> None:
        """Worker thread, after the run stopped waiting: keep a whole batch's success cached.

        Only a whole batch has the key a rerun looks up; a bisected half or a retry of some
        items has a body of its own, so its success cannot spare the rerun an invocation.
        """
        piece, outcome = done.piece, done.outcome
        if self.cache is None or outcome is None or outcome.outcome != OK:
            return
        batch = piece.batch
        if batch is not piece.state.batch:
            return
        outputs = outcome.outputs or [None] * len(batch)
        metrics = self.record.metrics_of(done, outcome)
        try:
            self.cache.store(self.target, outcome.executed_version, batch.body, outputs,
                             run_id=self.plan.run_id, metrics=metrics)  # fmt: skip
        except Exception:  # nobody is left to raise to: the run has already returned
            log.exception("could not cache batch %d, which finished after the run", batch.index)
            return
        log.info("batch %d finished after the run stopped; its success is cached", batch.index)

    # -- completions -----------------------------------------------------------------------

    def _handle(self, item: Any) -> None:
        if item is _WAKE:
            return
        if type(item) is _Unsent:  # its batch stays active: recorded as cancelled
            self._in_flight -= 1
            del self._flying[id(item.piece)]
            return
        done: Attempt = item
        self._in_flight -= 1
        del self._flying[id(done.piece)]
        if done.error is not None:
            raise done.error
        piece, outcome, state = done.piece, done.outcome, done.piece.state
        if done.cached is not None:
            self._serve_cached(state.batch, done.cached)
            return
        assert outcome is not None
        state.attempts += 1
        done.attempt = state.attempts
        self.record.add_attempt(piece.batch, done, outcome)
        state.timed(done.start_s, done.end_s)
        throttled = outcome.outcome == THROTTLE
        if throttled:
            self._limit = self.limit.on_throttle(done.epoch)
            self._epoch = self.limit.epoch
            self._extra = 0
        elif outcome.outcome == OK:
            self._limit = self.limit.on_success()
        self.tracker.attempt_done(done.attempt > 1, throttled, self._limit)
        failed = self._settle(piece, done, outcome)
        if self.tracker.events is not None:
            latency = done.end_s - done.start_s
            self.tracker.emit_attempt(
                piece.batch.index, done.attempt, len(piece.batch), outcome, latency
            )
        if failed:
            failed_records = self.tracker.counts["failed_records"]
            if not self.plan.tolerated(failed_records, self.stream.records):
                self._stop("tolerance")
        if state.pending == 0:
            self._finish_batch(state)

    def _serve_cached(self, batch: Batch, entry: CacheEntry) -> None:
        del self._active[batch.index]
        self.record.outputs.put(batch.record_indices, entry.outputs)
        self.record.add_cached_batch(batch, entry)
        n = len(batch)
        self.tracker.add(batches_done=1, cached_batches=1, cached_records=n, ok_records=n)
        self.tracker.set(in_flight=self._in_flight)
        self.tracker.emit("batch", batch=batch.index, records=n, outcome="cached")

    def _settle(self, piece: _Piece, done: Attempt, outcome: Outcome) -> bool:
        """Store what succeeded, schedule what may be retried; True if records failed for good."""
        state = piece.state
        n = len(piece.batch)
        if outcome.outcome == OK and not outcome.failed_items:  # the common case
            self._deliver(piece, range(n), outcome.outputs or [None] * n, outcome, done)
            state.pending -= 1
            return False
        if outcome.outcome == OK or (outcome.outcome == REPORTED_FAILURE and outcome.failed_items):
            bad = sorted(set(outcome.failed_items)) if outcome.outcome != OK else []
            failed_set = set(bad)
            good = [p for p in range(n) if p not in failed_set] if bad else range(n)
            outputs = outcome.outputs or [None] * n
            if good:
                self._deliver(piece, good, outputs, outcome, done)
            if not bad:
                state.pending -= 1
                return False
            piece.failures += 1
            delay = self._delay(piece, outcome)
            if delay is not None:
                self._requeue(piece, sub_batch(piece.batch, bad, self.envelope), bad, delay)
                return False
            return self._fail(piece, bad, outcome)
        if outcome.error_type in _TOO_LARGE:
            # The request (413) or the response was too big, not wrong: bisect and send both
            # halves now, without using up the retry budget. One record cannot shrink.
            if n == 1:
                return self._fail(piece, [0], outcome)
            if self._stopping():
                state.pending -= 1  # left undone, not failed: the run is stopping
                return False
            left, right = split_batch(piece.batch, self.envelope)
            state.pending += 1
            self._requeue(piece, left, range(len(left)), 0.0)
            self._requeue(piece, right, range(len(left), n), 0.0)
            return False
        if outcome.outcome == THROTTLE:
            piece.throttles += 1
        else:
            piece.failures += 1
        delay = self._delay(piece, outcome)
        if delay is not None:
            self._requeue(piece, piece.batch, range(n), delay)
            return False
        return self._fail(piece, list(range(n)), outcome)

    def _delay(self, piece: _Piece, outcome: Outcome) -> float | None:
        count = piece.throttles if outcome.outcome == THROTTLE else piece.failures
        return self.plan.retry.next_delay(outcome.outcome, count, outcome.retry_after_s)

    def _requeue(self, piece: _Piece, batch: Batch, positions: Any, delay: float) -> None:
        if self._stopping():
            # Worth retrying, but the run is stopping: the items are left undone, not failed.
            piece.state.pending -= 1
            return
        kept = tuple(piece.positions[p] for p in positions)
        again = _Piece(batch, piece.state, kept, piece.failures, piece.throttles)
        again.due = self.clock() + delay
        heapq.heappush(self._delayed, (again.due, next(self._seq), again))

    def _deliver(
        self,
        piece: _Piece,
        good: Sequence[int],
        outputs: list[Any],
        outcome: Outcome,
        done: Attempt,
    ) -> None:
        state = piece.state
        if len(good) == len(piece.batch):  # the common case, without per-record copies
            indices: Sequence[int] = piece.batch.record_indices
            values = outputs
        else:
            indices = [piece.batch.record_indices[p] for p in good]
            values = [outputs[p] for p in good]
        self.record.outputs.put(indices, values)
        state.ok += len(good)
        if outcome.executed_version:
            state.versions.add(outcome.executed_version)
        if state.outputs is not None:  # kept only to fill the cache, with the metrics
            for p, value in zip(good, values, strict=True):
                state.outputs[piece.positions[p]] = value
            state.metrics = self.record.metrics_of(done, outcome)
        self.tracker.bump("ok_records", len(good))

    def _fail(self, piece: _Piece, bad: list[int], outcome: Outcome) -> bool:
        state = piece.state
        for p in bad:
            self.record.add_failure(piece.batch, p, outcome)
        state.failed += len(bad)
        state.pending -= 1
        state.error_type, state.error_message = outcome.error_type, outcome.error_message
        state.log_tail = outcome.log_tail
        self.tracker.add(failed_records=len(bad))
        return True

    def _finish_batch(self, state: BatchState) -> None:
        del self._active[state.batch.index]
        incomplete = state.ok + state.failed < len(state.batch)
        if incomplete:
            status = "cancelled"
        elif state.failed == 0:
            status = "ok"
        else:
            status = "failed" if state.ok == 0 else "partial"
        self.record.add_batch(state, status=status)
        if status == "ok":
            self._store_in_cache(state)
        self.tracker.batch_done(status in ("failed", "partial"))
        if not self.tracker.wants_batch_events:
            return
        failed = status != "ok"
        self.tracker.emit(
            "batch",
            batch=state.batch.index,
            records=len(state.batch),
            outcome=status,
            error_type=state.error_type if failed else None,
            error_message=state.error_message if failed else None,
            log_tail=state.log_tail if failed else None,
        )

    def _store_in_cache(self, state: BatchState) -> None:
        if self._writer is None or state.outputs is None:
            return
        if len(state.versions) > 1:
            # Pieces of one batch ran on different versions of a weighted alias: no single
            # version produced these outputs, so there is nothing honest to key them by.
            log.info("batch %d ran on versions %s; not cached", state.batch.index, state.versions)
            return
        version = next(iter(state.versions), None)
        body, outputs = state.batch.body, state.outputs
        run_id, metrics = self.plan.run_id, state.metrics
        self._writer.put(self.target, version, body, outputs, run_id=run_id, metrics=metrics)

    def finish(self, state: str) -> None:
        """Publish the final counters and close the event stream."""
        self.tracker.set(records_read=self.stream.records, in_flight=self._in_flight)
        self.tracker.finish(state)
