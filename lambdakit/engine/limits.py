"""A fair share across runs: `lambdakit.limits(function, max_concurrency=, max_rps=)`.

Every run in this kernel (scope="kernel", the default) that targets the function shares the
caps: at most `max_concurrency` of their invocations run at once and at most `max_rps` start
per second, all runs together. scope="machine" shares them with every process on this machine
through lock files (one per concurrency slot, and one holding the rate's token bucket) under
`lock_dir` (default: the user cache folder). Use it when two notebooks share one function, or
when a service downstream of it has a rate limit.

A run's own worker waits for a slot (and a token) before it invokes, so the run's in-flight
limit, its retries and its cache work as before; the wait is not part of the attempt's
latency. Functions are matched by name: the name, the ARN or `name:qualifier` all name it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdakit.errors import InvalidInput

__all__ = ["Gate", "Limits", "gate_for", "limits"]

_SCOPES = ("kernel", "machine")
_POLL_S = 0.01  # how often a waiting worker looks for a slot or a token again
_REGISTRY: dict[str, Limits] = {}
_GATES: dict[Limits, Gate] = {}
_LOCK = threading.Lock()


def _key(function: str) -> str:
    """The function's name, from a name, an ARN or name:qualifier."""
    if function.startswith("arn:"):
        parts = function.split(":")
        return parts[6] if len(parts) > 6 else function
    return function.split(":", 1)[0]


@dataclass(frozen=True)
class Limits:
    """The caps every run of one function shares (see `limits`)."""

    function: str
    max_concurrency: int | None = None
    max_rps: float | None = None
    scope: str = "kernel"
    lock_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.function, str) or not self.function.strip():
            raise InvalidInput(f"limits() needs a function name, got {self.function!r}")
        cap = self.max_concurrency
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise InvalidInput(f"max_concurrency must be an int >= 1, got {cap!r}")
        rps = self.max_rps
        if rps is not None and (
            isinstance(rps, bool) or not isinstance(rps, (int, float)) or not rps > 0
        ):
            raise InvalidInput(f"max_rps must be a number > 0, got {rps!r}")
        if self.scope not in _SCOPES:
            raise InvalidInput(f"limits() scope must be one of {_SCOPES}, got {self.scope!r}")


def limits(
    function: str,
    *,
    max_concurrency: int | None = None,
    max_rps: float | None = None,
    scope: str = "kernel",
    lock_dir: str | os.PathLike[str] | None = None,
) -> Limits:
    """Cap every run of `function` together; no caps given: remove the function's caps.

    >>> lambdakit.limits("my-fn", max_concurrency=10, max_rps=50)  # doctest: +SKIP
    """
    folder = None if lock_dir is None else str(Path(lock_dir).expanduser())
    chosen = Limits(function, max_concurrency, max_rps, scope, folder)
    with _LOCK:
        if max_concurrency is None and max_rps is None:
            _REGISTRY.pop(_key(function), None)
        else:
            _REGISTRY[_key(function)] = chosen
    return chosen


def gate_for(function_name: str) -> Gate | None:
    """The gate a run of `function_name` goes through, or None when it has no caps."""
    with _LOCK:
        chosen = _REGISTRY.get(_key(function_name))
        if chosen is None:
            return None
        gate = _GATES.get(chosen)
        if gate is None:
            gate = _GATES[chosen] = Gate(chosen)
        return gate


class Gate:
    """Slots and tokens shared by the runs of one function (in this kernel, or machine)."""

    def __init__(self, chosen: Limits) -> None:
        self.limits = chosen
        self._cond = threading.Condition()
        self._running = 0
        self._tokens = 1.0
        self._filled_at = time.monotonic()
        if chosen.scope == "machine":
            folder = Path(chosen.lock_dir) if chosen.lock_dir else _user_lock_dir()
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            digest = hashlib.sha256(_key(chosen.function).encode()).hexdigest()[:16]
            self._base = folder / f"limits-{digest}"

    @contextlib.contextmanager
    def slot(self, stopping: Callable[[], bool]) -> Iterator[bool]:
        """Hold a slot (and take a token) for one invocation; yields False if the run stops."""
        held: Any = None
        try:
            held = self._enter(stopping)
            yield held is not None
        finally:
            if held is not None:
                self._leave(held)

    def _enter(self, stopping: Callable[[], bool]) -> Any:
        held: Any = True
        cap = self.limits.max_concurrency
        while cap is not None:
            held = self._take_slot(cap)
            if held is not None:
                break
            if stopping():
                return None
            time.sleep(_POLL_S)
        while self.limits.max_rps is not None and not self._take_token():
            if stopping():
                self._leave(held)
                return None
            time.sleep(_POLL_S)
        return held

    def _take_slot(self, cap: int) -> Any:
        if self.limits.scope == "kernel":
            with self._cond:
                if self._running < cap:
                    self._running += 1
                    return True
            return None
        import fcntl

        for i in range(cap):
            fd = os.open(f"{self._base}.{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by another invocation (of this or another process)
                os.close(fd)
                continue
            return fd
        return None

    def _leave(self, held: Any) -> None:
        if self.limits.max_concurrency is None:
            return
        if self.limits.scope == "kernel":
            with self._cond:
                self._running -= 1
            return
        os.close(held)  # closing the descriptor releases its flock

    def _take_token(self) -> bool:
        rate = float(self.limits.max_rps)  # type: ignore[arg-type]
        room = max(1.0, rate * 0.05)  # a twentieth of a second at once: sent evenly
        if self.limits.scope == "kernel":
            with self._cond:
                now = time.monotonic()
                self._tokens = min(room, self._tokens + (now - self._filled_at) * rate)
                self._filled_at = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return True
                return False
        import fcntl

        # The bucket is a small JSON file read and written under its lock (wall clock: the
        # processes share no monotonic clock).
        fd = os.open(f"{self._base}.rate", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 256)
            now = time.time()
            try:
                state = json.loads(raw) if raw else {}
                tokens, filled_at = float(state["tokens"]), float(state["at"])
            except (ValueError, KeyError, TypeError):
                tokens, filled_at = 1.0, now
            tokens = min(room, tokens + max(0.0, now - filled_at) * rate)
            taken = tokens >= 1.0
            if taken:
                tokens -= 1.0
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"tokens": tokens, "at": now}).encode())
            return taken
        finally:
            os.close(fd)


def _user_lock_dir() -> Path:
    """$LAMBDAKIT_LOCK_DIR, else `locks` in the user cache folder."""
    import platformdirs

    given = os.environ.get("LAMBDAKIT_LOCK_DIR")
    return Path(given) if given else Path(platformdirs.user_cache_dir("lambdakit")) / "locks"
