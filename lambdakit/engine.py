"""The scheduler behind run()/start(): worker threads, turns at its lock, bounded in-flight work."""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdakit.batching import Batch, BatchStream, Envelope, ReadAhead
from lambdakit.cache import Cache, CacheEntry, CacheWriter
from lambdakit.invoke import Invoker, Outcome
from lambdakit.progress import Tracker
from lambdakit.record import Attempt, BatchState, RunRecord
from lambdakit.retry import AdaptiveLimit, Retry
from lambdakit.settle import WAKE, Piece, Settlement, Unsent

__all__ = ["Engine", "Plan"]

log = logging.getLogger("lambdakit.engine")

_STOP = object()  # put on the work queue once per worker thread when the run ends
_ONE = (0,)  # the positions of a one-item batch
# Pieces queued for workers beyond the in-flight limit, so that a worker back from an
# invocation starts the next one at once and completions are settled several at a time.
# Only for small batches (big ones cost more to hold than their bookkeeping) and only until
# the first throttle: from then on nothing more is queued beyond the adaptive limit.
_SMALL_BODY = 64 * 1024
_SETTLE_EVERY = 16  # completions waiting that make a worker take the scheduler's turn
_SETTLE_AFTER_S = 0.05  # ... or the time since the last turn (progress stays live)


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
    sleep: Callable[[float], None] | None  # None: an interruptible wait (cancel() wakes it)
    clock: Callable[[], float]
    grace_s: float


