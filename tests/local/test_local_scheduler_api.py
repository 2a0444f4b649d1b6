"""The EventBridge Scheduler API of lambdakit local, through boto3's own `scheduler` client."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdakit.local import LocalLambda

ROLE = "arn:aws:iam::123456789012:role/lambdakit-scheduler"
NOOP = "def handler(event, context):\n    return None\n"
UTC = dt.timezone.utc


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


@pytest.fixture
def function_arn(make_function, lambda_client) -> str:
    name = make_function(NOOP)
    return lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]


def create(client, arn: str, name: str | None = None, **settings: Any) -> str:
    name = name or unique()
    target = {"Arn": arn, "RoleArn": ROLE, **settings.pop("target", {})}
    body = {"ScheduleExpression": "rate(1 hour)", "FlexibleTimeWindow": {"Mode": "OFF"}}
    client.create_schedule(Name=name, Target=target, **{**body, **settings})
    return name


def test_create_get_update_delete(scheduler_client, function_arn):
    start = dt.datetime(2030, 1, 1, tzinfo=UTC)
    end = dt.datetime(2031, 1, 1, tzinfo=UTC)
    name = unique()
    arn = scheduler_client.create_schedule(
        Name=name,
        ScheduleExpression="cron(0 2 * * ? *)",
        ScheduleExpressionTimezone="Europe/Berlin",
        StartDate=start,
        EndDate=end,
        Description="nightly statistics",
        State="DISABLED",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": function_arn,
            "RoleArn": ROLE,
            "Input": '{"day": "<aws.scheduler.scheduled-time>"}',
            "RetryPolicy": {"MaximumRetryAttempts": 3},
            "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:stats-dlq"},
        },
    )["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:us-east-1:123456789012:schedule/default/{name}"
    got = scheduler_client.get_schedule(Name=name)
    assert got["Arn"] == arn and got["GroupName"] == "default" and got["Name"] == name
    assert got["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert got["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert (got["StartDate"], got["EndDate"]) == (start, end)
    assert got["State"] == "DISABLED" and got["ActionAfterCompletion"] == "DELETE"
    assert got["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert got["Target"] == {
        "Arn": function_arn,
        "RoleArn": ROLE,
        "Input": '{"day": "<aws.scheduler.scheduled-time>"}',
        # The age limit left out takes AWS's default.
        "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 86400},
        "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:stats-dlq"},
    }
    assert got["CreationDate"] == got["LastModificationDate"]

    # UpdateSchedule replaces every setting: what it leaves out goes back to the default.
    scheduler_client.update_schedule(
        Name=name,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": function_arn, "RoleArn": ROLE},
    )
    updated = scheduler_client.get_schedule(Name=name)
    assert updated["ScheduleExpression"] == "rate(5 minutes)"
    assert updated["State"] == "ENABLED" and updated["ActionAfterCompletion"] == "NONE"
    assert updated["ScheduleExpressionTimezone"] == "UTC"
    assert "StartDate" not in updated and "Description" not in updated
    assert updated["Target"]["RetryPolicy"] == {
        "MaximumRetryAttempts": 185,
        "MaximumEventAgeInSeconds": 86400,
    }
    assert updated["CreationDate"] == got["CreationDate"]
    assert updated["LastModificationDate"] >= got["LastModificationDate"]

    scheduler_client.delete_schedule(Name=name)
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.get_schedule(Name=name)
    assert error(excinfo) == ("ResourceNotFoundException", f"Schedule {name} does not exist.")
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.delete_schedule(Name=name)
    assert error(excinfo)[0] == "ResourceNotFoundException"


def test_a_qualified_target_needs_its_alias_or_version(
    scheduler_client, make_function, lambda_client
):
    name = make_function(NOOP, Publish=True)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    arn = lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    for qualifier in ("live", "1", "$LATEST"):
        create(scheduler_client, f"{arn}:{qualifier}")
    for qualifier in ("nope", "7"):
        with pytest.raises(ClientError) as excinfo:
            create(scheduler_client, f"{arn}:{qualifier}")
        assert error(excinfo) == (
            "ValidationException",
            f"The target function does not exist: {arn}:{qualifier}",
        )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 * * 1)", "six fields"),
        ("cron(0 24 * * ? *)", "hours value 24 is out of range 0-23"),
        ("rate(1 minutes)", "singular unit"),
        ("rate(-5 minutes)", "rate(value unit)"),
        ("at(2030-13-01T00:00:00)", "not a date and time"),
        ("every night", "expected at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron"),
    ],
)
def test_malformed_expressions_are_refused(scheduler_client, function_arn, expression, message):
    with pytest.raises(ClientError) as excinfo:
        create(scheduler_client, function_arn, ScheduleExpression=expression)
    code, text = error(excinfo)
    assert code == "ValidationException"
    assert expression in text and message in text
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_time_zones_are_refused(scheduler_client, function_arn):
    for zone in ("Europe/Atlantis", "CEST+1", "Europe"):
        with pytest.raises(ClientError) as excinfo:
            create(scheduler_client, function_arn, ScheduleExpressionTimezone=zone)
        code, text = error(excinfo)
        assert code == "ValidationException" and repr(zone) in text and "IANA" in text


def test_a_duplicate_name_is_a_conflict(scheduler_client, function_arn):
    name = create(scheduler_client, function_arn)
    with pytest.raises(ClientError) as excinfo:
        create(scheduler_client, function_arn, name=name)
    assert error(excinfo) == ("ConflictException", f"Schedule {name} already exists.")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    # The same name in another group is another schedule.
    group = unique("g")
    scheduler_client.create_schedule_group(Name=group)
    create(scheduler_client, function_arn, name=name, GroupName=group)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"target": {"Arn": "arn:aws:sqs:us-east-1:123456789012:q"}}, "delivers to Lambda"),
        ({"target": {"RoleArn": "not-a-role"}}, "Invalid Target.RoleArn 'not-a-role'"),
        (
            {"target": {"SqsParameters": {"MessageGroupId": "x"}}},
            "Target.SqsParameters is for another kind of target",
        ),
        (
            {"target": {"RetryPolicy": {"MaximumEventAgeInSeconds": 30}}},
            "MaximumEventAgeInSeconds must be between 60 and 86400, got 30",
        ),
        (
            {"target": {"DeadLetterConfig": {"Arn": "arn:aws:sns:us-east-1:123456789012:t"}}},
            "an SQS queue ARN",
        ),
        ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}, "needs MaximumWindowInMinutes"),
        (
            {"FlexibleTimeWindow": {"Mode": "OFF", "MaximumWindowInMinutes": 5}},
            "only for Mode FLEXIBLE",
        ),
        (
            {
                "StartDate": dt.datetime(2031, 1, 1, tzinfo=UTC),
                "EndDate": dt.datetime(2030, 1, 1, tzinfo=UTC),
            },
            "The StartDate must come before the EndDate.",
        ),
        ({"State": "PAUSED"}, "State must be ENABLED or DISABLED, got 'PAUSED'"),
        ({"ActionAfterCompletion": "ARCHIVE"}, "ActionAfterCompletion must be NONE or DELETE"),
        ({"Description": "x" * 513}, "at most 512 characters"),
    ],
)
def test_bad_settings_are_refused_by_name(local_lambda, function_arn, settings, message):
    # botocore checks some bounds itself: the server's own checks are the point here.
    unchecked = local_lambda.scheduler_client(parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        create(unchecked, function_arn, **settings)
    code, text = error(excinfo)
    assert code == "ValidationException" and message in text


def test_a_missing_target_function_or_another_account_is_refused(scheduler_client, function_arn):
    gone = function_arn.rsplit(":", 1)[0] + ":no-such-function"
    with pytest.raises(ClientError) as excinfo:
        create(scheduler_client, gone)
    assert error(excinfo) == ("ValidationException", f"The target function does not exist: {gone}")
    elsewhere = function_arn.replace("123456789012", "210987654321")
    with pytest.raises(ClientError) as excinfo:
        create(scheduler_client, elsewhere)
    assert "account 210987654321" in error(excinfo)[1]


def test_bad_names_and_missing_groups(scheduler_client, function_arn):
    with pytest.raises(ClientError) as excinfo:
        create(scheduler_client, function_arn, name="has space")
    assert error(excinfo)[0] == "ValidationException" and "Invalid Name" in error(excinfo)[1]
    with pytest.raises(ClientError) as excinfo:
        create(scheduler_client, function_arn, GroupName="no-such-group")
    assert error(excinfo) == (
        "ResourceNotFoundException",
        "Schedule group no-such-group does not exist.",
    )
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.update_schedule(
            Name=unique(),
            ScheduleExpression="rate(1 hour)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": function_arn, "RoleArn": ROLE},
        )
    assert error(excinfo)[0] == "ResourceNotFoundException"


def test_list_filters_and_pages(scheduler_client, function_arn):
    group = unique("g")
    scheduler_client.create_schedule_group(Name=group)
    names = sorted(f"job-{i:02d}" for i in range(7))
    for i, name in enumerate(names):
        state = "DISABLED" if i % 3 == 0 else "ENABLED"
        create(scheduler_client, function_arn, name=name, GroupName=group, State=state)
    create(scheduler_client, function_arn, name="other", GroupName=group)
    listed = scheduler_client.list_schedules(GroupName=group, NamePrefix="job-")["Schedules"]
    assert [s["Name"] for s in listed] == names
    assert listed[0]["Target"] == {"Arn": function_arn}
    assert set(listed[0]) == {
        "Arn", "Name", "GroupName", "State", "CreationDate", "LastModificationDate", "Target"
    }  # fmt: skip
    disabled = scheduler_client.list_schedules(GroupName=group, State="DISABLED")
    assert [s["Name"] for s in disabled["Schedules"]] == ["job-00", "job-03", "job-06"]
    pages = scheduler_client.get_paginator("list_schedules").paginate(
        GroupName=group, PaginationConfig={"PageSize": 3}
    )
    sizes, seen = [], []
    for one in pages:
        sizes.append(len(one["Schedules"]))
        seen += [s["Name"] for s in one["Schedules"]]
    assert sizes == [3, 3, 2] and seen == [*names, "other"]
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.list_schedules(GroupName="no-such-group")
    assert error(excinfo)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.list_schedules(NextToken="!!not a token!!")
    assert error(excinfo)[0] == "ValidationException"


def test_groups_and_their_tags(scheduler_client, function_arn):
    groups = [g["Name"] for g in scheduler_client.list_schedule_groups()["ScheduleGroups"]]
    assert "default" in groups
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.delete_schedule_group(Name="default")
    assert error(excinfo)[0] == "ValidationException"

    group = unique("g")
    arn = scheduler_client.create_schedule_group(
        Name=group, Tags=[{"Key": "team", "Value": "stats"}]
    )["ScheduleGroupArn"]
    assert arn == f"arn:aws:scheduler:us-east-1:123456789012:schedule-group/{group}"
    got = scheduler_client.get_schedule_group(Name=group)
    assert (got["Arn"], got["Name"], got["State"]) == (arn, group, "ACTIVE")
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.create_schedule_group(Name=group)
    assert error(excinfo) == ("ConflictException", f"Schedule group {group} already exists.")
    prefixed = scheduler_client.list_schedule_groups(NamePrefix=group)["ScheduleGroups"]
    assert [g["Name"] for g in prefixed] == [group]

    scheduler_client.tag_resource(ResourceArn=arn, Tags=[{"Key": "cost", "Value": "42"}])
    tags = scheduler_client.list_tags_for_resource(ResourceArn=arn)["Tags"]
    assert tags == [{"Key": "cost", "Value": "42"}, {"Key": "team", "Value": "stats"}]
    scheduler_client.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert scheduler_client.list_tags_for_resource(ResourceArn=arn)["Tags"] == [
        {"Key": "cost", "Value": "42"}
    ]
    schedule_arn = scheduler_client.get_schedule(
        Name=create(scheduler_client, function_arn, GroupName=group), GroupName=group
    )["Arn"]
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.list_tags_for_resource(ResourceArn=schedule_arn)
    assert error(excinfo)[0] == "ValidationException" and "schedule groups" in error(excinfo)[1]

    # Deleting a group deletes its schedules.
    scheduler_client.delete_schedule_group(Name=group)
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.get_schedule_group(Name=group)
    assert error(excinfo)[0] == "ResourceNotFoundException"
    assert not [
        s for s in scheduler_client.list_schedules()["Schedules"] if s["GroupName"] == group
    ]
    with pytest.raises(ClientError) as excinfo:
        scheduler_client.list_tags_for_resource(ResourceArn=arn)
    assert error(excinfo)[0] == "ResourceNotFoundException"


def test_schedules_and_groups_survive_a_restart(tmp_path):
    from tests.conftest import build_zip

    with LocalLambda(state_dir=tmp_path / "state") as local:
        lambdas, scheduler = local.client(), local.scheduler_client()
        arn = lambdas.create_function(
            FunctionName="nightly", Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": build_zip(NOOP)},
        )["FunctionArn"]  # fmt: skip
        scheduler.create_schedule_group(Name="..", Tags=[{"Key": "k", "Value": "v"}])
        create(scheduler, arn, name=".", GroupName="..", ScheduleExpression="cron(0 2 * * ? *)")
        before = scheduler.get_schedule(Name=".", GroupName="..")
        local.restart()
        scheduler = local.scheduler_client()
        after = scheduler.get_schedule(Name=".", GroupName="..")
        for meta in (before, after):
            meta.pop("ResponseMetadata")
        assert after == before
        group_arn = scheduler.get_schedule_group(Name="..")["Arn"]
        assert scheduler.list_tags_for_resource(ResourceArn=group_arn)["Tags"] == [
            {"Key": "k", "Value": "v"}
        ]
        # Names of dots stay inside the state folder.
        assert sorted(p.name for p in (tmp_path / "state" / "scheduler" / "schedules").iterdir())
        assert not (tmp_path / "state" / "scheduler.json").exists()


def test_the_aws_cli_speaks_to_it(aws_cli, scheduler_client, function_arn):
    name = create(scheduler_client, function_arn)
    done = aws_cli("scheduler", "get-schedule", "--name", name, "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Target"]["Arn"] == function_arn


def test_a_page_cannot_post_a_form_to_the_scheduler(local_lambda):
    from tests.local.test_local_api import raw

    status, headers, _ = raw(
        local_lambda,
        "POST",
        "/schedules/x",
        b"ScheduleExpression=rate(1 hour)",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415 and headers["x-amzn-ErrorType"] == "UnsupportedMediaTypeException"
    status, _, _ = raw(local_lambda, "GET", "/schedules", headers={"Origin": "http://evil.test"})
    assert status == 403
