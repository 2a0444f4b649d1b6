"""`lambdakit local schedules` and `lambdakit local schedules history NAME`."""

from __future__ import annotations

import datetime as dt

from lambdakit.cli.main import main
from lambdakit.local import LocalLambda
from tests.conftest import _poll_function, build_zip

ROLE = "arn:aws:iam::123456789012:role/r"
NOOP = "def handler(event, context):\n    return None\n"


def test_schedules_and_their_history_from_the_state_dir(tmp_path, capsys):
    state = tmp_path / "state"
    start = dt.datetime(2025, 6, 1, 12, tzinfo=dt.timezone.utc)
    with LocalLambda(state_dir=state, test_clock=start) as local:
        arn = local.client().create_function(
            FunctionName="cli-target", Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": build_zip(NOOP)},
        )["FunctionArn"]  # fmt: skip
        _poll_function(local.client(), "cli-target", lambda c: c.get("State") == "Active")
        scheduler = local.scheduler_client()
        scheduler.create_schedule(
            Name="every-minute", ScheduleExpression="rate(1 minute)",
            FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": ROLE},
        )  # fmt: skip
        scheduler.create_schedule(
            Name="far-away", ScheduleExpression="cron(0 2 1 1 ? 2099)", State="DISABLED",
            FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": arn, "RoleArn": ROLE},
        )  # fmt: skip
        local.clock.advance(90)

    assert main(["local", "schedules", "--state-dir", str(state)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "GROUP", "NAME", "STATE", "EXPRESSION", "TIMEZONE", "NEXT", "RUN", "TARGET"
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["default", "every-minute", "ENABLED", "rate(1"]
    assert lines[1].split()[-1] == arn
    assert lines[2].split()[:3] == ["default", "far-away", "DISABLED"]
    assert " - " in lines[2]  # a disabled schedule has no next run

    assert main(["local", "schedules", "history", "every-minute", "--state-dir", str(state)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:4] == ["SCHEDULED", "FIRED", "ATTEMPT", "OUTCOME"]
    assert [r.split()[:4] for r in rows[1:]] == [
        ["2025-06-01T12:00:00.000Z", "2025-06-01T12:00:00.000Z", "1", "delivered"],
        ["2025-06-01T12:01:00.000Z", "2025-06-01T12:01:00.000Z", "1", "delivered"],
    ]
    assert main(["local", "schedules", "history", "every-minute", "--tail", "1",
                 "--state-dir", str(state)]) == 0  # fmt: skip
    assert len(capsys.readouterr().out.splitlines()) == 2

    assert main(["local", "schedules", "history", "far-away", "--state-dir", str(state)]) == 0
    assert "has not fired yet" in capsys.readouterr().out
    assert main(["local", "schedules", "history", "nope", "--state-dir", str(state)]) == 1
    assert "no schedule default/nope" in capsys.readouterr().err
    assert main(["local", "schedules", "--group", "other", "--state-dir", str(state)]) == 0
    assert "no schedules" in capsys.readouterr().out
