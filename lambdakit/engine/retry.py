"""Retry policy: outcome classes, the pure backoff decision, and AIMD adaptive concurrency."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lambdakit.errors import InvalidInput
from lambdakit.invocation import (
    CANCELLED,
    CONNECTION_ERROR,
    FUNCTION_ERROR,
    OK,
    OUTCOMES,
    REPORTED_FAILURE,
    SERVICE_ERROR,
    SUPERSEDED,
    THROTTLE,
    TIMEOUT,
)

__all__ = [
    "DEFAULT_RETRY_ON",
    "AdaptiveLimit",
    "AdaptiveRate",
    "Retry",
    "next_delay",
]

DEFAULT_RETRY_ON: tuple[str, ...] = (
    THROTTLE,
    SERVICE_ERROR,
    CONNECTION_ERROR,
    TIMEOUT,
    FUNCTION_ERROR,
    REPORTED_FAILURE,
)
_JITTERS = ("full", "none")
_MAX_SENDS = 8192  # send times kept to measure the rate (AdaptiveRate.WINDOW_S of them)


@dataclass(frozen=True)
class Retry:
    """When and how long to wait before retrying a failed attempt (Step Functions' field names).

    Throttles are counted separately from `max_attempts`: a 429 means the function never
    ran, so a throttled batch keeps its attempt budget and is retried up to
    `max_throttle_retries` times (the adaptive limit keeps that number small).

    A record the function itself reports failed (`batchItemFailures`) has been judged, not
    lost: it is tried at most `item_attempts` times (default 1: no retry), within
    `max_attempts`. A failure the handler marks `"retryable": true` is transient and is
    retried like a failed attempt, up to `max_attempts`.

    >>> Retry.coerce(5).max_attempts
    5
    >>> Retry.coerce(False).next_delay("function_error", 1) is None
    True
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 20.0
    jitter: str = "full"
    on: tuple[str, ...] = DEFAULT_RETRY_ON
    max_throttle_retries: int = 100
    item_attempts: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidInput(f"Retry.max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise InvalidInput(f"Retry.max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("base_delay", "backoff", "max_delay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise InvalidInput(f"Retry.{name} must be a number >= 0, got {value!r}")
        if self.backoff < 1:
            raise InvalidInput(f"Retry.backoff must be >= 1, got {self.backoff}")
        if self.jitter not in _JITTERS:
            raise InvalidInput(f"Retry.jitter must be one of {_JITTERS}, got {self.jitter!r}")
        on = (self.on,) if isinstance(self.on, str) else tuple(self.on)
        retryable = tuple(c for c in OUTCOMES if c not in (OK, CANCELLED, SUPERSEDED))
        unknown = [c for c in on if c not in retryable]
        if unknown:
            raise InvalidInput(
                f"Retry.on has unknown outcome classes {unknown}; choose from {retryable}"
            )
        object.__setattr__(self, "on", on)
        if self.max_throttle_retries < 0:
            raise InvalidInput("Retry.max_throttle_retries must be >= 0")
        items = self.item_attempts
        if isinstance(items, bool) or not isinstance(items, int) or items < 1:
            raise InvalidInput(f"Retry.item_attempts must be an int >= 1, got {items!r}")
        if items > self.max_attempts:
            raise InvalidInput(
                f"Retry.item_attempts ({items}) cannot exceed max_attempts "
                f"({self.max_attempts}): every attempt of a record counts against max_attempts"
            )

    @classmethod
    def coerce(cls, value: Retry | Mapping[str, Any] | int | bool | None) -> Retry:
        """Accept the shorthands: Retry, None/True (default), False/0 (no retries), int, dict."""
        if isinstance(value, Retry):
            return value
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(max_attempts=1, on=())
        if isinstance(value, int):
            if value < 0:
                raise InvalidInput(f"retry={value}: the number of attempts cannot be negative")
            if value == 0:
                return cls(max_attempts=1, on=())  # retry=0 reads as "no retries"
            # retry=N: N attempts in total; throttles keep their own budget, as nothing ran.
            return cls(max_attempts=value)
        if isinstance(value, Mapping):
            try:
                return cls(**dict(value))
            except TypeError as exc:
                raise InvalidInput(f"retry={dict(value)!r}: {exc}") from None
        raise InvalidInput(
            f"retry must be a Retry, an int, a dict or False, got {type(value).__name__}"
        )

    def next_delay(
        self,
        outcome: str,
        attempt: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next try after `attempt` ended with `outcome`; None = give up.

        `attempt` is 1-based: the number of tries so far of the same kind (for throttles, the
        number of throttles of the batch). Full jitter draws uniformly in [0, cap]
        (AWS's "Exponential Backoff and Jitter"); a `Retry-After` is a floor.
        """
        if outcome == OK or outcome not in self.on:
            return None
        limit = self.max_throttle_retries + 1 if outcome == THROTTLE else self.max_attempts
        if attempt >= limit:
            return None
        cap = min(self.max_delay, self.base_delay * self.backoff ** max(attempt - 1, 0))
        delay = (rng or random).uniform(0.0, cap) if self.jitter == "full" else cap
        if retry_after is not None and retry_after > delay:
            delay = float(retry_after)
        return delay

    def retries_item(self, verdicts: int, retryable: bool) -> bool:
        """Whether a record the function reported failed may go again (attempts permitting).

        `verdicts`: how often it was reported failed without `"retryable": true`, this time
        included; `retryable`: whether this report marked the failure transient.

        >>> Retry().retries_item(1, retryable=False), Retry().retries_item(1, retryable=True)
        (False, True)
        """
        return retryable or verdicts < self.item_attempts


def next_delay(
    outcome: str,
    attempt: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    *,
    policy: Retry | None = None,
) -> float | None:
    """Module-level form of `Retry.next_delay` (default policy unless one is given)."""
    return (policy or Retry()).next_delay(outcome, attempt, retry_after, rng)


@dataclass
class AdaptiveLimit:
    """AIMD in-flight limit: x0.75 on a throttle, +1 per window of successes, in [1, maximum].

    Only a throttle of a request sent *after* the last decrease shrinks the limit again, so a
    burst of 429s from one overfull window counts once (as TCP reacts once per round trip).
    Growing back to the level that was last throttled is a probe: each probe that is
    throttled again makes the next one take twice as many windows (up to MAX_PROBE_WINDOWS),
    so against a fixed reserved concurrency the limit settles at it instead of bouncing one
    above it (a 429 and a Retry-After wait every few windows). A probe that gets through
    forgets the old ceiling. A throttle at a level that has carried a whole window of
    successes is no wall (429s at random): the probe backoff starts over, so the limit
    regrows between throttles instead of sitting at 1.

    Only concurrency-type throttles reach it; rate-type ones (invocation.RATE_REASONS) go to
    AdaptiveRate instead.
    """

    maximum: int
    decrease: float = 0.75
    initial: int | None = None
    MAX_PROBE_WINDOWS: ClassVar[int] = 32
    _value: float = field(init=False)
    _epoch: int = field(init=False, default=0)
    _ceiling: int | None = field(init=False, default=None)  # the limit last throttled
    _probe_windows: int = field(init=False, default=1)
    _clean: int = field(init=False, default=0)  # highest level that carried a whole window
    _streak: int = field(init=False, default=0)  # successes at this level, none throttled
    _streak_level: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise InvalidInput(f"concurrency must be >= 1, got {self.maximum}")
        if not 0 < self.decrease < 1:
            raise InvalidInput(f"AdaptiveLimit.decrease must be in (0, 1), got {self.decrease}")
        start = self.maximum if self.initial is None else self.initial
        self._value = float(min(max(start, 1), self.maximum))

    def _rounded(self) -> int:
        # Rounded, not truncated: after a throttle at 5, 0.75 x 5 = 3.75 keeps 4 in flight.
        return max(1, int(self._value + 0.5))

    def _probing(self) -> bool:
        """Whether the next +1 would reach the level that was last throttled."""
        return self._ceiling is not None and self._rounded() >= self._ceiling - 1

    @property
    def limit(self) -> int:
        """The current number of invocations allowed in flight."""
        with self._lock:
            return self._rounded()

    @property
    def epoch(self) -> int:
        """Counter of decreases; pass it back to `on_throttle` for requests sent now."""
        with self._lock:
            return self._epoch

    def on_success(self) -> int:
        """Grow by 1/limit (so +1 per full window of successes); returns the new limit."""
        if self._value >= self.maximum and self._ceiling is None:
            return self.maximum  # the common case, at full concurrency: nothing to change
        with self._lock:
            level = self._rounded()
            if level != self._streak_level:
                self._streak, self._streak_level = 0, level
            self._streak += 1
            if self._streak >= level > self._clean:
                self._clean = level
            step = 1.0 / max(self._value, 1.0)
            if self._probing():
                step /= self._probe_windows
            self._value = min(float(self.maximum), self._value + step)
            if self._ceiling is not None and self._rounded() > self._ceiling:
                self._ceiling, self._probe_windows = None, 1  # room above it now: forget it
            return self._rounded()

    def on_throttle(self, sent_epoch: int | None = None) -> int:
        """Shrink multiplicatively unless the request predates the last shrink; returns limit."""
        with self._lock:
            self._streak = 0
            if sent_epoch is None or sent_epoch >= self._epoch:
                level = self._rounded()
                if level <= self._clean:
                    # Throttled at a level that has carried whole windows without one: not a
                    # wall that probing could find, but throttles at random (or a wall that
                    # moved down). Back off as AIMD does, without slowing the regrowth.
                    self._probe_windows, self._clean = 1, level - 1
                elif self._ceiling is not None and level >= self._ceiling:
                    # Throttled again at (or above) the last ceiling: probe half as often.
                    self._probe_windows = min(self._probe_windows * 2, self.MAX_PROBE_WINDOWS)
                self._ceiling = level
                self._value = max(1.0, self._value * self.decrease)
                self._epoch += 1
            return self._rounded()


@dataclass
class AdaptiveRate:
    """Token bucket on requests per second, adapted by rate-type throttles (AIMD, like the limit).

    Unlimited (`rate` None) until the first rate throttle, or capped at `maximum` when one is
    given (`lambdakit.limits(max_rps=)`). A rate throttle of a request sent after the last
    decrease sets the rate to `decrease` x what was being sent (the requests of the last
    second), and then to `decrease` x the rate; every second's worth of successes adds
    `step` requests per second (a twentieth of the first throttled rate, at least 1), so the
    rate probes back up. The bucket holds `burst_s` seconds of tokens (at least one), so a
    limited run sends evenly instead of in bursts the service would count in one second.
    """

    decrease: float = 0.75
    maximum: float | None = None
    burst_s: float = 0.05
    clock: Callable[[], float] = time.monotonic
    MIN_RATE: ClassVar[float] = 1.0
    # The send rate is measured over this long: long enough to count a few requests, short
    # enough to leave out a pause (cold starts) before the throttle.
    WINDOW_S: ClassVar[float] = 0.25
    _rate: float | None = field(init=False, default=None)
    _step: float = field(init=False, default=1.0)
    _epoch: int = field(init=False, default=0)
    _tokens: float = field(init=False, default=1.0)
    _filled_at: float = field(init=False, default=0.0)
    _sends: deque[float] = field(
        init=False, repr=False, default_factory=lambda: deque(maxlen=_MAX_SENDS)
    )
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise InvalidInput(f"AdaptiveRate.decrease must be in (0, 1), got {self.decrease}")
        if self.maximum is not None:
            if isinstance(self.maximum, bool) or not isinstance(self.maximum, (int, float)):
                raise InvalidInput(f"max_rps must be a number, got {self.maximum!r}")
            if not self.maximum > 0:
                raise InvalidInput(f"max_rps must be > 0, got {self.maximum}")
            self._rate = float(self.maximum)
            self._step = max(1.0, self._rate / 20)
        self._filled_at = self.clock()

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now (None: not limited)."""
        return self._rate

    @property
    def epoch(self) -> int:
        """Counter of decreases; pass it back to `on_throttle` for requests sent now."""
        return self._epoch

    def _fill(self, now: float) -> None:
        rate = self._rate
        if rate is not None:
            room = max(1.0, rate * self.burst_s)
            self._tokens = min(room, self._tokens + (now - self._filled_at) * rate)
        self._filled_at = now

    def delay(self, now: float | None = None) -> float:
        """Seconds until the next request may go (0.0: now, or not limited)."""
        if self._rate is None:
            return 0.0
        with self._lock:
            now = self.clock() if now is None else now
            self._fill(now)
            if self._tokens >= 1.0:
                return 0.0
            return (1.0 - self._tokens) / self._rate  # type: ignore[operator]

    def sent(self, now: float | None = None) -> None:
        """One request goes out now: a token is used, and the send rate is measured."""
        now = self.clock() if now is None else now
        # Every submit passes here: unlimited, it is a deque append (thread-safe) and no lock.
        sends = self._sends
        sends.append(now)
        while sends[0] < now - self.WINDOW_S:
            sends.popleft()
        if self._rate is not None:
            with self._lock:
                self._fill(now)
                self._tokens -= 1.0

    def _sent_rate(self, now: float) -> float:
        """Requests per second sent over the last WINDOW_S (or since the first send)."""
        sends = self._sends
        while sends and sends[0] < now - self.WINDOW_S:
            sends.popleft()
        if not sends:
            return self.MIN_RATE
        return len(sends) / max(now - sends[0], 0.05)

    def on_success(self) -> float | None:
        """Grow by `step` per second's worth of successes; returns the new rate."""
        with self._lock:
            rate = self._rate
            if rate is None or (self.maximum is not None and rate >= self.maximum):
                return rate
            rate += self._step / rate
            self._rate = rate if self.maximum is None else min(rate, float(self.maximum))
            return self._rate

    def on_throttle(self, sent_epoch: int | None = None) -> float:
        """A rate-type 429: shrink multiplicatively unless the request predates the last shrink."""
        with self._lock:
            now = self.clock()
            if self._rate is None:
                self._rate = max(self.MIN_RATE, self._sent_rate(now) * self.decrease)
                self._step = max(1.0, self._rate / 20)
                self._tokens, self._filled_at = 0.0, now
                self._epoch += 1
            elif sent_epoch is None or sent_epoch >= self._epoch:
                self._fill(now)
                self._rate = max(self.MIN_RATE, self._rate * self.decrease)
                self._tokens = min(self._tokens, 0.0)
                self._epoch += 1
            return self._rate
