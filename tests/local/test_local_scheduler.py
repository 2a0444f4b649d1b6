"""The local scheduler firing Lambda targets, driven by a test clock (no test waits for time).

Each test starts its own service with `LocalLambda(test_clock=...)`, creates schedules with
boto3's `scheduler` client and moves the clock with `local.clock.advance()`, which returns
once every run due on the way has fired. What a function did is polled with a deadline.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdakit.errors import LocalServiceError
from lambdakit.local import LocalLambda
from tests.conftest import build_zip

UTC = dt.timezone.utc
ROLE = "arn:aws:iam::123456789012:role/lambdakit-scheduler"
DLQ = "arn:aws:sqs:us-east-1:123456789012:nightly-dlq"
# Prints the event it got, so the test can read exactly what was delivered.
RECORDER = "import json\ndef handler(event, context):\n    print('EVENT ' + json.dumps(event))\n"
FAILING = "def handler(event, context):\n    raise RuntimeError('boom')\n"


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def wait_for(check: Callable[[], Any], what: str, deadline_s: float = 60.0) -> Any:
    """Poll check() until it returns something truthy (no fixed sleeps)."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Service:
    """One local service on a test clock, with helpers for the tests below."""

    def __init__(self, local: LocalLambda) -> None:
        self.local = local
        self.lambdas = local.client()
        self.scheduler = local.scheduler_client()

    def function(self, name: str, source: str = RECORDER) -> str:
        arn = self.lambdas.create_function(
            FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": build_zip(source)},
        )["FunctionArn"]  # fmt: skip
        wait_for(
            lambda: (
                self.lambdas.get_function(FunctionName=name)["Configuration"]["State"] == "Active"
            ),
            f"{name} to be Active",
        )
        return arn

    def schedule(self, name: str, arn: str, expression: str, **settings: Any) -> None:
        target = {"Arn": arn, "RoleArn": ROLE, **settings.pop("target", {})}
        self.scheduler.create_schedule(
            Name=name, ScheduleExpression=expression, Target=target,
            FlexibleTimeWindow=settings.pop("FlexibleTimeWindow", {"Mode": "OFF"}), **settings,
        )  # fmt: skip

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.local.schedule_history(name)

    def fired(self, name: str) -> list[str]:
        """The actual times of a schedule's delivered attempts."""
        return [r["time"] for r in self.history(name) if r["outcome"] == "delivered"]

    def events(self, function: str) -> list[Any]:
        lines = self.local.logs(function)
        return [json.loads(line.split("EVENT ", 1)[1]) for line in lines if "EVENT " in line]

    def wait_events(self, function: str, count: int) -> list[Any]:
        return wait_for(
            lambda: (found := self.events(function)) and len(found) >= count and found,
            f"{count} events of {function}",
        )


@pytest.fixture
def service(tmp_path) -> Iterator[Callable[[dt.datetime], Service]]:
    started: list[LocalLambda] = []

    def start(clock: dt.datetime) -> Service:
        local = LocalLambda(
            state_dir=tmp_path / f"state-{len(started)}",
            test_clock=clock,
            event_retry_delays=(0.05, 0.05),
        )
        started.append(local.start())
        return Service(local)

    yield start
    for local in started:
        local.stop()


