"""What becomes of each attempt that comes back: settled, retried, bisected, cached, abandoned."""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambdakit.engine.cache import CacheEntry, CacheWriter
from lambdakit.engine.hedge import HedgeWatch, Race
from lambdakit.engine.ladder import Ladder
from lambdakit.engine.outage import UNREACHABLE, Breaker
from lambdakit.engine.progress import CANCELLING, Tracker
from lambdakit.engine.record import Attempt, BatchState, RunRecord
from lambdakit.engine.retry import AdaptiveLimit, AdaptiveRate
from lambdakit.invocation import (
    BATCH_CACHED,
    BATCH_CANCELLED,
    BATCH_FAILED,
    BATCH_NOT_RUN,
    BATCH_OK,
    BATCH_PARTIAL,
    CANCELLED,
    FUNCTION_ERROR,
    OK,
    PAYLOAD_TOO_LARGE,
    RATE_REASONS,
    REPORTED_FAILURE,
    SUPERSEDED,
    THROTTLE,
    Batch,
    Outcome,
)
from lambdakit.records.batching import BatchStream, Envelope, ReadAhead, split_batch, sub_batch

if TYPE_CHECKING:
    from lambdakit.engine.cache import Cache, CacheWriter
    from lambdakit.engine.retry import Retry

__all__ = ["WAKE", "Flight", "Piece", "Settlement", "Unclimbed", "Unsent"]

log = logging.getLogger("lambdakit.engine.scheduler")  # the engine's logger: one run, one source

# A 413 on the request, or a response over Lambda's 6 MB: smaller batches get through.
_TOO_LARGE = (PAYLOAD_TOO_LARGE, "Function.ResponseSizeTooLarge")
WAKE = object()  # put on the completion queue by cancel(), to end the drain's wait at once


@dataclass(slots=True)
class Piece:
    """Some items of a batch, sent together: the whole batch, a bisected half, or a retry."""

    batch: Batch
    state: BatchState
    positions: tuple[int, ...]  # position of each item in the source batch
    failures: int = 0  # failed attempts so far (throttles excluded)
    throttles: int = 0
    # Per item: times the function reported it failed as a verdict (not marked retryable);
    # empty while none was. Checked against Retry.item_attempts.
    verdicts: tuple[int, ...] = ()
    due: float = 0.0
    lookup: bool = False  # a fresh batch: the worker first looks it up in the cache
    # Set when sent; each piece is sent once (a retry is a new piece).
    slot: int = 0
    limit: int = 0
    epoch: int = 0
    rate: float | None = None  # the adaptive rate limit when sent (None: not limited)
    rate_epoch: int = 0
    started_at: float = 0.0
    start_s: float = 0.0
    sent: bool = False  # handed to the invoker (until then, the end of the grace drops it)
    abandoned: bool = False  # not back when the grace ended: the run stopped waiting for it
    unanswered: bool = False  # a retry after an attempt that got no answer (see Breaker)
    memory_mb: int | None = None  # a memory ladder rung to run on (None: the run's target)
    climbed: Outcome | None = None  # the out-of-memory (or timeout) attempt that sent it up
    race: Race | None = None  # hedged: the batch's attempts racing each other (hedge.py)
    backup: bool = False  # a speculative backup of a straggling attempt
    detached: bool = False  # superseded while running: its worker is busy, the run moves on


@dataclass(frozen=True, slots=True)
class Unsent:
    """A queued piece a worker did not send because the run was stopping."""

    piece: Piece


@dataclass(frozen=True, slots=True)
class Unclimbed:
    """A piece for a memory ladder rung that could not be published: it fails as it did."""

    piece: Piece
    reason: str


