"""The scheduler behind run()/start(): worker threads, turns at its lock, bounded in-flight work."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdakit.engine.cache import Cache, CacheEntry
from lambdakit.engine.hedge import Hedge, HedgeWatch, Race
from lambdakit.engine.ladder import Ladder
from lambdakit.engine.limits import Gate
from lambdakit.engine.outage import Breaker
from lambdakit.engine.progress import Tracker
from lambdakit.engine.record import Attempt, RunRecord
from lambdakit.engine.retry import Retry
from lambdakit.engine.settlement import WAKE, Flight, Piece, Settlement, Unclimbed, Unsent
from lambdakit.errors import LambdakitError
from lambdakit.invocation import Batch, Invoker, Outcome
from lambdakit.records.batching import BatchStream, Envelope, ReadAhead

__all__ = ["Engine", "Plan"]

log = logging.getLogger("lambdakit.engine.scheduler")

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
    outage_timeout: float | None = None  # stop after this long unreachable (None: never)
    probe: Callable[[], bool] | None = None  # does the endpoint answer? (composition root)
    ladder: Ladder | None = None  # on_oom= / on_timeout=: versions with more memory
    hedge: Hedge | None = None  # speculative backups of stragglers (hedge.py)
    gate: Gate | None = None  # lambdakit.limits(): caps shared with other runs (limits.py)


class Engine:
    """Runs one stream of batches through an Invoker; `run()` is called in its own thread.

    The Engine owns the threads and the turns at its lock; what becomes of each attempt that
    comes back is its Settlement's (settlement.py), which it calls under that lock.
    """

    def __init__(
        self, stream: BatchStream, invoker: Invoker, record: RunRecord, tracker: Tracker, plan: Plan
    ) -> None:
        self.stream = stream
        self.invoker = invoker
        self.record = record
        self.tracker = tracker
        self.plan = plan
        self.target, self.cache = plan.target, plan.cache
        self.concurrency, self.clock = plan.concurrency, plan.clock
        self._cancel = threading.Event()
        self._hurry = threading.Event()  # cancel(now=True): stop waiting for in-flight work
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._extra = plan.concurrency  # see _SMALL_BODY; 0 once throttled or batches are big
        self._last_turn = 0.0  # time.monotonic() of the last scheduler turn
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._flight = Flight()
        self._source = ReadAhead(stream, ahead=plan.concurrency)
        self.breaker = Breaker(plan.probe, outage_timeout=plan.outage_timeout, clock=plan.clock)
        self.hedge = HedgeWatch(plan.hedge) if plan.hedge is not None else None
        self.settlement = Settlement(
            stream=stream,
            record=record,
            tracker=tracker,
            target=plan.target,
            envelope=plan.envelope,
            cache=plan.cache,
            retry=plan.retry,
            tolerated=plan.tolerated,
            run_id=plan.run_id,
            grace_s=plan.grace_s,
            clock=plan.clock,
            concurrency=plan.concurrency,
            flight=self._flight,
            cancel=self._cancel,
            hurry=self._hurry,
            done=self._done,
            source=self._source,
            breaker=self.breaker,
            ladder=plan.ladder,
            hedge=self.hedge,
        )
        # The scheduler's state is changed only under _lock, by whichever thread holds it: a
        # worker back from an invocation settles it and submits the next piece itself (see
        # _pump), so the common path wakes no other thread. run()'s thread is woken through
        # _wake only when it is needed: nothing in flight, a retry to time, a stop, an error,
        # read-ahead running low; and it ticks every _SETTLE_AFTER_S while work is in flight.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._draining = False  # the run is ending: run()'s thread handles what comes back
        self._failure: BaseException | None = None  # raised in a worker's turn at the lock

    @property
    def stop_reason(self) -> str | None:
        """Why the run stopped early: "cancelled", "tolerance", "outage", "source_error" or None."""
        return self.settlement.stop_reason

    def cancel(self, now: bool = False) -> None:
        """Stop submitting; in-flight work gets the grace period, or none when `now`.

        Callable from any thread, and again: a second call with `now=True` ends the grace
        of a run already stopping.
        """
        if now:
            self._hurry.set()
        self._cancel.set()
        self._wake.set()
        self._done.put(WAKE)

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Drive the stream to the end (or a stop), then wait out the grace for in-flight work."""
        self.tracker.emit("start")
        settlement = self.settlement
        settlement.open()
        # Not a `with` block: its exit would join workers still busy after the grace period.
        try:
            while True:
                with self._lock:
                    self._step()
                    if self.breaker.expired() and not settlement.stopping():
                        settlement.stop("outage")
                    done = (
                        self._source.empty
                        and not self._flight.in_flight
                        and not settlement.delayed
                        and not settlement.parked
                        and not settlement.suspects
                    )
                    if settlement.stopping() or done:
                        # Set in the same turn: from here no worker takes a turn, so nothing
                        # (an error included) can be settled behind the drain's back.
                        self._draining = True
                        break
                    timeout, idle = self._timeout(), not self._flight.in_flight
                    probe_due = self.breaker.probe_due(self.clock())
                if probe_due:
                    self._probe()
                    continue
                self._wait_for_work(timeout, idle)
            failed_source = self._source.error
            if failed_source is not None:
                # Raised only now, when what was read before it has been sent and settled.
                settlement.stop_reason = settlement.stop_reason or "source_error"
                raise failed_source
        except BaseException as exc:
            # Workers stop taking turns and sending queued pieces at once.
            self._failure = self._failure or exc
            raise
        finally:
            with self._lock:
                self._draining = True
            settlement.drain()
            # Not joined: a worker still in an abandoned invocation ends when it returns.
            for _ in self._workers:
                self._inbox.put(_STOP)
            settlement.close()  # completed batches are on disk before the result exists

    def _room(self) -> bool:
        breaker = self.breaker
        if breaker.state != "closed":  # an outage: nothing goes out, or one at a time on trial
            return breaker.trial and not self._flight.in_flight
        # At most `concurrency` worker threads: pieces beyond the limit wait in the inbox.
        settlement = self.settlement
        if self._flight.in_flight >= settlement.limit_value + self._extra:
            return False
        # A rate-type throttle (or a limits() cap) came: one request per token of the bucket.
        return settlement.rate_value is None or settlement.rate.delay(self.clock()) == 0.0

    def _probe(self) -> None:
        """run()'s thread, outside the lock: does the endpoint answer? (see outage.Breaker)"""
        probe = self.plan.probe
        reachable = True  # without a probe, a trial invocation is the probe
        if probe is not None:
            try:
                reachable = bool(probe())
            except Exception:  # a probe that cannot reach the endpoint says so by failing
                log.debug("endpoint probe failed", exc_info=True)
                reachable = False
        with self._lock:
            self.settlement.probed(reachable)

    def _submit_ready(self) -> None:
        settlement, now = self.settlement, self.clock()
        while self._room() and (piece := settlement.due_retry(now)) is not None:
            self._submit(piece)
        # New batches only while retries waiting plus work in flight stay bounded: that is
        # what keeps memory flat however long the source is.
        while self._room() and not settlement.stopping():
            if self._flight.in_flight + len(settlement.delayed) >= 3 * self.concurrency:
                break
            batch = self._source.take()
            if batch is None:
                self.tracker.set(records_read=self.stream.records)
                self.tracker.source_read(self.stream.batches)
                return
            self._start_batch(batch)

    def _start_batch(self, batch: Batch) -> None:
        self.tracker.batch_read(self.stream.records, self.stream.rejected)
        if self._extra and len(batch.body) > _SMALL_BODY:
            self._extra = 0
        n = len(batch.items)
        self._submit(self.settlement.open_batch(batch, _ONE if n == 1 else tuple(range(n))))

    def _submit(self, piece: Piece) -> None:
        flight, settlement = self._flight, self.settlement
        piece.limit, piece.epoch = settlement.limit_value, settlement.epoch
        piece.rate, piece.rate_epoch = settlement.rate_value, settlement.rate_epoch
        settlement.rate.sent(self.clock())
        flight.in_flight += 1
        flight.flying[id(piece)] = piece
        workers = len(self._workers)
        # Started as needed; a superseded attempt still running holds its worker (hedge.py).
        busy = flight.in_flight + flight.detached
        if busy > workers and workers < self.concurrency + flight.detached:
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
        flight = self._flight
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
                    or self.settlement.stop_reason is not None
                    or self._failure is not None
                    or self._draining
                    or self.breaker.open
                ):
                    # Queued before the stop or the error: an ending run sends nothing more;
                    # nor, in an outage, one still going on (the piece is parked till it ends).
                    self._done.put(Unsent(piece))
                    self._pump()
                    return
                invoker = self.invoker
                if piece.memory_mb is not None and self.plan.ladder is not None:
                    try:  # the first batch to climb to a rung publishes its version
                        invoker = self.plan.ladder.invoker(piece.memory_mb)
                    except LambdakitError as exc:
                        self._done.put(Unclimbed(piece, str(exc)))
                        self._pump()
                        return
                    started_at, start_s = time.time(), self.tracker.elapsed()
                gate = self.plan.gate
                if gate is None:
                    with flight.lock:
                        if piece.abandoned:
                            return  # the run stopped before this was sent: nothing to record
                        piece.sent = True
                        piece.started_at, piece.start_s = started_at, start_s
                        flight.running += 1
                    outcome = invoker.invoke(piece.batch)
                else:
                    # Other runs of the function share its caps: wait for a slot and a token
                    # (not part of the attempt's latency), unless the run stops meanwhile.
                    with gate.slot(self._stopping) as admitted:
                        if not admitted:
                            self._done.put(Unsent(piece))
                            self._pump()
                            return
                        started_at, start_s = time.time(), self.tracker.elapsed()
                        with flight.lock:
                            if piece.abandoned:
                                return  # the run stopped before this was sent
                            piece.sent = True
                            piece.started_at, piece.start_s = started_at, start_s
                            flight.running += 1
                        outcome = invoker.invoke(piece.batch)
            end_s = self.tracker.elapsed()
        except BaseException as exc:  # handed to the scheduler, which ends the run with it
            error = exc
        done = Attempt(piece, piece.slot, piece.limit, piece.epoch, started_at, start_s, end_s,
                       time.time(), outcome, error, cached, rate=piece.rate)  # fmt: skip
        with flight.lock:
            if piece.sent:
                flight.running -= 1
            if piece.detached:
                flight.detached -= 1
            abandoned = piece.abandoned
            if not abandoned:
                self._done.put(done)
        if abandoned:
            self.settlement.finish_late(done)
        elif (
            error is not None  # ends the run: no queued piece may go out first
            or self._inbox.empty()
            or self._done.qsize() >= _SETTLE_EVERY
            or time.monotonic() - self._last_turn > _SETTLE_AFTER_S
        ):
            self._pump()  # else the next piece is waiting: settle this one with later ones

    def _stopping(self) -> bool:
        """Whether a worker waiting at a shared gate should give up its piece."""
        return (
            self._cancel.is_set()
            or self.settlement.stop_reason is not None
            or self._failure is not None
            or self._draining
        )

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
                    not self._flight.in_flight
                    or self.settlement.delayed
                    or self.settlement.stop_reason is not None
                    or (self._source.running_low and not self._extra)
                    or self.breaker.open
                    or self.settlement.rate_value is not None
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
        settlement = self.settlement
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                break
            settlement.handle(item)
        if self._extra and settlement.throttled:
            self._extra = 0  # after the first throttle nothing more is queued beyond the limit
        if not settlement.stopping():
            if self.hedge is not None and self.breaker.state == "closed":
                self._send_backups()
            self._submit_ready()
        self.tracker.set_in_flight(self._flight.running)

    def _send_backups(self) -> None:
        """Send again each attempt running longer than the hedge's threshold (budget allowing).

        Backups go before new batches: a straggler holds up the end of the run.
        """
        watch = self.hedge
        assert watch is not None
        threshold = watch.threshold()
        if threshold is None:
            return
        now = self.tracker.elapsed()
        stragglers = [
            piece
            for piece in self._flight.flying.values()
            if piece.sent and not piece.abandoned and piece.race is None and not piece.backup
            and now - piece.start_s > threshold
        ]  # fmt: skip
        settlement, flight = self.settlement, self._flight
        for piece in stragglers:
            if not watch.may_send(self.tracker.counts["invocations"]):
                return
            if settlement.rate_value is not None and settlement.rate.delay(self.clock()) > 0:
                return  # paced: a backup waits for a token like any request
            backup = Piece(piece.batch, piece.state, piece.positions, piece.failures,
                           piece.throttles, piece.verdicts)  # fmt: skip
            backup.memory_mb, backup.climbed, backup.backup = piece.memory_mb, piece.climbed, True
            piece.race = backup.race = Race([piece, backup])
            piece.state.pending += 1
            watch.backups += 1
            # Beyond the in-flight limit and on a thread of its own: when stragglers hold
            # every slot is when a backup matters, and max_share bounds how many there are.
            backup.limit, backup.epoch = settlement.limit_value, settlement.epoch
            backup.rate, backup.rate_epoch = settlement.rate_value, settlement.rate_epoch
            settlement.rate.sent(self.clock())
            flight.in_flight += 1
            flight.flying[id(backup)] = backup
            backup.slot = self.concurrency + watch.backups - 1  # its own lane in the timeline
            threading.Thread(
                target=self._attempt, args=(backup,), name="lambdakit-backup", daemon=True
            ).start()

    def _timeout(self) -> float | None:
        """How long run()'s thread may wait: until the next retry is due (if it can go)."""
        if self.breaker.open and self.breaker.probe_at is not None:
            return max(0.0, self.breaker.probe_at - self.clock())
        settlement, now = self.settlement, self.clock()
        due = settlement.next_due()
        token = 0.0 if settlement.rate_value is None else settlement.rate.delay(now)
        if token > 0.0 and self._flight.in_flight < settlement.limit_value:
            # Held back by the rate limit alone: wake when the next token is there.
            if not self._source.empty and not settlement.stopping():
                return token if due is None else min(token, max(0.0, due - now))
            if due is not None:
                return max(token, due - now)
        if due is None or not (self._room() or not self._flight.in_flight):
            return None
        return max(0.0, due - now)

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
            self._flight.in_flight
            and not self._extra
            and not self._wake.is_set()
            and self._done.empty()
        ):
            with self._lock:
                if self.settlement.stopping() or not self._source.prefetch():
                    break
        if self._flight.in_flight:
            # Workers leave completions to be settled in groups; while they are all busy in
            # long invocations, this thread settles what came back, so progress stays live.
            timeout = _SETTLE_AFTER_S if timeout is None else min(timeout, _SETTLE_AFTER_S)
        if self._done.empty():
            self._wake.wait(timeout)
        self._wake.clear()

    def finish(self, state: str) -> None:
        """Publish the final counters and close the event stream."""
        self.tracker.set(records_read=self.stream.records, in_flight=self._flight.in_flight)
        if self.stream.exhausted:
            self.tracker.source_read(self.stream.batches)
        self.tracker.finish(state)
