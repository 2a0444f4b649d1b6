"""The firing loop: runs each enabled schedule's target when its time comes.

It lives in the server's event loop and never blocks it: a task sleeps until the next run
(or a change of schedules wakes it), then fires what is due without awaiting anything.

**Firing.** A run fires at its scheduled time, or with FlexibleTimeWindow FLEXIBLE at a
fixed offset within the window (derived from the schedule's ARN and the run's time, so the
same run always lands at the same moment). Firing is an asynchronous (`Event`) invoke of
the target function, with `Target.Input` as the event (an empty event without it) and
Scheduler's context attributes `<aws.scheduler.schedule-arn>`, `<aws.scheduler.scheduled-
time>`, `<aws.scheduler.execution-id>` and `<aws.scheduler.attempt-number>` filled in.

**Failures.** A firing fails when Lambda refuses the invoke (the function deleted or not
Active, the event over 1 MB or not JSON, throttled). It is retried after 1, 2, 4, ...
minutes (at most 15) while `RetryPolicy` allows: `MaximumRetryAttempts` retries, none later
than `MaximumEventAgeInSeconds` after the first attempt. After the last failure a
`DeadLetterConfig` queue gets a record in `<state>/dead-letters/`; without one the firing
is dropped, as on AWS, and the history says so. An error raised by the function is not a
failed firing (Lambda accepted the event); Lambda's own event queue retries it, and the
history shows the function's outcome.

**Downtime.** Runs due while the service was stopped (or the machine asleep): a missed
at() fires once, late; missed runs of rate() and cron() are not replayed: one `missed` row
counts them, and the schedule goes on from its next run. A run is missed when it is more
than `GRACE_S` late. Firings waiting for a retry are kept in the state dir and resume.

**Completion.** A schedule with no run left (an at() that fired, a rate()/cron() past its
EndDate) and ActionAfterCompletion DELETE is deleted; its history stays.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambdakit.local.checks import ApiError
from lambdakit.local.clock import ManualClock, SystemClock
from lambdakit.local.firings import DeadLetters, Delivery, History, iso
from lambdakit.local.schedules import ScheduleStore

__all__ = ["GRACE_S", "MAX_STEPS", "Scheduler", "retry_delay"]

log = logging.getLogger("lambdakit.local.scheduler")

GRACE_S = 60.0  # a run later than this (downtime, sleep) is missed, not fired
MAX_STEPS = 200_000  # runs and retries one move of the test clock may fire
_MISSED_COUNTED = 10_000  # missed runs counted one by one before skipping to now
_CURSOR_STEP = 0.001  # a run dealt with moves the cursor just past it

Deliver = Callable[[str, str | None, bytes, str, dict[str, Any]], None]


def retry_delay(retry: int) -> float:
    """Seconds before retry number `retry` (1, 2, ...): 1, 2, 4, ... minutes, at most 15."""
    return float(min(60 * 2 ** (retry - 1), 900))


def _seconds(stamp: float) -> str:
    """ISO 8601 UTC to the second, as Scheduler's <aws.scheduler.scheduled-time> reads."""
    moment = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _offset(record: dict[str, Any], scheduled: float) -> float:
    window = record["FlexibleTimeWindow"]
    if window["Mode"] != "FLEXIBLE":
        return 0.0
    digest = hashlib.sha256(f"{record['Arn']}|{scheduled}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (window["MaximumWindowInMinutes"] * 60)


class Scheduler:
    """Fires the schedules of a ScheduleStore through `deliver` (see the module docstring).

    `deliver(function, qualifier, payload, request_id, tag)` accepts one Event invoke or
    raises the ApiError Lambda would answer; `tag` comes back in `event_finished`.
    """

    def __init__(
        self,
        store: ScheduleStore,
        *,
        clock: SystemClock | ManualClock,
        deliver: Deliver,
        state_dir: Path,
    ) -> None:
        self.store = store
        self.clock = clock
        self._deliver = deliver
        self.history = History(state_dir)
        self.dead_letters = DeadLetters(state_dir)
        self._pending_dir = Path(state_dir) / "scheduler" / "pending"
        self._pending: dict[str, Delivery] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Resume waiting retries, deal with what came due while stopped, start the loop."""
        for path in sorted(self._pending_dir.glob("*.json")):
            try:
                delivery = Delivery.from_json(path.read_text())
            except (OSError, ValueError, TypeError) as exc:
                log.error("unreadable waiting firing %s kept on disk: %s", path, exc)
                continue
            self._pending[delivery.execution_id] = delivery
        if self._pending:
            log.info("resuming %d firings waiting for a retry", len(self._pending))
        self.run_due()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop the loop; waiting retries stay on disk for the next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def changed(self) -> None:
        """Schedules were created, updated or deleted: look again."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                self.run_due()
            except Exception:  # one broken record must not stop every schedule
                log.exception("the scheduler failed to fire what was due")
            await self.clock.sleep_until(self.next_due(), self._wake)

    # -- the test clock -------------------------------------------------------------------

    def advance_to(self, when: float) -> int:
        """Move a ManualClock to `when`, firing in order everything due on the way.

        Returns the steps taken. ValueError for a time in the past or a move that would
        fire more than MAX_STEPS runs and retries.
        """
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise ValueError("the scheduler runs on the system clock, which only time moves")
        if when < clock.now():
            clock.set(when)  # raises, naming both times
        steps = 0
        while (due := self.next_due()) is not None and due <= when:
            steps += 1
            if steps > MAX_STEPS:
                raise ValueError(
                    f"moving the clock to {iso(when)} fires more than {MAX_STEPS} runs and "
                    "retries: move it in smaller steps"
                )
            clock.set(max(due, clock.now()))
            self.run_due()
        clock.set(when)
        self.run_due()
        return steps

    # -- what is due ----------------------------------------------------------------------

    def next_due(self) -> float | None:
        """The earliest time something is due (a run or a retry), None when nothing is."""
        times = [d.due for d in self._pending.values()]
        for record in self.store.schedules():
            upcoming = self._upcoming(record)
            if upcoming is not None:
                times.append(upcoming[1])
        return min(times) if times else None

    def _upcoming(self, record: dict[str, Any]) -> tuple[float, float] | None:
        """(scheduled, fire time) of a schedule's next run to deal with, or None."""
        if record["State"] != "ENABLED":
            return None
        since = dt.datetime.fromtimestamp(record["_Cursor"], dt.timezone.utc)
        run = next(self.store.timetable(record).runs(since), None)
        if run is None:
            return None
        scheduled = run.timestamp()
        return scheduled, scheduled + _offset(record, scheduled)

    def run_due(self) -> None:
        """Fire every run and retry due now (no awaiting: this never blocks the loop)."""
        now = self.clock.now()
        for record in self.store.schedules():
            self._run_schedule(record, now)
        for delivery in sorted(self._pending.values(), key=lambda d: d.due):
            if delivery.due <= now:
                del self._pending[delivery.execution_id]
                self._attempt(delivery, now)

    def _run_schedule(self, record: dict[str, Any], now: float) -> None:
        table = self.store.timetable(record)
        recurring = table.recurring
        missed: list[float] = []
        fired = moved = False
        while (upcoming := self._upcoming(record)) is not None and upcoming[1] <= now:
            scheduled, fire_at = upcoming
            if recurring and fire_at < now - GRACE_S:
                missed.append(scheduled)
                if len(missed) >= _MISSED_COUNTED:
                    # Far too many to count one by one: go on from the runs still on time.
                    record["_Cursor"] = now - GRACE_S
                    moved = True
                    continue
            else:
                self._fire(record, scheduled, now)
                fired = True
            record["_Cursor"] = scheduled + _CURSOR_STEP
            moved = True
        if missed:
            self._missed(record, missed, now)
        if moved:
            self.store.save(record)
        done = (fired or moved) and self._upcoming(record) is None
        if done and record["State"] == "ENABLED" and record["ActionAfterCompletion"] == "DELETE":
            self.store.delete_schedule(record["GroupName"], record["Name"])
            self.history.append(record["GroupName"], record["Name"], {
                "kind": "deleted", "outcome": "deleted", "time": iso(now),
                "reason": "ActionAfterCompletion DELETE: no run left",
            })  # fmt: skip
            log.info("schedule %s/%s completed and was deleted", record["GroupName"],
                     record["Name"])  # fmt: skip

    def _missed(self, record: dict[str, Any], missed: list[float], now: float) -> None:
        count = len(missed)
        log.warning(
            "schedule %s/%s: %d run(s) from %s to %s were missed while the service was "
            "down; not replayed", record["GroupName"], record["Name"], count,
            iso(missed[0]), iso(missed[-1]),
        )  # fmt: skip
        self.history.append(record["GroupName"], record["Name"], {
            "kind": "missed", "outcome": "missed", "time": iso(now),
            "scheduled_time": iso(missed[0]), "last_scheduled_time": iso(missed[-1]),
            "count": count, "count_is_lower_bound": count >= _MISSED_COUNTED,
        })  # fmt: skip

    # -- firing ---------------------------------------------------------------------------

    def _fire(self, record: dict[str, Any], scheduled: float, now: float) -> None:
        delivery = Delivery(
            group=record["GroupName"], name=record["Name"], schedule_arn=record["Arn"],
            target=dict(record["Target"]), scheduled=scheduled, due=now,
        )  # fmt: skip
        self._attempt(delivery, now)

    def _payload(self, delivery: Delivery) -> bytes:
        text = delivery.target.get("Input")
        if text is None:
            return b""
        attributes = {
            "<aws.scheduler.schedule-arn>": delivery.schedule_arn,
            "<aws.scheduler.scheduled-time>": _seconds(delivery.scheduled),
            "<aws.scheduler.execution-id>": delivery.execution_id,
            "<aws.scheduler.attempt-number>": str(delivery.attempt),
        }
        for key, value in attributes.items():
            text = text.replace(key, value)
        return text.encode()

    def _attempt(self, delivery: Delivery, now: float) -> None:
        """Make one attempt; record it; plan the retry or give up."""
        if delivery.first_attempt_at is None:
            delivery.first_attempt_at = now
        request_id = str(uuid.uuid4())
        row: dict[str, Any] = {
            "kind": "attempt", "execution_id": delivery.execution_id,
            "scheduled_time": iso(delivery.scheduled), "time": iso(now),
            "attempt": delivery.attempt, "request_id": None,
            "error_code": None, "error_message": None,
        }  # fmt: skip
        try:
            function, qualifier = self.store.parse_target(delivery.target["Arn"])
            tag = {"group": delivery.group, "name": delivery.name}
            self._deliver(function, qualifier, self._payload(delivery), request_id, tag)
        except ApiError as exc:
            row.update(error_code=exc.code, error_message=exc.message)
            self._failed(delivery, row, now)
        except Exception as exc:  # a fault of lambdakit local: still a failed attempt, recorded
            log.exception("firing %s of %s/%s failed", delivery.execution_id, delivery.group,
                          delivery.name)  # fmt: skip
            row.update(error_code="ServiceException", error_message=f"{type(exc).__name__}: {exc}")
            self._failed(delivery, row, now)
        else:
            row.update(outcome="delivered", request_id=request_id)
            delivery.forget(self._pending_dir)
        self.history.append(delivery.group, delivery.name, row)

    def _failed(self, delivery: Delivery, row: dict[str, Any], now: float) -> None:
        policy = delivery.target["RetryPolicy"]
        assert delivery.first_attempt_at is not None
        retries_made = delivery.attempt - 1
        next_at = now + retry_delay(retries_made + 1)
        if retries_made >= policy["MaximumRetryAttempts"]:
            exhausted = "MaximumRetryAttempts"
        elif next_at - delivery.first_attempt_at > policy["MaximumEventAgeInSeconds"]:
            exhausted = "MaximumEventAgeInSeconds"
        else:
            delivery.attempt += 1
            delivery.due = next_at
            delivery.save(self._pending_dir)
            self._pending[delivery.execution_id] = delivery
            row.update(outcome="failed", next_attempt_at=iso(next_at))
            return
        delivery.forget(self._pending_dir)
        row["exhausted"] = exhausted
        queue = (delivery.target.get("DeadLetterConfig") or {}).get("Arn")
        if queue is None:
            log.warning(
                "schedule %s/%s: firing %s failed %d time(s) (%s): dropped, as AWS does "
                "without a DeadLetterConfig", delivery.group, delivery.name,
                delivery.execution_id, delivery.attempt, row["error_code"],
            )  # fmt: skip
            row["outcome"] = "dropped"
            return
        self.dead_letters.append(queue, {
            "Time": iso(now),
            "Body": self._payload(delivery).decode(errors="replace"),
            "MessageAttributes": {
                "ERROR_CODE": row["error_code"], "ERROR_MESSAGE": row["error_message"],
                "EXECUTION_ID": delivery.execution_id, "EXHAUSTED_RETRY_CONDITION": exhausted,
                "RETRY_ATTEMPTS": str(retries_made), "SCHEDULE_ARN": delivery.schedule_arn,
                "SCHEDULED_TIME": iso(delivery.scheduled), "TARGET_ARN": delivery.target["Arn"],
            },
        })  # fmt: skip
        row.update(outcome="dead_lettered", dead_letter_arn=queue)

    def event_finished(self, tag: dict[str, Any], request_id: str, outcome: str) -> None:
        """The function run by a delivered firing has finished (ok, error or gone)."""
        self.history.append(tag["group"], tag["name"], {
            "kind": "result", "request_id": request_id, "function_outcome": outcome,
            "time": iso(self.clock.now()),
        })  # fmt: skip
