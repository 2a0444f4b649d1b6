"""The queue behind asynchronous (`Event`) invokes: accepted at once, run later, retried.

Each accepted event is written to `<state_dir>/events/<id>.json` and removed only once it has
run (successfully, or failed every attempt its retry settings allow, or grown older than they
allow, or its function was deleted), so nothing is lost while the server runs, and events
still queued at shutdown run after a restart. A function error is retried twice unless the
function's event invoke config says otherwise (`policy`); throttles are retried until the
event is too old. `on_finished` is told how each event ended, with its condition.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "EVENT_AGE_EXCEEDED",
    "RETRIES_EXHAUSTED",
    "Event",
    "EventQueue",
    "EventResult",
    "RetryPolicy",
]

log = logging.getLogger("lambdakit.local.events")


class EventResult:
    """What running an event once gave (string constants)."""

    OK = "ok"
    ERROR = "error"  # a function error: retried, at most twice (three attempts in all)
    THROTTLED = "throttled"  # no capacity now: retried without using up an attempt
    GONE = "gone"  # the function or version was deleted: nothing left to run


# Why an event ended without success (AWS's destination record `condition`).
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
DEFAULT_MAX_AGE_S = 21_600.0  # six hours, AWS's default MaximumEventAgeInSeconds


@dataclass(frozen=True)
class RetryPolicy:
    """How long a function's failing events are retried (its event invoke config)."""

    max_retries: int | None = None  # None: the queue's default (len(retry_delays))
    max_age_s: float = DEFAULT_MAX_AGE_S


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
    accepted_at: float | None = None  # the service clock's time when Invoke accepted it
    condition: str | None = None  # once finished without success: RetriesExhausted | ...
    # The last attempt's answer (not persisted: the outcome is decided right after it).
    response: bytes | None = None
    function_error: str | None = None

    def to_json(self) -> str:
        """The on-disk form (payload base64)."""
        out = asdict(self)
        out["payload"] = base64.b64encode(self.payload).decode()
        del out["response"], out["function_error"]
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
        policy: Callable[[Event], RetryPolicy] | None = None,
        clock: Callable[[], float] = time.time,
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
        # Told the final outcome (ok, error, gone) of every event (event.condition says why).
        self.on_finished = on_finished
        self.policy = policy
        self.clock = clock  # the scheduler's clock: a test clock moves event ages too

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
        if event.accepted_at is None:
            event.accepted_at = self.clock()
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

    def _policy(self, event: Event) -> RetryPolicy:
        if self.policy is None:
            return RetryPolicy()
        try:
            return self.policy(event)
        except Exception:  # a broken config must not lose the event: AWS's defaults
            log.exception("reading the retry settings of event %s failed", event.event_id)
            return RetryPolicy()

    def _too_old(self, event: Event, policy: RetryPolicy, delay_s: float) -> bool:
        accepted = event.accepted_at if event.accepted_at is not None else self.clock()
        return self.clock() + delay_s - accepted > policy.max_age_s

    async def _attempt(self, event: Event) -> None:
        try:
            outcome = await self._run(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event %s of %s failed to run", event.event_id, event.function_name)
            outcome = EventResult.ERROR
        policy = self._policy(event)
        if outcome == EventResult.THROTTLED:
            if not self._too_old(event, policy, self.throttle_delay_s):
                self._later(self.throttle_delay_s, event)
                return
            event.condition = EVENT_AGE_EXCEEDED
            outcome = EventResult.ERROR
        elif outcome == EventResult.ERROR:
            event.attempts += 1
            allowed = len(self.retry_delays) if policy.max_retries is None else policy.max_retries
            if event.attempts <= allowed:
                delay = self.retry_delays[min(event.attempts, len(self.retry_delays)) - 1]
                if not self._too_old(event, policy, delay):
                    self._persist(event)  # a restart continues with the attempts left
                    self._later(delay, event)
                    return
                event.condition = EVENT_AGE_EXCEEDED
            else:
                event.condition = RETRIES_EXHAUSTED
        if outcome == EventResult.ERROR:
            log.info("event %s of %s failed %d time(s): %s", event.event_id,
                     event.function_name, max(1, event.attempts), event.condition)  # fmt: skip
        elif outcome == EventResult.GONE:
            log.warning("event %s dropped: %s was deleted", event.event_id, event.invoked_arn)
        self._done(event)
        if self.on_finished is not None:
            try:
                self.on_finished(event, outcome)
            except Exception:
                log.exception("recording the outcome of event %s failed", event.event_id)
