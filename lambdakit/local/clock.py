"""The scheduler's clock: the system's, or a test clock that only tests move.

`lambdakit local --test-clock 2025-03-29T12:00:00Z` (or `LocalLambda(test_clock=...)`) gives
the scheduler a `ManualClock`: time stands still until `POST /_lambdakit/clock` moves it,
and that request returns once every run due up to the new time has fired. Only the
scheduler reads this clock (schedule dates, runs, retries, history); signatures, logs and
Lambda's own timestamps keep the system's time. Without the flag the endpoint only tells
the time, and moving it is refused.

`ClockControl` is the client side, as `LocalLambda.clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ClockControl", "ManualClock", "SystemClock"]

# The system clock may jump (a laptop sleeps): never trust one sleep for longer than this.
_LONGEST_SLEEP_S = 30.0


class SystemClock:
    """time.time(); waits re-check the clock at least every 30 s."""

    manual = False

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, when: float | None, wake: asyncio.Event) -> None:
        """Return at `when` (None: no time), when `wake` is set, or after 30 s at most."""
        timeout = _LONGEST_SLEEP_S
        if when is not None:
            timeout = min(max(when - time.time(), 0.0), _LONGEST_SLEEP_S)
        # The wait ending by timeout is the ordinary case: the time has come.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)
        wake.clear()


class ManualClock:
    """A clock that moves only when told to, and only forward."""

    manual = True

    def __init__(self, start: float) -> None:
        self._now = float(start)

    def now(self) -> float:
        """Seconds since the epoch, as last set."""
        return self._now

    def set(self, when: float) -> None:
        """Move to `when`; ValueError for a time before now."""
        if when < self._now:
            raise ValueError(
                f"the test clock only moves forward: {_iso(when)} is before {_iso(self._now)}"
            )
        self._now = float(when)

    async def sleep_until(self, when: float | None, wake: asyncio.Event) -> None:
        """Return when `wake` is set: time moves by `set`, whose caller fires what is due."""
        await wake.wait()
        wake.clear()


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat()


class ClockControl:
    """A running service's test clock, from the client side (`LocalLambda.clock`).

        local = LocalLambda(test_clock=datetime(2025, 3, 29, 12, tzinfo=timezone.utc))
        local.clock.advance(60)      # returns once the runs due in that minute have fired

    `request(method, body)` performs one call to /_lambdakit/clock and returns its JSON.
    """

    def __init__(self, request: Callable[[str, dict[str, Any] | None], dict[str, Any]]) -> None:
        self._request = request

    def now(self) -> dt.datetime:
        """The scheduler's time (UTC)."""
        return _utc(self._request("GET", None)["Now"])

    def advance(self, seconds: float | dt.timedelta) -> dt.datetime:
        """Move the clock forward, firing every run due meanwhile in order; the new time."""
        if isinstance(seconds, dt.timedelta):
            seconds = seconds.total_seconds()
        return _utc(self._request("POST", {"AdvanceSeconds": float(seconds)})["Now"])

    def set(self, when: dt.datetime) -> dt.datetime:
        """Move the clock forward to `when` (aware), firing what is due; the new time."""
        if when.tzinfo is None:
            raise ValueError("when must be timezone-aware")
        return _utc(self._request("POST", {"Now": when.timestamp()})["Now"])


def _utc(stamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
