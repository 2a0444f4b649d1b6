"""Tells an outage from failures: a circuit breaker over the attempts that got no answer."""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable

from lambdakit.invocation import CONNECTION_ERROR, TIMEOUT, Outcome

__all__ = ["DEFAULT_OUTAGE_TIMEOUT_S", "UNREACHABLE", "Breaker"]

log = logging.getLogger("lambdakit.engine.outage")

DEFAULT_OUTAGE_TIMEOUT_S = 300.0
UNREACHABLE = "endpoint unreachable"
# A client read timeout counts as "no answer" only well beyond what answered calls take:
# a function that is merely slow under a short `timeout=` is failing, not unreachable.
_BEYOND_P99 = 2.0
_LATENCIES_KEPT = 500  # recent answered latencies, for the p99
_MIN_LATENCIES = 5  # fewer answered calls than this: any read timeout is beyond them
_FIRST_PROBE_S = 1.0
_MAX_PROBE_S = 10.0


class Breaker:
    """Opens when most of what was in flight came back unanswered; probes; closes on an answer.

    States: closed (normal), open (nothing is submitted; the endpoint is probed with backoff
    from `probe_at`), and trial (a probe answered: one invocation goes out at a time until
    one is answered, which closes the breaker; an unanswered trial opens it again). The
    outage lasts from the first trip until an invocation is answered; once it has lasted
    `outage_timeout` seconds (None: for ever) `expired()` says the run should stop.

    `probe` (given by the composition root; None without one) says whether the endpoint
    answers at all; without it the trial invocation is the probe. Pure bookkeeping on the
    run's clock: the Engine calls `probe` outside its lock and reports with `probed()`.
    """

    def __init__(
        self,
        probe: Callable[[], bool] | None,
        *,
        outage_timeout: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.probe = probe
        self.outage_timeout = outage_timeout
        self._clock = clock
        self.state = "closed"
        self.since: float | None = None  # when the outage began (run clock), None if none
        self.probe_at: float | None = None  # when the next probe is due, while open
        self.probes = 0  # probes sent in this outage
        self.trips = 0  # times the breaker opened in this run
        self._streak = 0  # unanswered completions since the last answered one
        self._peak = 0  # the most in flight during the streak
        self._latencies: collections.deque[float] = collections.deque(maxlen=_LATENCIES_KEPT)

    @property
    def open(self) -> bool:
        """Whether submissions are paused (the endpoint is being probed)."""
        return self.state == "open"

    @property
    def trial(self) -> bool:
        """Whether one invocation at a time is going out to see if the endpoint is back."""
        return self.state == "trial"

    @property
    def outage(self) -> bool:
        """Whether an outage is going on (open, or on trial after a probe answered)."""
        return self.since is not None

    def unanswered(self, outcome: Outcome, latency_s: float) -> bool:
        """Whether an attempt got no answer from the endpoint (not: the function failed)."""
        if outcome.outcome == CONNECTION_ERROR:
            return True
        if outcome.outcome != TIMEOUT or outcome.http_status is not None:
            return False  # a Sandbox.Timedout reply is an answer
        if len(self._latencies) < _MIN_LATENCIES:
            return True
        ordered = sorted(self._latencies)
        p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
        return latency_s > _BEYOND_P99 * p99

    def answered(self, latency_s: float) -> bool:
        """An attempt was answered: the endpoint is up. True if that ended an outage."""
        self._latencies.append(latency_s)
        self._streak = self._peak = 0
        if self.since is None:
            return False
        log.warning("%s for %.1f s: answering again, the run resumes", UNREACHABLE, self.elapsed())
        self.state, self.since, self.probe_at, self.probes = "closed", None, None, 0
        return True

    def no_answer(self, in_flight: int) -> bool:
        """An attempt got no answer (`in_flight`: including it). True if the breaker opened."""
        if self.state == "open":
            return False
        self._streak += 1
        self._peak = max(self._peak, in_flight)
        if self.state == "closed" and 2 * self._streak <= self._peak:
            return False  # not most of what is in flight: an ordinary failure
        now = self._clock()
        if self.since is None:
            self.since = now
            log.warning(
                "%s: %d of %d invocations in flight got no answer; pausing and probing",
                UNREACHABLE,
                self._streak,
                self._peak,
            )
        self.trips += 1
        self.state = "open"
        self.probe_at = now + self._backoff()
        return True

    def probe_due(self, now: float) -> bool:
        """Whether it is time to probe (open and the backoff has passed)."""
        return self.state == "open" and self.probe_at is not None and now >= self.probe_at

    def probed(self, reachable: bool) -> None:
        """The result of a probe (or, without a probe, the backoff passing)."""
        if self.state != "open":
            return
        self.probes += 1
        if reachable:
            log.info("%s: the probe was answered; trying one invocation", UNREACHABLE)
            self.state, self.probe_at = "trial", None
            self._streak = self._peak = 0
        else:
            self.probe_at = self._clock() + self._backoff()

    def answered_probe_only(self) -> None:
        """On trial, the invocation got no answer though the probe did: not an outage."""
        log.warning(
            "%s? The endpoint answers probes but not invocations: counted as failures",
            UNREACHABLE,
        )
        self.state, self.since, self.probe_at, self.probes = "closed", None, None, 0
        self._streak = self._peak = 0

    def expired(self) -> bool:
        """Whether the outage has lasted longer than `outage_timeout`."""
        return (
            self.since is not None
            and self.outage_timeout is not None
            and self.elapsed() >= self.outage_timeout
        )

    def elapsed(self) -> float:
        """Seconds since the outage began (0 without one)."""
        return 0.0 if self.since is None else self._clock() - self.since

    def _backoff(self) -> float:
        delay = min(_MAX_PROBE_S, _FIRST_PROBE_S * 2.0**self.probes)
        if self.outage_timeout is not None and self.since is not None:
            # The last probe comes no later than the deadline: the run stops on time.
            left = self.since + self.outage_timeout - self._clock()
            delay = max(0.0, min(delay, left))
        return delay