def test_an_at_schedule_fires_exactly_once_with_its_input_as_the_event(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("once")
    event = {"report": "daily", "rows": [1, 2, 3], "nested": {"ok": True}}
    s.schedule("once", arn, "at(2025-06-01T12:05:00)", target={"Input": json.dumps(event)})
    s.local.clock.advance(4 * 60)
    assert s.history("once") == []  # not yet
    s.local.clock.advance(2 * 60)
    (row,) = s.history("once")
    assert row["outcome"] == "delivered" and row["attempt"] == 1
    assert row["scheduled_time"] == row["time"] == "2025-06-01T12:05:00.000Z"
    assert row["request_id"] and row["error_code"] is None
    assert s.wait_events("once", 1) == [event]
    wait_for(lambda: s.history("once")[0]["function_outcome"] == "ok", "the function's outcome")
    # A day later it has still fired once, and the schedule stays (ActionAfterCompletion NONE).
    s.local.clock.advance(dt.timedelta(days=1))
    assert len(s.fired("once")) == 1 and len(s.events("once")) == 1
    assert s.scheduler.get_schedule(Name="once")["State"] == "ENABLED"


def test_action_after_completion_delete_removes_a_fired_at_schedule(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("gone-after")
    # In the schedule's zone: 14:00 in Berlin (CEST) is 12:00 UTC.
    s.schedule(
        "gone-after", arn, "at(2025-06-01T14:01:00)",
        ScheduleExpressionTimezone="Europe/Berlin", ActionAfterCompletion="DELETE",
    )  # fmt: skip
    s.local.clock.advance(60)
    assert s.fired("gone-after") == ["2025-06-01T12:01:00.000Z"]
    with pytest.raises(ClientError) as excinfo:
        s.scheduler.get_schedule(Name="gone-after")
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert s.history("gone-after")[-1]["outcome"] == "deleted"  # the history stays
    assert s.wait_events("gone-after", 1) == [{}]  # no Input: an empty event


def test_a_rate_schedule_fires_on_time_and_disabled_stops_it(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("every-minute")
    s.schedule("every-minute", arn, "rate(1 minute)", target={"Input": '{"tick": true}'})
    s.local.clock.advance(150)
    # Without StartDate a rate() starts when it is created, then every minute, on the dot.
    assert s.fired("every-minute") == [
        "2025-06-01T12:00:00.000Z",
        "2025-06-01T12:01:00.000Z",
        "2025-06-01T12:02:00.000Z",
    ]
    assert all(r["scheduled_time"] == r["time"] for r in s.history("every-minute"))
    s.scheduler.update_schedule(
        Name="every-minute", ScheduleExpression="rate(1 minute)", State="DISABLED",
        FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": ROLE},
    )  # fmt: skip
    s.local.clock.advance(dt.timedelta(minutes=10))
    assert len(s.fired("every-minute")) == 3  # nothing while disabled, and nothing "missed"
    assert [r["outcome"] for r in s.history("every-minute")] == ["delivered"] * 3
    s.scheduler.update_schedule(
        Name="every-minute", ScheduleExpression="rate(1 minute)", State="ENABLED",
        FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": ROLE},
    )  # fmt: skip
    s.local.clock.advance(90)
    assert s.fired("every-minute")[3:] == ["2025-06-01T12:12:30.000Z", "2025-06-01T12:13:30.000Z"]
    # The updates left Input out, and UpdateSchedule replaces every setting: empty events.
    assert s.wait_events("every-minute", 5) == [{"tick": True}] * 3 + [{}] * 2


def test_cron_runs_across_the_spring_change_in_berlin_match_the_table(service):
    s = service(utc(2025, 3, 28, 0))
    arn = s.function("nightly")
    s.schedule("nightly", arn, "cron(30 2 * * ? *)", ScheduleExpressionTimezone="Europe/Berlin")
    s.schedule("hourly", arn, "cron(0 * * * ? *)", ScheduleExpressionTimezone="Europe/Berlin")
    s.local.clock.set(utc(2025, 4, 1, 12))
    assert s.fired("nightly") == [
        "2025-03-28T01:30:00.000Z",  # 02:30 CET
        "2025-03-29T01:30:00.000Z",  # 02:30 CET
        # 30 March: 02:30 does not exist in Berlin, so no run
        "2025-03-31T00:30:00.000Z",  # 02:30 CEST
        "2025-04-01T00:30:00.000Z",  # 02:30 CEST
    ]
    on_the_day = [t for t in s.fired("hourly") if t.startswith("2025-03-30T0")]
    # 01:00 CET, then 03:00 CEST an hour later: the skipped 02:00 has no run.
    assert on_the_day[:3] == [
        "2025-03-30T00:00:00.000Z",
        "2025-03-30T01:00:00.000Z",
        "2025-03-30T02:00:00.000Z",
    ]
    # The local day of the 30th has 23 hours, but no UTC hour goes without its run.
    assert len(s.fired("hourly")) == 4 * 24 + 12 + 1


def test_cron_runs_across_the_autumn_change_in_berlin_run_the_repeated_hour_once(service):
    s = service(utc(2025, 10, 25, 22, 30))
    arn = s.function("autumn")
    s.schedule("hourly", arn, "cron(0 * * * ? *)", ScheduleExpressionTimezone="Europe/Berlin")
    s.schedule("at-230", arn, "cron(30 2 * * ? *)", ScheduleExpressionTimezone="Europe/Berlin")
    s.local.clock.set(utc(2025, 10, 26, 4))
    assert s.fired("hourly") == [
        "2025-10-25T23:00:00.000Z",  # 01:00 CEST
        "2025-10-26T00:00:00.000Z",  # 02:00 CEST
        # 02:00 CET (01:00Z) is the same wall time again: not run twice
        "2025-10-26T02:00:00.000Z",  # 03:00 CET
        "2025-10-26T03:00:00.000Z",  # 04:00 CET
        "2025-10-26T04:00:00.000Z",  # 05:00 CET
    ]
    assert s.fired("at-230") == ["2025-10-26T00:30:00.000Z"]  # the first 02:30 only


def test_a_flexible_window_fires_within_it_and_start_end_bound_the_runs(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("bounded")
    s.schedule(
        "flexible", arn, "cron(0 * * * ? *)",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
    )  # fmt: skip
    s.schedule(
        "bounded", arn, "rate(1 minute)", ActionAfterCompletion="DELETE",
        StartDate=utc(2025, 6, 1, 12, 5), EndDate=utc(2025, 6, 1, 12, 8),
    )  # fmt: skip
    s.local.clock.set(utc(2025, 6, 1, 16))
    rows = [r for r in s.history("flexible") if r["outcome"] == "delivered"]
    assert [r["scheduled_time"] for r in rows][:4] == [
        f"2025-06-01T{hour}:00:00.000Z" for hour in (12, 13, 14, 15)
    ]  # 16:00's window has only just opened
    assert len(rows) <= 5
    for row in rows:
        late = dt.datetime.fromisoformat(row["time"]) - dt.datetime.fromisoformat(
            row["scheduled_time"]
        )
        assert dt.timedelta(0) <= late < dt.timedelta(minutes=15)
    assert s.fired("bounded") == [
        "2025-06-01T12:05:00.000Z",
        "2025-06-01T12:06:00.000Z",
        "2025-06-01T12:07:00.000Z",
    ]  # EndDate 12:08 is not included; then the completed schedule was deleted
    assert s.history("bounded")[-1]["outcome"] == "deleted"


def test_a_failing_target_is_retried_per_its_retry_policy_then_dead_lettered(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("fragile")
    s.schedule(
        "fragile", arn, "at(2025-06-01T12:01:00)",
        target={"Input": '{"run": "<aws.scheduler.execution-id>"}',
                "RetryPolicy": {"MaximumRetryAttempts": 2}, "DeadLetterConfig": {"Arn": DLQ}},
    )  # fmt: skip
    s.schedule(
        "no-dlq", arn, "at(2025-06-01T12:01:00)",
        target={"RetryPolicy": {"MaximumRetryAttempts": 1}},
    )  # fmt: skip
    s.schedule(
        "short-lived", arn, "at(2025-06-01T12:01:00)",
        target={"RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 100},
                "DeadLetterConfig": {"Arn": DLQ}},
    )  # fmt: skip
    s.lambdas.delete_function(FunctionName="fragile")  # Lambda now refuses the invoke
    s.local.clock.advance(dt.timedelta(hours=1))

    rows = s.history("fragile")
    assert [(r["attempt"], r["outcome"], r["time"]) for r in rows] == [
        (1, "failed", "2025-06-01T12:01:00.000Z"),
        (2, "failed", "2025-06-01T12:02:00.000Z"),  # a minute later
        (3, "dead_lettered", "2025-06-01T12:04:00.000Z"),  # two minutes later: 2 retries used
    ]
    assert {r["error_code"] for r in rows} == {"ResourceNotFoundException"}
    assert len({r["execution_id"] for r in rows}) == 1
    assert rows[0]["next_attempt_at"] == "2025-06-01T12:02:00.000Z"
    assert rows[-1]["exhausted"] == "MaximumRetryAttempts"

    letters = s.local.dead_letters(DLQ)
    fragile = [d for d in letters if d["MessageAttributes"]["SCHEDULE_ARN"].endswith("/fragile")]
    (letter,) = fragile
    attributes = letter["MessageAttributes"]
    assert letter["QueueArn"] == DLQ
    assert json.loads(letter["Body"]) == {"run": rows[0]["execution_id"]}
    assert attributes["ERROR_CODE"] == "ResourceNotFoundException"
    assert arn in attributes["ERROR_MESSAGE"]
    assert attributes["RETRY_ATTEMPTS"] == "2" and attributes["TARGET_ARN"] == arn
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert attributes["SCHEDULED_TIME"] == "2025-06-01T12:01:00.000Z"
    assert (s.local.state_dir / "dead-letters" / "_nightly-dlq.jsonl").is_file()

    # Without a DeadLetterConfig the last failure is dropped, and the history says so.
    assert [r["outcome"] for r in s.history("no-dlq")] == ["failed", "dropped"]
    # The age limit stops retries too: the retry at +3 minutes would be past 100 s.
    short = s.history("short-lived")
    assert [(r["attempt"], r["outcome"]) for r in short] == [(1, "failed"), (2, "dead_lettered")]
    assert short[-1]["exhausted"] == "MaximumEventAgeInSeconds"
    assert not list((s.local.state_dir / "scheduler" / "pending").glob("*.json"))


def test_a_retry_delivers_once_the_target_is_back(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("comeback")
    s.schedule("comeback", arn, "at(2025-06-01T12:01:00)", target={"Input": '{"n": 1}'})
    s.lambdas.delete_function(FunctionName="comeback")
    s.local.clock.advance(60)
    assert [r["outcome"] for r in s.history("comeback")] == ["failed"]
    s.function("comeback")
    s.local.clock.advance(60)
    assert [(r["attempt"], r["outcome"]) for r in s.history("comeback")] == [
        (1, "failed"),
        (2, "delivered"),
    ]
    assert s.wait_events("comeback", 1) == [{"n": 1}]


def test_a_function_error_is_lambdas_to_retry_not_a_failed_firing(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("raises", FAILING)
    s.schedule("raises", arn, "at(2025-06-01T12:00:30)", target={"RetryPolicy": {
        "MaximumRetryAttempts": 0}, "DeadLetterConfig": {"Arn": DLQ}})  # fmt: skip
    s.local.clock.advance(60)
    (row,) = s.history("raises")
    assert row["outcome"] == "delivered"
    wait_for(lambda: s.history("raises")[0]["function_outcome"] == "error", "error outcome")
    assert s.local.dead_letters(DLQ) == []
    starts = [line for line in s.local.logs("raises") if line.startswith("START")]
    assert len(starts) == 3  # Lambda's own three attempts of an Event


def test_schedules_survive_a_restart_and_a_missed_at_fires_once(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("durable")
    s.schedule("once", arn, "at(2025-06-01T12:10:00)", target={"Input": '{"once": 1}'})
    s.schedule("periodic", arn, "rate(5 minutes)", target={"Input": '{"periodic": 1}'})
    s.local.clock.advance(60)
    assert s.fired("periodic") == ["2025-06-01T12:00:00.000Z"]
    # Down from 12:01 to 13:00 (the test clock starts again there).
    s.local.restart(test_clock=utc(2025, 6, 1, 13))
    s = Service(s.local)
    assert s.scheduler.get_schedule(Name="once")["ScheduleExpression"] == "at(2025-06-01T12:10:00)"
    assert s.fired("once") == ["2025-06-01T13:00:00.000Z"]  # late, once
    assert s.history("once")[0]["scheduled_time"] == "2025-06-01T12:10:00.000Z"
    periodic = s.history("periodic")
    missed = [r for r in periodic if r["outcome"] == "missed"]
    assert [(r["count"], r["scheduled_time"], r["last_scheduled_time"]) for r in missed] == [
        (11, "2025-06-01T12:05:00.000Z", "2025-06-01T12:55:00.000Z")
    ]  # not replayed in a burst
    assert s.fired("periodic") == ["2025-06-01T12:00:00.000Z", "2025-06-01T13:00:00.000Z"]
    s.local.clock.advance(dt.timedelta(minutes=30))
    assert len(s.fired("once")) == 1
    assert s.fired("periodic")[-1] == "2025-06-01T13:30:00.000Z"
    assert len(s.fired("periodic")) == 8
    events = s.wait_events("durable", 9)
    assert events.count({"once": 1}) == 1 and events.count({"periodic": 1}) == 8


def test_a_firing_waiting_for_a_retry_survives_a_restart(service):
    s = service(utc(2025, 6, 1, 12))
    arn = s.function("patient")
    s.schedule("patient", arn, "at(2025-06-01T12:00:05)",
               target={"RetryPolicy": {"MaximumRetryAttempts": 3}})  # fmt: skip
    s.lambdas.delete_function(FunctionName="patient")
    s.local.clock.advance(10)
    assert [r["outcome"] for r in s.history("patient")] == ["failed"]
    s.local.restart()  # the clock goes on from 12:00:10
    assert s.local.clock.now() == utc(2025, 6, 1, 12, 0, 10)
    s = Service(s.local)
    s.function("patient")
    s.local.clock.advance(60)
    assert [(r["attempt"], r["outcome"], r["time"]) for r in s.history("patient")] == [
        (1, "failed", "2025-06-01T12:00:05.000Z"),
        (2, "delivered", "2025-06-01T12:01:05.000Z"),
    ]


def test_the_clock_moves_only_forward_and_only_on_a_test_clock(service, local_lambda):
    s = service(utc(2025, 6, 1, 12))
    with pytest.raises(LocalServiceError, match="only moves forward"):
        s.local.clock.set(utc(2025, 6, 1, 11))
    with pytest.raises(LocalServiceError, match="AdvanceSeconds must be >= 0"):
        s.local.clock.advance(-1)
    assert s.local.clock.now() == utc(2025, 6, 1, 12)
    with pytest.raises(LocalServiceError, match="system clock"):
        _ = local_lambda.clock
    # Created on the test clock, a schedule's dates are the test clock's.
    arn = s.function("dated")
    s.schedule("dated", arn, "rate(1 hour)")
    assert s.scheduler.get_schedule(Name="dated")["CreationDate"] == utc(2025, 6, 1, 12)