class Engine(Settlement):
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
        self._delayed: list[tuple[float, int, Piece]] = []
        self._seq = itertools.count()
        self._extra = plan.concurrency  # see _SMALL_BODY; 0 once throttled or batches are big
        self._last_turn = 0.0  # time.monotonic() of the last scheduler turn
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._in_flight = 0  # submitted and not yet settled (queued pieces included)
        # Invocations going on now (under _flight_lock): what progress shows as in flight,
        # since _in_flight also counts the pieces queued for workers beyond the limit.
        self._running = 0
        # Pieces sent and not yet handed back, by id; the lock orders a worker's hand-over
        # against the scheduler abandoning it at the end of the grace period.
        self._flying: dict[int, Piece] = {}
        self._flight_lock = threading.Lock()
        self._active: dict[int, BatchState] = {}
        self._source = ReadAhead(stream, ahead=plan.concurrency)
        self._writer: CacheWriter | None = None  # started by run()
        # The scheduler's state is changed only under _lock, by whichever thread holds it: a
        # worker back from an invocation settles it and submits the next piece itself (see
        # _pump), so the common path wakes no other thread. run()'s thread is woken through
        # _wake only when it is needed: nothing in flight, a retry to time, a stop, an error,
        # read-ahead running low; and it ticks every _SETTLE_AFTER_S while work is in flight.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._draining = False  # the run is ending: run()'s thread handles what comes back
        self._failure: BaseException | None = None  # raised in a worker's turn at the lock

    def cancel(self) -> None:
        """Stop submitting; in-flight work gets the grace period (callable from any thread)."""
        self._cancel.set()
        self._wake.set()
        self._done.put(WAKE)

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
                    done = self._source.empty and not self._in_flight and not self._delayed
                    if self._stopping() or done:
                        # Set in the same turn: from here no worker takes a turn, so nothing
                        # (an error included) can be settled behind the drain's back.
                        self._draining = True
                        break
                    timeout, idle = self._timeout(), not self._in_flight
                self._wait_for_work(timeout, idle)
        except BaseException as exc:
            # Workers stop taking turns and sending queued pieces at once.
            self._failure = self._failure or exc
            raise
        finally:
            with self._lock:
                self._draining = True
            self._drain_in_flight()
            # Not joined: a worker still in an abandoned invocation ends when it returns.
            for _ in self._workers:
                self._inbox.put(_STOP)
            if self._writer is not None:
                self._writer.close()  # completed batches are on disk before the result exists

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
        self._submit(Piece(batch, state, positions, lookup=self.cache is not None))

    def _submit(self, piece: Piece) -> None:
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

    def _attempt(self, piece: Piece) -> None:
        """Worker thread: a cache lookup and/or one invocation; all is handed back, never lost."""
        started_at, start_s, end_s = time.time(), 0.0, 0.0
        outcome: Outcome | None = None
        cached: CacheEntry | None = None
        error: BaseException | None = None
        try:
            start_s = end_s = self.tracker.elapsed()  # the run's clock may be the user's
            # Looked up here, not on the scheduler thread: sqlite releases the GIL, and the
            # scheduler would then wait for it behind every busy worker.
            if piece.lookup and self.cache is not None:
                cached = self.cache.lookup(self.target, piece.batch.body)
                cached = cached if cached and len(cached.outputs) == len(piece.batch) else None
            if cached is None:
                if (
                    self._cancel.is_set()
                    or self.stop_reason is not None
                    or self._failure is not None
                    or self._draining
                ):
                    # Queued before the stop or the error: an ending run sends nothing more.
                    self._done.put(Unsent(piece))
                    self._pump()
                    return
                with self._flight_lock:
                    if piece.abandoned:
                        return  # the run stopped before this was sent: nothing to record
                    piece.sent = True
                    piece.started_at, piece.start_s = started_at, start_s
                    self._running += 1
                outcome = self.invoker.invoke(piece.batch)
            end_s = self.tracker.elapsed()
        except BaseException as exc:  # handed to the scheduler, which ends the run with it
            error = exc
        done = Attempt(piece, piece.slot, piece.limit, piece.epoch, started_at, start_s, end_s,
                       time.time(), outcome, error, cached)  # fmt: skip
        with self._flight_lock:
            if piece.sent:
                self._running -= 1
            abandoned = piece.abandoned
            if not abandoned:
                self._done.put(done)
        if abandoned:
            self._finish_late(done)
        elif (
            error is not None  # ends the run: no queued piece may go out first
            or self._inbox.empty()
            or self._done.qsize() >= _SETTLE_EVERY
            or time.monotonic() - self._last_turn > _SETTLE_AFTER_S
        ):
            self._pump()  # else the next piece is waiting: settle this one with later ones

    def _pump(self) -> None:
        """Worker thread: take the scheduler's turn here, unless another thread has it.

        Whoever holds the lock handles every completion queued so far. A worker that held it
        re-checks the queue after letting go; run()'s thread checks before it waits, and its
        tick settles the rest; so none is left behind.
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
                    or (self._source.running_low and not self._extra)
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
        self.tracker.set_in_flight(self._running)

    def _timeout(self) -> float | None:
        """How long run()'s thread may wait: until the next retry is due (if it can go)."""
        if not self._delayed or not (self._room() or not self._in_flight):
            return None
        return max(0.0, self._delayed[0][0] - self.clock())

    def _wait_for_work(self, timeout: float | None, idle: bool) -> None:
        """run()'s thread: read ahead while workers are busy, then wait to be needed.

        `timeout` and `idle` (nothing in flight) were decided in the same turn at the lock.
        """
        if idle:
            if timeout is not None and self.plan.sleep is not None:
                self.plan.sleep(timeout)
                return
            if timeout is None:
                return  # nothing in flight or waiting: nobody would wake this thread
        # Workers are busy: batch ahead now, one batch per turn at the lock, and stop as soon
        # as a completion waits (a worker that found the lock taken left it to this thread).
        # Not while small pieces are queued for the workers (_extra): they build the next
        # batches in their own turns, which costs less than waking this thread to do it.
        while (
            self._in_flight and not self._extra and not self._wake.is_set() and self._done.empty()
        ):
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

    def finish(self, state: str) -> None:
        """Publish the final counters and close the event stream."""
        self.tracker.set(records_read=self.stream.records, in_flight=self._in_flight)
        self.tracker.finish(state)
