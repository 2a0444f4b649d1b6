"""Run a Lambda function on a timetable: `lambdakit.schedule()`, on AWS or lambdakit local.

    nightly = lambdakit.schedule("daily-stats", "cron(0 2 * * ? *)", timezone="Europe/Berlin",
                                 payload={"day": "<aws.scheduler.scheduled-time>"},
                                 endpoint_url="http://127.0.0.1:9001")
    nightly.next_runs(5)      # aware datetimes in Europe/Berlin
    nightly.history()         # locally: one row per firing attempt

Everything goes through boto3's EventBridge Scheduler client (and Lambda's, to find the
function), so the same call works on AWS (give `role_arn`: the role Scheduler assumes to
invoke the function, see the README) and against lambdakit local (any role, or none).
`history()` reads lambdakit local's record of firings; AWS keeps none that the API returns.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from lambdakit.aws.connection import call_api, make_client, make_scheduler_client, make_session
from lambdakit.errors import InvalidInput, LambdakitError, SchedulerError
from lambdakit.expressions import UTC, Timetable

__all__ = ["LOCAL_ROLE_ARN", "Schedule", "schedule"]

# Any role ARN will do locally (lambdakit local has no IAM); this one says what it is.
LOCAL_ROLE_ARN = "arn:aws:iam::123456789012:role/lambdakit-local-scheduler"
_NAME_CHARS = re.compile(r"[^0-9a-zA-Z._-]+")
# What UpdateSchedule must be sent again to keep a setting (it replaces every one).
_SETTINGS = (
    "GroupName", "ScheduleExpression", "ScheduleExpressionTimezone", "StartDate", "EndDate",
    "Description", "State", "KmsKeyArn", "Target", "FlexibleTimeWindow",
    "ActionAfterCompletion",
)  # fmt: skip
_HISTORY_COLUMNS = (
    "scheduled_time", "time", "attempt", "outcome", "function_outcome", "request_id",
    "error_code", "error_message", "execution_id", "next_attempt_at", "exhausted", "count",
)  # fmt: skip
_TIME_COLUMNS = ("scheduled_time", "time", "next_attempt_at")


def _when(value: dt.datetime | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InvalidInput(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


def schedule(
    function: str,
    expression: str,
    *,
    payload: Any = None,
    timezone: str = "UTC",
    name: str | None = None,
    qualifier: str | None = None,
    endpoint_url: str | None = None,
    role_arn: str | None = None,
    group: str = "default",
    state: str = "ENABLED",
    start_date: dt.datetime | None = None,
    end_date: dt.datetime | None = None,
    description: str | None = None,
    flexible_window_minutes: int | None = None,
    retry_attempts: int | None = None,
    max_event_age_s: int | None = None,
    dead_letter_arn: str | None = None,
    delete_after_completion: bool = False,
    region: str | None = None,
    profile: str | None = None,
) -> Schedule:
    """Create, or update, a schedule that invokes `function` (asynchronously) on a timetable.

    `expression` is at(yyyy-mm-ddThh:mm:ss), rate(N unit) or cron(six fields) in AWS's
    dialect, read in `timezone` (an IANA name). `payload` (any JSON value) is the event;
    its strings may hold Scheduler's context attributes, e.g.
    "<aws.scheduler.scheduled-time>". `name` defaults to the function's name (and
    qualifier). On AWS `role_arn` is required; locally it may be left out. `retry_attempts`,
    `max_event_age_s` and `dead_letter_arn` (an SQS queue ARN) make the target's
    RetryPolicy and DeadLetterConfig; `flexible_window_minutes` a FLEXIBLE window;
    `delete_after_completion` ActionAfterCompletion DELETE. Returns a `Schedule`.
    """
    # Everything checkable here is checked before any call, so a typo costs no round trip.
    start, end = _when(start_date, "start_date"), _when(end_date, "end_date")
    Timetable.parse(expression, timezone, start=start, end=end)
    if state not in ("ENABLED", "DISABLED"):
        raise InvalidInput(f"state must be 'ENABLED' or 'DISABLED', got {state!r}")
    if endpoint_url is None and not role_arn:
        raise InvalidInput(
            "role_arn is required on AWS: the ARN of an IAM role that EventBridge Scheduler "
            "assumes to invoke the function (trusting scheduler.amazonaws.com, allowed "
            "lambda:InvokeFunction on it; the README has the policy). Locally it may be "
            "left out."
        )
    session = make_session(endpoint_url=endpoint_url, region=region, profile=profile)
    lambdas = make_client(endpoint_url=endpoint_url, session=session)
    kwargs: dict[str, Any] = {"FunctionName": function}
    if qualifier is not None:
        kwargs["Qualifier"] = qualifier
    config = call_api(lambdas, "get_function_configuration", **kwargs)
    function_arn = ":".join(config["FunctionArn"].split(":")[:7])
    if qualifier is not None:
        function_arn += f":{qualifier}"
    if name is None:
        label = config["FunctionName"] + (f"-{qualifier}" if qualifier else "")
        name = _NAME_CHARS.sub("-", label)[:64]
    target: dict[str, Any] = {"Arn": function_arn, "RoleArn": role_arn or LOCAL_ROLE_ARN}
    if payload is not None:
        try:
            target["Input"] = json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"payload must be JSON-serialisable: {exc}") from None
    retry = {}
    if retry_attempts is not None:
        retry["MaximumRetryAttempts"] = retry_attempts
    if max_event_age_s is not None:
        retry["MaximumEventAgeInSeconds"] = max_event_age_s
    if retry:
        target["RetryPolicy"] = retry
    if dead_letter_arn is not None:
        target["DeadLetterConfig"] = {"Arn": dead_letter_arn}
    settings: dict[str, Any] = {
        "Name": name, "GroupName": group, "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": timezone, "State": state, "Target": target,
        "ActionAfterCompletion": "DELETE" if delete_after_completion else "NONE",
        "FlexibleTimeWindow": {"Mode": "OFF"} if flexible_window_minutes is None else
        {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": flexible_window_minutes},
    }  # fmt: skip
    if start is not None:
        settings["StartDate"] = start
    if end is not None:
        settings["EndDate"] = end
    if description is not None:
        settings["Description"] = description
    scheduler = make_scheduler_client(endpoint_url=endpoint_url, session=session)
    try:
        call_api(scheduler, "create_schedule", **settings)
    except SchedulerError as exc:
        if exc.code != "ConflictException":
            raise
        call_api(scheduler, "update_schedule", **settings)
    return Schedule(name, group=group, client=scheduler, endpoint_url=endpoint_url,
                    session=session)  # fmt: skip


class Schedule:
    """One schedule of EventBridge Scheduler (or lambdakit local), by name and group."""

    def __init__(
        self,
        name: str,
        *,
        group: str = "default",
        client: Any = None,
        endpoint_url: str | None = None,
        session: Any = None,
    ) -> None:
        self.name = name
        self.group = group
        self.endpoint_url = endpoint_url
        self._session = session or make_session(endpoint_url=endpoint_url)
        self._client = client or make_scheduler_client(
            endpoint_url=endpoint_url, session=self._session
        )

    def __repr__(self) -> str:
        try:
            info = self.describe()
        except LambdakitError as exc:
            return f"Schedule({self.group}/{self.name}: {exc})"
        runs = self.next_runs(1)
        upcoming = f", next {runs[0].isoformat()}" if runs else ", no run left"
        return (
            f"Schedule({self.group}/{self.name}: {info['ScheduleExpression']} "
            f"{info.get('ScheduleExpressionTimezone', 'UTC')}, {info['State']}{upcoming})"
        )

    def describe(self) -> dict[str, Any]:
        """GetSchedule's answer (ScheduleNotFound once it is deleted)."""
        reply = call_api(self._client, "get_schedule", Name=self.name, GroupName=self.group)
        reply.pop("ResponseMetadata", None)
        return dict(reply)

    @property
    def arn(self) -> str:
        """The schedule's ARN."""
        return str(self.describe()["Arn"])

    @property
    def state(self) -> str:
        """ENABLED or DISABLED."""
        return str(self.describe()["State"])

    def timetable(self) -> Timetable:
        """When it runs, as lambdakit.expressions reads its settings."""
        info = self.describe()
        return Timetable.parse(
            info["ScheduleExpression"], info.get("ScheduleExpressionTimezone") or "UTC",
            start=info.get("StartDate"), end=info.get("EndDate"),
            anchor=info.get("LastModificationDate"),
        )  # fmt: skip

    def next_runs(self, n: int = 5, *, after: dt.datetime | None = None) -> list[dt.datetime]:
        """The next `n` runs (aware datetimes in the schedule's time zone); [] if DISABLED.

        At or after `after`, else after now (lambdakit local's clock, which may be a test
        clock): a run due this instant has fired already.
        """
        if self.state != "ENABLED":
            return []
        since = after or self._now() + dt.timedelta(microseconds=1)
        return self.timetable().next_runs(n, after=since)

    def _now(self) -> dt.datetime:
        if self.endpoint_url is not None:
            try:
                reply = self._management("/_lambdakit/clock")
                return dt.datetime.fromtimestamp(reply["Now"], UTC)
            except LambdakitError:
                pass  # another emulator: the system's time
        return dt.datetime.now(UTC)

    def history(self) -> Any:
        """lambdakit local's firings of this schedule, oldest first, as a pandas DataFrame.

        One row per attempt (outcome delivered, failed, dead_lettered or dropped; the
        function's own outcome once it has run), and rows for missed runs and deletion;
        times in the schedule's time zone. AWS keeps no such record that its API returns
        (see its CloudWatch metrics and the function's logs): there this raises.
        """
        if self.endpoint_url is None:
            raise LambdakitError(
                "history() needs lambdakit local: on AWS, EventBridge Scheduler keeps no "
                "firing record its API returns. Look at the AWS/Scheduler CloudWatch metrics "
                "(InvocationAttemptCount, TargetErrorCount, InvocationDroppedCount) and the "
                "function's own logs instead."
            )
        import pandas as pd

        path = (
            f"/_lambdakit/schedules/{urllib.parse.quote(self.group, safe='')}/"
            f"{urllib.parse.quote(self.name, safe='')}/history"
        )
        rows = self._management(path)["Firings"]
        frame = pd.DataFrame(rows)
        for column in _HISTORY_COLUMNS:
            if column not in frame:
                frame[column] = None
        extra = [c for c in frame.columns if c not in _HISTORY_COLUMNS]
        frame = frame[[*_HISTORY_COLUMNS, *extra]]
        try:
            tz = self.timetable().timezone
        except LambdakitError:
            tz = "UTC"  # deleted since: its history stays, in UTC
        for column in _TIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_convert(tz)
        return frame.drop(columns=[c for c in ("schedule", "group") if c in frame])

    def _management(self, path: str) -> dict[str, Any]:
        """GET one of lambdakit local's own endpoints, signed like the Scheduler's calls."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        assert self.endpoint_url is not None
        url = self.endpoint_url.rstrip("/") + path
        request = AWSRequest(method="GET", url=url)
        credentials = self._session.get_credentials() or Credentials("lambdakit-local", "local")
        region = self._client.meta.region_name
        SigV4Auth(credentials.get_frozen_credentials(), "scheduler", region).add_auth(request)
        plain = urllib.request.Request(url, headers=dict(request.headers.items()))
        try:
            with urllib.request.urlopen(plain, timeout=30) as response:
                return json.loads(response.read() or b"{}")  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            message = body.get("Message") or body.get("message") or exc.reason
            raise SchedulerError(
                str(message), code=exc.headers.get("x-amzn-ErrorType", ""), status=exc.code,
                operation=f"GET {path}",
            ) from None  # fmt: skip
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LambdakitError(f"cannot reach {self.endpoint_url}: {exc}") from None

    def _update(self, **changes: Any) -> None:
        info = self.describe()
        settings = {key: info[key] for key in _SETTINGS if key in info}
        call_api(self._client, "update_schedule", Name=self.name, **{**settings, **changes})

    def disable(self) -> Schedule:
        """Stop firing (State DISABLED); every other setting is kept."""
        self._update(State="DISABLED")
        return self

    def enable(self) -> Schedule:
        """Fire again (State ENABLED); a rate() without StartDate counts from now."""
        self._update(State="ENABLED")
        return self

    def delete(self) -> None:
        """Delete the schedule (locally its history stays)."""
        call_api(self._client, "delete_schedule", Name=self.name, GroupName=self.group)