class Flight:
    """The pieces handed to workers and not yet settled: shared by the Engine and Settlement.

    The Engine adds a piece when it submits one and counts the invocations running; the
    Settlement takes each piece off when its completion is settled, or abandons what is left
    when the grace period ends. `lock` orders a worker's hand-over against that abandoning.
    """

    __slots__ = ("detached", "flying", "in_flight", "lock", "running")

    def __init__(self) -> None:
        self.in_flight = 0  # submitted and not yet settled (pieces queued for workers included)
        self.running = 0  # invocations going on now (under `lock`): what progress shows
        self.detached = 0  # superseded attempts still running in a worker (under `lock`)
        self.flying: dict[int, Piece] = {}  # sent or queued and not yet handed back, by id
        self.lock = threading.Lock()


class Settlement:
    """What becomes of each attempt that comes back: recorded, retried, bisected or cached.

    The Engine's collaborator: it owns the batches under way, the retries waiting, the
    adaptive in-flight limit and why the run stops. It runs under the Engine's lock, in
    whichever thread takes the turn; once the run is draining, in run()'s thread alone.
    """

    def __init__(
        self,
        *,
        stream: BatchStream,
        record: RunRecord,
        tracker: Tracker,
        target: Any,
        envelope: Envelope,
        cache: Cache | None,
        retry: Retry,
        tolerated: Any,
        run_id: str,
        grace_s: float,
        clock: Any,
        concurrency: int,
        flight: Flight,
        cancel: threading.Event,
        hurry: threading.Event,
        done: queue.SimpleQueue[Any],
        source: ReadAhead,
        breaker: Breaker,
        rate: AdaptiveRate | None = None,
        ladder: Ladder | None = None,
        hedge: HedgeWatch | None = None,
    ) -> None:
        self.stream, self.record, self.tracker = stream, record, tracker
        self.target, self.envelope, self.cache = target, envelope, cache
        self.retry, self.tolerated, self.run_id = retry, tolerated, run_id
        self.grace_s, self.clock = grace_s, clock
        self.flight, self._cancel, self._done, self._source = flight, cancel, done, source
        self._hurry = hurry  # set: the grace is over now (a second interrupt)
        self.limit = AdaptiveLimit(concurrency)
        # Its current value and epoch, as settling last set them: read on every submit, and
        # the limit only changes here, through on_success/on_throttle.
        self.limit_value, self.epoch = self.limit.limit, self.limit.epoch
        # Rate-type throttles (invocation.RATE_REASONS) leave the in-flight limit alone and
        # slow the requests per second instead; None until one comes (or a limits() cap).
        self.rate = rate if rate is not None else AdaptiveRate(clock=clock)
        self.rate_value, self.rate_epoch = self.rate.rate, self.rate.epoch
        self.ladder = ladder
        self.hedge = hedge
        self.throttled = False  # a throttle came back: the Engine stops queuing beyond the limit
        self.stop_reason: str | None = None  # "cancelled", "tolerance", "outage", "source_error"
        self.active: dict[int, BatchState] = {}  # batches under way, by index
        self.delayed: list[tuple[float, int, Piece]] = []  # retries waiting, by due time
        self._seq = itertools.count()
        self._writer: CacheWriter | None = None
        # Outages (outage.py): pieces waiting for the endpoint to answer again, and pieces
        # whose last attempt got no answer, kept until it is clear whether that was an
        # outage (then they are parked, the attempt not counted) or a failure (then failed).
        self.breaker = breaker
        self.parked: list[Piece] = []
        self.suspects: list[tuple[Piece, Outcome]] = []

    def open(self) -> None:
        """Start the cache writer (completed batches are written in the background)."""
        self._writer = self.cache.writer() if self.cache is not None else None

    def close(self) -> None:
        """Flush the cache writer: completed batches are on disk before the result exists."""
        if self._writer is not None:
            self._writer.close()

    def open_batch(self, batch: Batch, positions: tuple[int, ...]) -> Piece:
        """A fresh batch under way: its state, and the first piece to send (a cache lookup)."""
        state = BatchState(batch)
        if self.cache is not None:
            state.outputs = [None] * len(batch.items)
        self.active[batch.index] = state
        return Piece(batch, state, positions, lookup=self.cache is not None)

    def due_retry(self, now: float) -> Piece | None:
        """The retry whose time has come, taken off the waiting list; None when none is due."""
        if self.delayed and self.delayed[0][0] <= now:
            return heapq.heappop(self.delayed)[2]
        return None

    def next_due(self) -> float | None:
        """When the next waiting retry is due (the run's clock), or None."""
        return self.delayed[0][0] if self.delayed else None

    def stopping(self) -> bool:
        """Whether the run is stopping (a cancel seen here becomes the stop reason)."""
        if self._cancel.is_set() and self.stop_reason is None:
            self.stop("cancelled")
        return self.stop_reason is not None

    def stop(self, reason: str) -> None:
        """Stop the run for `reason`: nothing new is submitted, retries are left undone."""
        self.stop_reason = reason
        self.tracker.set_state(CANCELLING)

    def drain(self) -> None:
        """run()'s thread, at the end: wait out the grace for in-flight work, then record
        every batch still under way (and every batch read but never sent) as cancelled."""
        outage = self.stop_reason == "outage"
        # Unreachable: nothing in flight will answer, so the run ends within outage_timeout.
        deadline = time.monotonic() + (0.0 if outage else self.grace_s)
        while self.flight.in_flight and not self._hurry.is_set():
            try:
                item = self._done.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            try:
                self.handle(item)
            except BaseException:  # the run is already ending with the first error
                log.exception("error while finishing in-flight work")
        if self.flight.in_flight:
            self._abandon_in_flight()
        self.delayed.clear()  # their batches are still active: recorded as cancelled below
        self.parked.clear()
        for piece, outcome in self.suspects:  # no outage came of it: they failed
            self._fail(piece, list(range(len(piece.batch))), outcome)
        self.suspects.clear()
        status = BATCH_NOT_RUN if outage else BATCH_CANCELLED
        for state in list(self.active.values()):
            self._unfinished(state)
            self.record.add_batch(state, status=status)
        self.active.clear()
        # Batches read ahead but never sent: their records are counted, so they get rows.
        for batch in self._source.take_ready():
            state = BatchState(batch)
            self._unfinished(state)
            self.record.add_batch(state, status=status)

    def _unfinished(self, state: BatchState) -> None:
        """An outage stopped the run: the batch says why its records did not run."""
        if self.stop_reason == "outage" and state.failed == 0:
            state.error_type = "Lambdakit.EndpointUnreachable"
            state.error_message = (
                f"{UNREACHABLE}: no answer for {self.breaker.elapsed():.0f} s "
                f"(outage_timeout={self.breaker.outage_timeout:g} s); not run, not failed"
            )

    def _abandon_in_flight(self) -> None:
        """Give each invocation still running at the end of the grace a `cancelled` attempt row.

        What came back before the lock is handled as usual; the rest is abandoned, and a worker
        finishing later stores a success in the cache only (see `_finish_late`).
        """
        with self.flight.lock:
            arrived = []
            while True:
                try:
                    arrived.append(self._done.get_nowait())
                except queue.Empty:
                    break
            for item in arrived:
                try:
                    self.handle(item)
                except BaseException:  # the run is already ending with the first error
                    log.exception("error while finishing in-flight work")
            abandoned = list(self.flight.flying.values())
            for piece in abandoned:
                piece.abandoned = True
        self.flight.flying.clear()
        self.flight.in_flight = 0
        # Never taken up by a worker: not an invocation, only the batch's cancelled row.
        abandoned = [piece for piece in abandoned if piece.sent]
        if abandoned:
            log.warning(
                "%d invocations still running after the grace period (%.1f s): recorded as "
                "cancelled (they may still run; a late success is cached)",
                len(abandoned),
                self.grace_s,
            )
        why = "interrupted again" if self._hurry.is_set() else f"{self.grace_s:g} s grace period"
        why = UNREACHABLE if self.stop_reason == "outage" else why
        message = (
            f"still running when the run stopped waiting ({why}); the function may have "
            "run, its result is not in this run"
        )
        for piece in abandoned:
            outcome = Outcome(CANCELLED, error_type="Lambdakit.Cancelled", error_message=message)
            state = piece.state
            state.attempts += 1
            end_s = self.tracker.elapsed()
            done = Attempt(piece, piece.slot, piece.limit, piece.epoch, piece.started_at,
                           piece.start_s, end_s, time.time(), outcome, rate=piece.rate)  # fmt: skip
            done.attempt = state.attempts
            self.record.add_attempt(piece.batch, done, outcome)
            state.timed(done.start_s, end_s)
            self.tracker.add(invocations=1, retries=done.attempt > 1)
            self.tracker.emit_attempt(
                piece.batch.index, done.attempt, len(piece.batch), outcome, end_s - done.start_s
            )
        self.tracker.set(in_flight=self.flight.in_flight)

    def finish_late(self, done: Attempt) -> None:
        """Worker thread, after the run stopped waiting: keep a whole batch's success cached.

        Only a whole batch has the key a rerun looks up; a bisected half or a retry of some
        items has a body of its own, so its success cannot spare the rerun an invocation.
        """
        piece, outcome = done.piece, done.outcome
        if outcome is None or outcome.outcome != OK:
            return
        race = piece.race
        # A superseded twin came back: a success that differs from the winner's is a warning
        # (the function is not deterministic), and must not fill the cache.
        if (
            race is not None
            and race.winner is not None
            and self.hedge is not None
            and not self.hedge.late(race, outcome.outputs, piece.batch.index)
        ):
            return
        if self.cache is None:
            return
        batch = piece.batch
        if batch is not piece.state.batch:
            return
        outputs = outcome.outputs or [None] * len(batch)
        metrics = self.record.metrics_of(done, outcome)
        try:
            self.cache.store(self.target, outcome.executed_version, batch.body, outputs,
                             run_id=self.run_id, metrics=metrics)  # fmt: skip
        except Exception:  # nobody is left to raise to: the run has already returned
            log.exception("could not cache batch %d, which finished after the run", batch.index)
            return
        log.info("batch %d finished after the run stopped; its success is cached", batch.index)

    # -- completions -----------------------------------------------------------------------

    def handle(self, item: Any) -> None:
        """Settle one completion from the queue (an Attempt, an Unsent piece, or WAKE)."""
        if item is WAKE:
            return
        if item.piece.abandoned and item.piece.race is not None:
            # A hedged twin that came back (or was handed back) just after the other won:
            # _win took it off the flight and gave it its superseded row already.
            with self.flight.lock:
                if item.piece.detached:
                    item.piece.detached = False
                    self.flight.detached -= 1
            if type(item) is Attempt and item.error is None:
                self.finish_late(item)
            return
        if type(item) is Unclimbed:
            self._unclimbed(item)
            return
        if type(item) is Unsent:  # its batch stays active: recorded as cancelled
            self.flight.in_flight -= 1
            del self.flight.flying[id(item.piece)]
            if self.stop_reason is None:  # held back by an outage: sent once it is over
                self._park(item.piece)
            return
        done: Attempt = item
        self.flight.in_flight -= 1
        del self.flight.flying[id(done.piece)]
        if done.error is not None:
            raise done.error
        piece, outcome, state = done.piece, done.outcome, done.piece.state
        if done.cached is not None:
            self._serve_cached(state.batch, done.cached)
            return
        assert outcome is not None
        race = piece.race
        state.attempts += 1
        done.attempt = state.attempts
        self.record.add_attempt(piece.batch, done, outcome)
        state.timed(done.start_s, done.end_s)
        if race is not None:
            if outcome.outcome != OK and any(
                p is not piece and not p.abandoned for p in race.pieces
            ):
                # Failed while its twin still runs: recorded, and the twin's reply decides.
                race.pieces.remove(piece)
                state.pending -= 1
                self.tracker.attempt_done(done.attempt > 1, False, self.limit_value,
                                          self.rate_value)  # fmt: skip
                return
            if outcome.outcome == OK:
                self._win(race, piece, done, outcome)
        throttled = outcome.outcome == THROTTLE
        if throttled:
            if outcome.reason in RATE_REASONS:
                self.rate_value = self.rate.on_throttle(piece.rate_epoch)
                self.rate_epoch = self.rate.epoch
            else:
                self.limit_value = self.limit.on_throttle(done.epoch)
                self.epoch = self.limit.epoch
            self.throttled = True
        elif outcome.outcome == OK:
            if self.hedge is not None:
                self.hedge.observe(done.end_s - done.start_s)
            self.limit_value = self.limit.on_success()
            if self.rate_value is not None:
                self.rate_value = self.rate.on_success()
        self.tracker.attempt_done(done.attempt > 1, throttled, self.limit_value, self.rate_value)
        unanswered = self._heard(outcome, done.end_s - done.start_s)
        failed = self._settle(piece, done, outcome, unanswered)
        if self.tracker.events is not None:
            latency = done.end_s - done.start_s
            self.tracker.emit_attempt(
                piece.batch.index, done.attempt, len(piece.batch), outcome, latency
            )
        if failed:
            failed_records = self.tracker.counts["failed_records"]
            if not self.tolerated(failed_records, self.stream.records):
                self.stop("tolerance")
        if state.pending == 0:
            self._finish_batch(state)

    def _win(self, race: Race, piece: Piece, done: Attempt, outcome: Outcome) -> None:
        """The first good reply of a hedged batch: its twin is superseded, not waited for."""
        race.winner, race.outputs = piece, outcome.outputs
        if piece.backup and self.hedge is not None:
            self.hedge.won += 1
        state = piece.state
        for other in race.pieces:
            if other is piece:
                continue
            with self.flight.lock:
                if id(other) not in self.flight.flying:
                    continue
                other.abandoned = True  # a worker coming back with it calls finish_late
                del self.flight.flying[id(other)]
                self.flight.in_flight -= 1
                if other.sent:
                    other.detached = True
                    self.flight.detached += 1
            state.pending -= 1
            if not other.sent:
                if other.backup and self.hedge is not None:
                    self.hedge.backups -= 1  # still queued: it never goes out, costs nothing
                continue
            end_s = self.tracker.elapsed()
            message = (
                f"still running when attempt {done.attempt} of the batch answered first; "
                "its result is not the batch's"
            )
            late = Outcome(SUPERSEDED, error_message=message)
            state.attempts += 1
            row = Attempt(other, other.slot, other.limit, other.epoch, other.started_at,
                          other.start_s, end_s, time.time(), late, rate=other.rate)  # fmt: skip
            row.attempt = state.attempts
            self.record.add_attempt(other.batch, row, late)
            self.tracker.add(invocations=1, retries=row.attempt > 1)

    def _unclimbed(self, item: Unclimbed) -> None:
        """No version with more memory: the attempt that ran out fails, with the reason."""
        self.flight.in_flight -= 1
        del self.flight.flying[id(item.piece)]
        piece = item.piece
        held = piece.climbed or Outcome(FUNCTION_ERROR, error_type="Runtime.OutOfMemory")
        message = f"{held.error_message or held.error_type}; {item.reason}"
        failed = Outcome(held.outcome, http_status=held.http_status,
                         executed_version=held.executed_version, request_id=held.request_id,
                         error_type=held.error_type, error_message=message,
                         log_tail=held.log_tail, report=held.report)  # fmt: skip
        self._fail(piece, list(range(len(piece.batch))), failed)
        if not self.tolerated(self.tracker.counts["failed_records"], self.stream.records):
            self.stop("tolerance")
        if piece.state.pending == 0:
            self._finish_batch(piece.state)

    def _serve_cached(self, batch: Batch, entry: CacheEntry) -> None:
        del self.active[batch.index]
        self.record.outputs.put(batch.record_indices, entry.outputs)
        self.record.add_cached_batch(batch, entry)
        n = len(batch)
        self.tracker.add(batches_done=1, cached_batches=1, cached_records=n, ok_records=n)
        self.tracker.emit("batch", batch=batch.index, records=n, outcome=BATCH_CACHED)

    # -- outages ---------------------------------------------------------------------------

    def _heard(self, outcome: Outcome, latency_s: float) -> bool:
        """Tell the breaker whether the endpoint answered; True if this attempt got no answer."""
        breaker = self.breaker
        if outcome.outcome != OK and breaker.unanswered(outcome, latency_s):
            # Only what the policy would retry: a timed-out call may have run, and a policy
            # that never retries timeouts must not see one sent again after an outage.
            return outcome.outcome in self.retry.on and self.retry.max_attempts > 1
        if breaker.answered(latency_s):
            self._release()
        if self.suspects:
            # The endpoint answers: the attempts held back as possible outage casualties
            # failed like any other (their retries were already used up).
            suspects, self.suspects = self.suspects, []
            for piece, held in suspects:
                self._fail(piece, list(range(len(piece.batch))), held)
                failed_records = self.tracker.counts["failed_records"]
                if not self.tolerated(failed_records, self.stream.records):
                    self.stop("tolerance")
                if piece.state.pending == 0:
                    self._finish_batch(piece.state)
        return False

    def _no_answer(self, piece: Piece, outcome: Outcome) -> bool | None:
        """An attempt got no answer: park it in an outage; None: settle it as a failure."""
        breaker = self.breaker
        if breaker.trial and breaker.probe is not None:
            # The probe was answered but the invocation was not: the endpoint is up, so this
            # is the function's (or the network's) failure, counted as usual.
            breaker.answered_probe_only()
            self._sync_outage()
            return None
        if breaker.no_answer(self.flight.in_flight + 1):
            self._give_back()
        self._sync_outage()
        if breaker.open:
            self._park(piece)
            return False
        piece.failures += 1
        delay = self._delay(piece, outcome)
        if delay is not None:
            self._requeue(piece, piece.batch, range(len(piece.batch)), delay, unanswered=True)
        else:
            # Its last attempt: failed only once the endpoint is known to answer.
            self.suspects.append((piece, outcome))
        return False

    def _give_back(self) -> None:
        """The breaker opened: attempts that got no answer before it did are not counted."""
        for piece, _ in self.suspects:
            piece.failures -= 1
            self._park(piece)
        self.suspects.clear()
        kept = []
        for entry in self.delayed:
            piece = entry[2]
            if piece.unanswered:
                piece.failures -= 1
                piece.unanswered = False
                self.parked.append(piece)
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self.delayed = kept

    def _park(self, piece: Piece) -> None:
        """Keep a piece until the endpoint answers again (a fresh piece: each is sent once)."""
        if self.stopping():
            piece.state.pending -= 1  # left undone, not failed: the run is stopping
            return
        again = Piece(piece.batch, piece.state, piece.positions, piece.failures, piece.throttles,
                      piece.verdicts)  # fmt: skip
        again.lookup = piece.lookup
        again.memory_mb, again.climbed = piece.memory_mb, piece.climbed
        if self.breaker.open:
            self.parked.append(again)
        else:  # the endpoint answered meanwhile (a worker saw the breaker still open): due now
            again.due = self.clock()
            heapq.heappush(self.delayed, (again.due, next(self._seq), again))

    def probed(self, reachable: bool) -> None:
        """The probe's answer (under the Engine's lock): on trial, the parked pieces may go."""
        self.breaker.probed(reachable)
        if self.breaker.trial:
            self._release()
        self._sync_outage()

    def _release(self) -> None:
        """The endpoint answers: parked pieces are due now (in order, one at a time on trial)."""
        now = self.clock()
        for piece in self.parked:
            piece.due = now
            heapq.heappush(self.delayed, (now, next(self._seq), piece))
        self.parked.clear()
        self._sync_outage()

    def _sync_outage(self) -> None:
        breaker = self.breaker
        self.tracker.set_outage(breaker.since, breaker.probe_at if breaker.open else None)

    # -- settling --------------------------------------------------------------------------

    def _settle(
        self, piece: Piece, done: Attempt, outcome: Outcome, unanswered: bool = False
    ) -> bool:
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
            return self._items_failed(piece, bad, outcome)
        if outcome.error_type in _TOO_LARGE:
            # The request (413) or the response was too big, not wrong: bisect and send both
            # halves now, without using up the retry budget. One record cannot shrink.
            if n == 1:
                return self._fail(piece, [0], outcome)
            if self.stopping():
                state.pending -= 1  # left undone, not failed: the run is stopping
                return False
            left, right = split_batch(piece.batch, self.envelope)
            state.pending += 1
            self._requeue(piece, left, range(len(left)), 0.0)
            self._requeue(piece, right, range(len(left), n), 0.0)
            return False
        if self.ladder is not None:
            ran_at = outcome.report.memory_size_mb if outcome.report is not None else None
            memory = self.ladder.next_memory(outcome, piece.memory_mb or ran_at)
            if memory is not None:
                # Out of memory (or time): the function could not finish, so the climb uses
                # no attempt; the ladder is finite, so this ends.
                if self.stopping():
                    state.pending -= 1
                    return False
                self._requeue(piece, piece.batch, range(n), 0.0, memory_mb=memory,
                              climbed=outcome)  # fmt: skip
                return False
        if unanswered:
            parked = self._no_answer(piece, outcome)
            if parked is not None:
                return parked
        if outcome.outcome == THROTTLE:
            piece.throttles += 1
        else:
            piece.failures += 1
        delay = self._delay(piece, outcome)
        if delay is not None:
            self._requeue(piece, piece.batch, range(n), delay)
            return False
        return self._fail(piece, list(range(n)), outcome)

    def _items_failed(self, piece: Piece, bad: list[int], outcome: Outcome) -> bool:
        """Items the function reported failed: retry the transient, fail the judged for good.

        A report is a verdict on the record unless marked retryable, and a verdict is retried
        only while the record has item attempts left (Retry.item_attempts, default 1).
        """
        piece.failures += 1
        delay = self._delay(piece, outcome)
        transient = set(outcome.retryable_items)
        verdicts = list(piece.verdicts) or [0] * len(piece.batch)
        for p in bad:
            if p not in transient:
                verdicts[p] += 1
        again = []
        if delay is not None:
            again = [p for p in bad if self.retry.retries_item(verdicts[p], p in transient)]
        going = set(again)
        final = [p for p in bad if p not in going]
        if again and final:
            piece.state.pending += 1  # two pieces of work from one: a retry and a failure
        if again:
            sub = sub_batch(piece.batch, again, self.envelope)
            self._requeue(piece, sub, again, delay or 0.0, verdicts=verdicts)
        return self._fail(piece, final, outcome) if final else False

    def _delay(self, piece: Piece, outcome: Outcome) -> float | None:
        count = piece.throttles if outcome.outcome == THROTTLE else piece.failures
        return self.retry.next_delay(outcome.outcome, count, outcome.retry_after_s)

    def _requeue(
        self,
        piece: Piece,
        batch: Batch,
        positions: Any,
        delay: float,
        unanswered: bool = False,
        verdicts: Sequence[int] | None = None,
        memory_mb: int | None = None,
        climbed: Outcome | None = None,
    ) -> None:
        if self.stopping():
            # Worth retrying, but the run is stopping: the items are left undone, not failed.
            piece.state.pending -= 1
            return
        positions = list(positions)
        kept = tuple(piece.positions[p] for p in positions)
        counts = piece.verdicts if verdicts is None else verdicts
        judged = tuple(counts[p] for p in positions) if counts else ()
        again = Piece(batch, piece.state, kept, piece.failures, piece.throttles, judged)
        again.unanswered = unanswered
        # A retry stays on the rung its piece reached (more memory never hurts the outputs).
        again.memory_mb = memory_mb if memory_mb is not None else piece.memory_mb
        again.climbed = climbed if climbed is not None else piece.climbed
        again.due = self.clock() + delay
        heapq.heappush(self.delayed, (again.due, next(self._seq), again))

    def _deliver(
        self,
        piece: Piece,
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
        if piece.batch is not state.batch or len(good) != len(piece.batch):
            state.settle(piece.positions[p] for p in good)  # the batch is not done at once
        if outcome.executed_version:
            state.versions.add(outcome.executed_version)
        if piece.memory_mb is not None:
            state.memory_mb = max(state.memory_mb or 0, piece.memory_mb)
        if state.outputs is not None:  # kept only to fill the cache, with the metrics
            for p, value in zip(good, values, strict=True):
                state.outputs[piece.positions[p]] = value
            state.metrics = self.record.metrics_of(done, outcome)
        self.tracker.add(ok_records=len(good))

    def _fail(self, piece: Piece, bad: list[int], outcome: Outcome) -> bool:
        state = piece.state
        for p in bad:
            self.record.add_failure(piece.batch, p, outcome)
        state.failed += len(bad)
        state.settle(piece.positions[p] for p in bad)
        state.pending -= 1
        state.error_type, state.error_message = outcome.error_type, outcome.error_message
        state.log_tail = outcome.log_tail
        self.tracker.add(failed_records=len(bad))
        return True

    def _finish_batch(self, state: BatchState) -> None:
        del self.active[state.batch.index]
        incomplete = state.ok + state.failed < len(state.batch)
        if incomplete:
            status = BATCH_CANCELLED
        elif state.failed == 0:
            status = BATCH_OK
        else:
            status = BATCH_FAILED if state.ok == 0 else BATCH_PARTIAL
        self.record.add_batch(state, status=status)
        if status == BATCH_OK:
            self._store_in_cache(state)
        self.tracker.batch_done(status in (BATCH_FAILED, BATCH_PARTIAL))
        if not self.tracker.wants_batch_events:
            return
        failed = status != BATCH_OK
        self.tracker.emit(
            "batch",
            batch=state.batch.index,
            records=len(state.batch),
            outcome=status,
            failed_records=state.failed,
            error_type=state.error_type if failed else None,
            error_message=state.error_message if failed else None,
            log_tail=state.log_tail if failed else None,
        )

    def _store_in_cache(self, state: BatchState) -> None:
        if self._writer is None or state.outputs is None:
            return
        versions = state.versions
        if state.memory_mb is not None and self.ladder is not None:
            # Outputs of a rung's version are those of the run's own (same code, more
            # memory): kept under its key, so a rerun finds them; the metrics say where.
            base = next(iter(self.target.versions), None)
            versions = {self.ladder.base_of(v, base) for v in versions}
        if len(versions) > 1:
            # Pieces of one batch ran on different versions of a weighted alias: no single
            # version produced these outputs, so there is nothing honest to key them by.
            log.info("batch %d ran on versions %s; not cached", state.batch.index, versions)
            return
        version = next(iter(versions), None)
        body, outputs = state.batch.body, state.outputs
        run_id, metrics = self.run_id, state.metrics
        self._writer.put(self.target, version, body, outputs, run_id=run_id, metrics=metrics)
