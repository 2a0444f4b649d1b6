"""Request-rate rules of the local service: Lambda's 10 x concurrency requests per second.

Lambda caps synchronous requests per second at ten times the concurrency: the account's
(`--account-rps`, default 10 x `--account-concurrency`) and a function's reserved one. A
request over the rate is refused before it runs, with a 429 whose `Reason` says a rate ran
out (FunctionInvocationRateLimitExceeded, ReservedFunctionInvocationRateLimitExceeded), so
a client can tell it from a concurrency throttle. Injected rate limits (faults.py `max_rps`)
use the same buckets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ACCOUNT_RATE_REASON", "RESERVED_RATE_REASON", "RateRules", "TokenBucket"]

ACCOUNT_RATE_REASON = "FunctionInvocationRateLimitExceeded"
RESERVED_RATE_REASON = "ReservedFunctionInvocationRateLimitExceeded"
# A bucket holds one second of requests, as Lambda counts them per second: a burst of up to
# the rate goes through at once, and what goes faster for longer meets 429s.
BURST_S = 1.0


class TokenBucket:
    """`rate` requests per second, at most `rate x BURST_S` (at least one) at once."""

    __slots__ = ("_clock", "_filled_at", "_tokens", "rate")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"a request rate must be > 0, got {rate!r}")
        self.rate = float(rate)
        self._clock = clock
        self._tokens = self._room()
        self._filled_at = clock()

    def _room(self) -> float:
        return max(1.0, self.rate * BURST_S)

    def take(self) -> bool:
        """Use a token if there is one; False: the request is over the rate."""
        now = self._clock()
        self._tokens = min(self._room(), self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class RateRules:
    """The account's bucket, and one per function with reserved concurrency (or a max_rps)."""

    def __init__(self, account_rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.account = TokenBucket(account_rps, clock)
        self._clock = clock
        self._functions: dict[tuple[str, float], TokenBucket] = {}

    def function(self, name: str, rate: float) -> TokenBucket:
        """The bucket of one function at `rate` (a new one when the rate changed)."""
        bucket = self._functions.get((name, rate))
        if bucket is None:
            for key in [k for k in self._functions if k[0] == name]:
                del self._functions[key]
            bucket = self._functions[(name, rate)] = TokenBucket(rate, self._clock)
        return bucket

    def admit(self, name: str, reserved: int | None, injected_rps: float | None) -> str | None:
        """None when a request may go; else the Reason of the 429 it gets."""
        if injected_rps is not None and not self.function(f"fault:{name}", injected_rps).take():
            return ACCOUNT_RATE_REASON
        if reserved and not self.function(name, 10.0 * reserved).take():
            return RESERVED_RATE_REASON
        if not self.account.take():
            return ACCOUNT_RATE_REASON
        return None
