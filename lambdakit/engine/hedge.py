"""Speculative backups for stragglers: an invocation that runs far longer than the run's usual
latency is sent again, and the first good reply wins.

`run(hedge=Hedge(after="p95", factor=2.0, max_share=0.05))`: once an attempt has run longer
than `factor` x the run's `after` latency quantile so far (of successful attempts), the same
batch goes again, as a backup. The first successful reply is the batch's; the other attempt
gets a row with outcome `superseded` at once, and the run does not wait for it. When it does
come back, an agreeing success may still fill the cache; a success that differs from the
winner's outputs is a warning (the function is not deterministic). At most `max_share` of
the run's invocations are backups, and a backup never uses an attempt of `max_attempts`.
Backups send a batch twice: hedge only functions that are idempotent.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from lambdakit.errors import InvalidInput

__all__ = ["Hedge", "HedgeWatch", "Race"]

log = logging.getLogger("lambdakit.engine.hedge")

_QUANTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")
_MAX_SAMPLES = 4096  # latencies kept for the quantile: the most recent ones


@dataclass(frozen=True)
class Hedge:
    """When to send a straggling batch again: after `factor` x the `after` latency quantile.

    `after` is "p50" ... "p99" (of the run's successful attempts so far) or seconds;
    `max_share` caps backups at that share of the invocations; no backup is sent before
    `min_samples` attempts succeeded (the quantile means little before).

    >>> Hedge().threshold([1.0] * 30)
    2.0
    """

    after: str | float = "p95"
    factor: float = 2.0
    max_share: float = 0.05
    min_samples: int = 20

    def __post_init__(self) -> None:
        after = self.after
        if isinstance(after, str):
            match = _QUANTILE.fullmatch(after)
            if match is None or not 0 < float(match.group(1)) < 100:
                raise InvalidInput(
                    f"Hedge.after must be a latency quantile such as 'p95', or seconds; "
                    f"got {after!r}"
                )
        elif isinstance(after, bool) or not isinstance(after, (int, float)) or not after > 0:
            raise InvalidInput(f"Hedge.after in seconds must be a number > 0, got {after!r}")
        number = isinstance(self.factor, (int, float)) and not isinstance(self.factor, bool)
        if not number or not self.factor >= 1:
            raise InvalidInput(f"Hedge.factor must be a number >= 1, got {self.factor!r}")
        share = self.max_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise InvalidInput(f"Hedge.max_share must be in (0, 1], got {share!r}")
        samples = self.min_samples
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InvalidInput(f"Hedge.min_samples must be an int >= 1, got {samples!r}")

    @classmethod
    def coerce(cls, value: Any) -> Hedge | None:
        """Accept a Hedge, True (the defaults), or None/False (no backups)."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, Hedge):
            return value
        raise InvalidInput(f"hedge must be a Hedge, True or None, got {type(value).__name__}")

    def threshold(self, latencies: list[float]) -> float | None:
        """Seconds after which an attempt is a straggler (None: too few latencies yet)."""
        if len(latencies) < self.min_samples:
            return None
        if not isinstance(self.after, str):
            return float(self.after) * self.factor
        q = float(self.after[1:]) / 100.0
        ordered = sorted(latencies)
        at = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
        return ordered[at] * self.factor


@dataclass
class Race:
    """The attempts of one batch racing each other: the original and its backup."""

    pieces: list[Any]
    winner: Any = None
    outputs: list[Any] | None = None  # the winner's, to compare a late reply with


@dataclass
class HedgeWatch:
    """A run's hedging: the latencies seen, the straggler threshold, the backups sent."""

    hedge: Hedge
    backups: int = 0
    won: int = 0  # backups whose reply came first
    disagreed: int = 0  # late replies whose outputs differed from the winner's
    _latencies: list[float] = field(default_factory=list)
    _threshold: float | None = None
    _counted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, latency_s: float) -> None:
        """A successful attempt's latency (under the Engine's lock)."""
        latencies = self._latencies
        latencies.append(latency_s)
        if len(latencies) > _MAX_SAMPLES:
            del latencies[: len(latencies) - _MAX_SAMPLES]

    def threshold(self) -> float | None:
        """The straggler threshold, recomputed as latencies grow by a tenth (or 16)."""
        n = len(self._latencies)
        if n != self._counted and (
            self._threshold is None or n - self._counted >= max(16, n // 10)
        ):
            self._threshold, self._counted = self.hedge.threshold(self._latencies), n
        return self._threshold

    def may_send(self, invocations: int) -> bool:
        """Whether one more backup stays within max_share of the invocations (backups too)."""
        return self.backups + 1 <= self.hedge.max_share * (invocations + 1)

    def late(self, race: Race, outputs: list[Any] | None, batch: int) -> bool:
        """A superseded attempt came back ok: True if it agrees with the winner's outputs."""
        if outputs == race.outputs:
            return True
        with self._lock:
            self.disagreed += 1
        log.warning(
            "batch %d: a backup and the original attempt replied with different outputs; the "
            "first reply was kept. The function is not deterministic: hedge= is for "
            "idempotent, deterministic functions only",
            batch,
        )
        return False

    def summary(self) -> dict[str, int]:
        """What meta["hedge"] records."""
        return {"backups": self.backups, "won": self.won, "disagreed": self.disagreed}
