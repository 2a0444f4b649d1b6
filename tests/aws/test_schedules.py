"""lambdakit.schedule(): a function on a timetable through boto3 only, against lambdakit local."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pandas as pd
import pytest

import lambdakit
from lambdakit.errors import (
    FunctionNotFound,
    InvalidInput,
    LambdakitError,
    LambdaServiceError,
    ScheduleNotFound,
    SchedulerError,
)
from lambdakit.local import LocalLambda
from tests.conftest import build_zip

UTC = dt.timezone.utc
START = dt.datetime(2025, 3, 27, 12, tzinfo=UTC)  # three days before Berlin's spring change
STATS = (
    "import json\n"
    "def handler(event, context):\n"
    "    print('EVENT ' + json.dumps(event))\n"
    "    return {'mean': sum(event['values']) / len(event['values'])}\n"
)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Iterator[LocalLambda]:
    state = tmp_path_factory.mktemp("schedules-state")
    with LocalLambda(state_dir=state, test_clock=START, event_retry_delays=(0.05, 0.05)) as svc:
        client = svc.client()
        client.create_function(
            FunctionName="daily-stats", Runtime="python3.11", Handler="app.handler",
            Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": build_zip(STATS)},
            Publish=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while client.get_function(FunctionName="daily-stats")["Configuration"]["State"] != (
            "Active"
        ):
            assert time.monotonic() < deadline, "daily-stats never became Active"
            time.sleep(0.05)
        client.create_alias(FunctionName="daily-stats", Name="live", FunctionVersion="1")
        yield svc


def test_a_nightly_schedule_in_the_analysts_time_zone(local):
    nightly = lambdakit.schedule(
        "daily-stats",
        "cron(0 2 * * ? *)",
        timezone="Europe/Berlin",
        payload={"values": [1, 2, 3], "day": "<aws.scheduler.scheduled-time>"},
        endpoint_url=local.endpoint_url,
    )
    assert nightly.name == "daily-stats" and nightly.group == "default"
    info = nightly.describe()
    assert info["Target"]["Arn"] == "arn:aws:lambda:us-east-1:123456789012:function:daily-stats"
    assert info["Target"]["RoleArn"] == lambdakit.aws.schedules.LOCAL_ROLE_ARN
    # From the service's (test) clock, in Berlin's time, across the change to summer time.
    runs = nightly.next_runs(5)
    assert [r.isoformat() for r in runs] == [
        "2025-03-28T02:00:00+01:00",
        "2025-03-29T02:00:00+01:00",
        # 30 March 02:00 does not exist in Berlin
        "2025-03-31T02:00:00+02:00",
        "2025-04-01T02:00:00+02:00",
        "2025-04-02T02:00:00+02:00",
    ]
    assert all(str(r.tzinfo) == "Europe/Berlin" for r in runs)
    assert "cron(0 2 * * ? *) Europe/Berlin, ENABLED, next 2025-03-28T02:00:00+01:00" in repr(
        nightly
    )
    nightly.delete()


def test_history_after_a_short_rate_schedule_fired_a_few_times(local):
    job = lambdakit.schedule(
        "daily-stats", "rate(1 minute)", name="every-minute",
        payload={"values": [2, 4]}, endpoint_url=local.endpoint_url,
    )  # fmt: skip
    local.clock.advance(dt.timedelta(minutes=3))
    # Lambda runs the events in the background: wait (with a deadline) for their outcomes.
    deadline = time.monotonic() + 60
    while True:
        history = job.history()
        if len(history) == 4 and history["function_outcome"].eq("ok").all():
            break
        assert time.monotonic() < deadline, history
        time.sleep(0.05)
    assert isinstance(history, pd.DataFrame)
    assert list(history.columns[:6]) == [
        "scheduled_time", "time", "attempt", "outcome", "function_outcome", "request_id"
    ]  # fmt: skip
    assert (history["outcome"] == "delivered").all()
    assert (history["scheduled_time"] == history["time"]).all()
    assert history["scheduled_time"].diff().dropna().eq(pd.Timedelta(minutes=1)).all()
    assert history["request_id"].notna().all()

    # Disabled, it stops; enabled again, it goes on from then.
    job.disable()
    assert job.state == "DISABLED"
    assert job.next_runs(3) == []
    local.clock.advance(dt.timedelta(minutes=5))
    assert len(job.history()) == 4
    job.enable()
    local.clock.advance(dt.timedelta(seconds=30))
    assert len(job.history()) == 5
    assert job.describe()["Target"]["Input"] == '{"values": [2, 4]}'  # kept by enable/disable

    # Scheduling again under the same name updates it.
    again = lambdakit.schedule(
        "daily-stats", "rate(2 hours)", name="every-minute", endpoint_url=local.endpoint_url
    )
    assert again.describe()["ScheduleExpression"] == "rate(2 hours)"
    local.clock.advance(0)  # a rate() without StartDate starts at once: one more firing
    again.delete()
    with pytest.raises(ScheduleNotFound):
        again.describe()
    assert len(again.history()) == 6  # the history outlives the schedule


def test_a_qualified_target_and_its_default_name(local):
    job = lambdakit.schedule(
        "daily-stats", "at(2030-01-01T00:00:00)", qualifier="live", endpoint_url=local.endpoint_url
    )
    assert job.name == "daily-stats-live"
    assert job.describe()["Target"]["Arn"].endswith(":function:daily-stats:live")
    assert [r.isoformat() for r in job.next_runs(3)] == ["2030-01-01T00:00:00+00:00"]
    job.delete()


def test_bad_arguments_are_refused_before_any_call(local):
    url = local.endpoint_url
    with pytest.raises(InvalidInput, match="exactly one of day-of-month and day-of-week"):
        lambdakit.schedule("daily-stats", "cron(0 2 * * * *)", endpoint_url=url)
    with pytest.raises(InvalidInput, match="Mars/Olympus"):
        lambdakit.schedule("daily-stats", "rate(1 hour)", timezone="Mars/Olympus", endpoint_url=url)
    with pytest.raises(InvalidInput, match="role_arn is required on AWS"):
        lambdakit.schedule("daily-stats", "rate(1 hour)")  # no endpoint_url: AWS
    with pytest.raises(InvalidInput, match="timezone-aware"):
        lambdakit.schedule(
            "daily-stats", "rate(1 hour)", start_date=dt.datetime(2030, 1, 1), endpoint_url=url
        )
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        lambdakit.schedule("daily-stats", "rate(1 hour)", payload={1, 2}, endpoint_url=url)
    with pytest.raises(FunctionNotFound):
        lambdakit.schedule("no-such-function", "rate(1 hour)", endpoint_url=url)


def test_the_service_refusals_arrive_as_scheduler_errors(local):
    with pytest.raises(SchedulerError) as excinfo:
        lambdakit.schedule(
            "daily-stats", "rate(1 hour)", retry_attempts=500, endpoint_url=local.endpoint_url
        )
    assert excinfo.value.code == "ValidationException"
    assert "MaximumRetryAttempts must be between 0 and 185, got 500" in str(excinfo.value)
    with pytest.raises(ScheduleNotFound) as missing:
        lambdakit.Schedule("never-made", endpoint_url=local.endpoint_url).describe()
    assert isinstance(missing.value, LambdaServiceError)
    assert missing.value.code == "ResourceNotFoundException"


def test_history_on_aws_is_a_documented_limitation(local):
    on_aws = lambdakit.Schedule("x", client=local.scheduler_client(), session=object())
    with pytest.raises(LambdakitError, match="CloudWatch metrics"):
        on_aws.history()
