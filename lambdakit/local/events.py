"""The queue behind asynchronous (`Event`) invokes: accepted at once, run later, retried twice.

Each accepted event is written to `<state_dir>/events/<id>.json` and removed only once it has
run (successfully, or failed its three attempts, or its function was deleted), so nothing is
lost while the server runs, and events still queued at shutdown run after a restart.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Event", "EventQueue", "EventResult"]

log = logging.getLogger("lambdakit.local.events")


class EventResult:
    """What running an event once gave (string constants)."""

    OK = "ok"
    ERROR = "error"  # a function error: retried, at most twice (three attempts in all)
    THROTTLED = "throttled"  # no capacity now: retried without using up an attempt
    GONE = "gone"  # the function or version was deleted: nothing left to run


@dataclass
class Event:
    """One accepted asynchronous invocation."""

    event_id: str
    function_name: str
    version: str
    invoked_arn: str
    payload: bytes
    client_context: str | None = None
    attempts: int = 0  # attempts already made
    tag: dict[str, Any] | None = None  # who sent it (the scheduler), told when it finishes

    def to_json(self) -> str:
        """The on-disk form (payload base64)."""
        out = asdict(self)
        out["payload"] = base64.b64encode(self.payload).decode()
        return json.dumps(out)

    @classmethod
    def from_json(cls, text: str) -> Event:
        """Inverse of to_json."""
        data = json.loads(text)
        data["payload"] = base64.b64decode(data["payload"])
        return cls(**data)


class EventQueue:
    """Runs events, up to `workers` at a time per function, so one busy function's backlog
    never holds up another's; `run` performs one attempt and says how it went."""

    def __init__(
        self,
        run: Callable[[Event], Awaitable[str]],
        *,
        directory: Path,
        workers: int = 16,
        retry_delays: tuple[float, ...] = (1.0, 2.0),
        throttle_delay_s: float = 0.5,
        on_finished: Callable[[Event, str], None] | None = None,
    ) -> None:
        self._run = run
        self.directory = Path(directory)
        self.workers = workers
        self.retry_delays = tuple(retry_delays)
        self.throttle_delay_s = throttle_delay_s
        self._queues: dict[str, collections.deque[Event]] = {}
        self._draining: dict[str, int] = {}  # function -> drain tasks running
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False
        # Told the final outcome (ok, error, gone) of every tagged event.
        self.on_finished = on_finished

    def start(self) -> int:
        """Requeue events left on disk by the last run; returns how many there were."""
        self.directory.mkdir(parents=True, exist_ok=True)
        requeued = 0
        for path in sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                self._enqueue(Event.from_json(path.read_text()))
                requeued += 1
            except (OSError, ValueError, TypeError) as exc:
                log.error("unreadable queued event %s kept on disk: %s", path, exc)
        return requeued

    def put(self, event: Event) -> None:
        """Accept an event: persisted first, then queued."""
        self._persist(event)
        self._enqueue(event)

    def pending(self) -> int:
        """Events accepted and not finished (queued, waiting for a retry, or running)."""
        return len(list(self.directory.glob("*.json")))

    async def close(self) -> None:
        """Stop running events; unfinished ones stay on disk for the next start."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _persist(self, event: Event) -> None:
        path = self.directory / f"{event.event_id}.json"
        tmp = self.directory / f".{event.event_id}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(event.to_json())
        os.replace(tmp, path)

    def _enqueue(self, event: Event) -> None:
        if self._closed:
            return  # it is on disk: the next start runs it
        name = event.function_name
        self._queues.setdefault(name, collections.deque()).append(event)
        if self._draining.get(name, 0) < self.workers:
            self._draining[name] = self._draining.get(name, 0) + 1
            task = asyncio.get_running_loop().create_task(self._drain(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _later(self, delay_s: float, event: Event) -> None:
        loop = asyncio.get_running_loop()

        def requeue() -> None:
            self._timers.discard(timer)
            self._enqueue(event)

        timer = loop.call_later(delay_s, requeue)
        self._timers.add(timer)

    def _done(self, event: Event) -> None:
        (self.directory / f"{event.event_id}.json").unlink(missing_ok=True)

    async def _drain(self, name: str) -> None:
        try:
            queue = self._queues[name]
            while queue:
                await self._attempt(queue.popleft())
        finally:
            self._draining[name] -= 1
            if not self._draining[name]:
                del self._draining[name]
                if not self._queues.get(name):
                    self._queues.pop(name, None)

    async def _attempt(self, event: Event) -> None:
        try:
            outcome = await self._run(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event %s of %s failed to run", event.event_id, event.function_name)
            outcome = EventResult.ERROR
        if outcome == EventResult.THROTTLED:
            self._later(self.throttle_delay_s, event)
            return
        if outcome == EventResult.ERROR:
            event.attempts += 1
            if event.attempts <= len(self.retry_delays):
                self._persist(event)  # a restart continues with the attempts left
                self._later(self.retry_delays[event.attempts - 1], event)
                return
            log.warning(
                "event %s of %s failed %d times; discarded as AWS does without a "
                "destination or DLQ",
                event.event_id,
                event.function_name,
                event.attempts,
            )
        elif outcome == EventResult.GONE:
            log.warning("event %s dropped: %s was deleted", event.event_id, event.invoked_arn)
        self._done(event)
        if event.tag is not None and self.on_finished is not None:
            try:
                self.on_finished(event, outcome)
            except Exception:
                log.exception("recording the outcome of event %s failed", event.event_id)
