"""The memory ladder: a batch that ran out of memory (or time) goes again with more memory.

`run(on_oom=MemoryLadder([1024, 2048, 4096]))`: an attempt that failed with
`Runtime.OutOfMemory` (and, with `on_timeout=` too, one the function timed out in) is sent
again to a version of the function with the next size up, published from the same code with
only MemorySize changed (aws/memory_versions.py) and reused by later runs. Climbing does not
use up `max_attempts`: the function never got to finish. Without the permissions to publish,
the attempt fails as it did, with a hint saying what is missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lambdakit.errors import InvalidInput, LambdakitError
from lambdakit.invocation import TIMEOUT, Invoker, Outcome

__all__ = ["OUT_OF_MEMORY", "TIMED_OUT", "Ladder", "MemoryLadder"]

log = logging.getLogger("lambdakit.engine.ladder")

OUT_OF_MEMORY = "Runtime.OutOfMemory"
TIMED_OUT = "Sandbox.Timedout"  # the function's own timeout (not a client read timeout)
_PERMISSIONS = "lambda:UpdateFunctionConfiguration and lambda:PublishVersion"


@dataclass(frozen=True)
class MemoryLadder:
    """Memory sizes (MB, ascending) to retry a batch at after it ran out of memory.

    >>> MemoryLadder([1024, 2048]).above(512), MemoryLadder([1024, 2048]).above(2048)
    (1024, None)
    """

    sizes: tuple[int, ...] = (1024, 2048, 4096)

    def __post_init__(self) -> None:
        sizes = tuple(self.sizes) if isinstance(self.sizes, Iterable) else self.sizes
        if not isinstance(sizes, tuple) or not sizes:
            raise InvalidInput(f"MemoryLadder needs memory sizes in MB, got {self.sizes!r}")
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int) or not 128 <= size <= 10240:
                raise InvalidInput(
                    f"MemoryLadder sizes are MB from 128 to 10240 (Lambda's range), got {size!r}"
                )
        if list(sizes) != sorted(set(sizes)):
            raise InvalidInput(f"MemoryLadder sizes must go up, each once, got {list(sizes)}")
        object.__setattr__(self, "sizes", sizes)

    @classmethod
    def coerce(cls, value: Any) -> MemoryLadder | None:
        """Accept a MemoryLadder, a list of sizes, True (the default sizes), or None/False."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, MemoryLadder):
            return value
        if isinstance(value, (list, tuple)):
            return cls(tuple(value))
        raise InvalidInput(
            f"a memory ladder is a MemoryLadder or a list of MB sizes, got {type(value).__name__}"
        )

    def above(self, memory_mb: int) -> int | None:
        """The next size up from `memory_mb`, or None at the top."""
        return next((size for size in self.sizes if size > memory_mb), None)


class Ladder:
    """A run's ladder: which failures climb, and one invoker per rung, published on first need.

    `publish(memory_mb) -> version` finds or publishes the version (in a worker thread: it
    takes seconds, and must not hold the scheduler's lock); `make_invoker(version)` invokes
    it. A rung that cannot be published breaks the ladder for the rest of the run.
    """

    def __init__(
        self,
        on_oom: MemoryLadder | None,
        on_timeout: MemoryLadder | None,
        *,
        base_memory_mb: int,
        publish: Callable[[int], str],
        make_invoker: Callable[[str], Invoker],
    ) -> None:
        self.on_oom, self.on_timeout = on_oom, on_timeout
        self.base_memory_mb = base_memory_mb
        self._publish, self._make_invoker = publish, make_invoker
        self._lock = threading.Lock()
        self._rungs: dict[int, tuple[str, Invoker]] = {}
        self.broken: str | None = None  # why no rung can be published (then: no climbing)

    def next_memory(self, outcome: Outcome, memory_mb: int | None) -> int | None:
        """The memory to try next after this failed attempt, or None (not a ladder failure)."""
        if self.broken is not None:
            return None
        if outcome.error_type == OUT_OF_MEMORY:
            ladder = self.on_oom
        elif outcome.outcome == TIMEOUT and outcome.error_type == TIMED_OUT:
            ladder = self.on_timeout
        else:
            return None
        if ladder is None:
            return None
        return ladder.above(self.base_memory_mb if memory_mb is None else memory_mb)

    def base_of(self, version: str | None, base: str | None) -> str | None:
        """The run's own version for a rung's version (same code, same outputs), else as is."""
        if any(rung[0] == version for rung in self._rungs.values()):
            return base
        return version

    def version(self, memory_mb: int) -> str | None:
        """The version published for a rung, once it is (None before)."""
        rung = self._rungs.get(memory_mb)
        return rung[0] if rung else None

    def invoker(self, memory_mb: int) -> Invoker:
        """The invoker of a rung, publishing its version first; LambdakitError if it cannot."""
        with self._lock:  # one publish per rung, even when many batches climb at once
            if self.broken is not None:
                raise LambdakitError(self.broken)
            rung = self._rungs.get(memory_mb)
            if rung is None:
                try:
                    version = self._publish(memory_mb)
                except LambdakitError as exc:
                    self.broken = (
                        f"memory ladder: no {memory_mb} MB version ({exc}); it needs "
                        f"{_PERMISSIONS} (see the README's IAM section)"
                    )
                    log.warning("%s", self.broken)
                    raise LambdakitError(self.broken) from exc
                rung = self._rungs[memory_mb] = (version, self._make_invoker(version))
            return rung[1]
