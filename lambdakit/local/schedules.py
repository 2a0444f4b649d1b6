"""The local scheduler's schedules and schedule groups: checked, kept on disk, shown as AWS does.

Everything lives under `<state_dir>/scheduler/` and survives a restart:

    groups/_<group>.json               a schedule group (its ARN, dates, tags); `default` always
    schedules/_<group>/_<name>.json    a schedule, as GetSchedule shows it, plus `_Cursor`

(names may be `.` or `..`, hence the `_` in front). `_Cursor` is the scheduler's bookmark:
runs before it have been dealt with (fired, or recorded as missed). Creating or updating a
recurring schedule moves it to now; an at() schedule keeps it at 0 until it has fired, so it
fires once however late (an at() in the past fires at once).

Refusals are AWS's: ValidationException (400) naming the field and value,
ConflictException (409) for a duplicate, ResourceNotFoundException (404).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambdakit.errors import InvalidInput
from lambdakit.expressions import At, Timetable, parse_expression, zone
from lambdakit.local.checks import ApiError
from lambdakit.local.state import ACCOUNT_ID, Store

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_RETRY_POLICY",
    "ScheduleStore",
    "conflict",
    "missing",
    "page",
    "read_schedules",
    "tag_list",
    "validation",
]

log = logging.getLogger("lambdakit.local.schedules")

DEFAULT_GROUP = "default"
DEFAULT_RETRY_POLICY = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
_NAME_RE = re.compile(r"^[0-9a-zA-Z._-]{1,64}$")
_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_QUEUE_RE = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[a-zA-Z0-9_-]+$")
_KMS_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[0-9a-zA-Z_-]*$")
_FUNCTION_ARN_RE = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?$"
)
_GROUP_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:scheduler:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"schedule-group/(?P<name>[0-9a-zA-Z._-]+)$"
)
# Target settings of other kinds of target (ECS, EventBridge, Kinesis, SageMaker, SQS).
_OTHER_TARGET_KEYS = (
    "EcsParameters", "EventBridgeParameters", "EventBridgePutEventsV2Parameters",
    "EventBridgePutRawEventsParameters", "KinesisParameters", "SageMakerPipelineParameters",
    "SqsParameters",
)  # fmt: skip
_MAX_RESULTS = 100


def validation(message: str) -> ApiError:
    """400 ValidationException."""
    return ApiError(400, "ValidationException", message)


def conflict(message: str) -> ApiError:
    """409 ConflictException."""
    return ApiError(409, "ConflictException", message)


def missing(message: str) -> ApiError:
    """404 ResourceNotFoundException."""
    return ApiError(404, "ResourceNotFoundException", message)


def _name(value: Any, field: str = "Name") -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise validation(f"Invalid {field} {value!r}: 1 to 64 letters, digits, '.', '-' or '_'.")
    return value


def _typed(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """body[key] checked to be of a JSON type, or None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise validation(f"{where}{key} must be a {wanted}, got {json.dumps(value)[:80]}.")
    return value


def _date(value: Any, field: str) -> float | None:
    """A timestamp as botocore sends it (epoch seconds) or an ISO 8601 string, as epoch."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        stamp = float(value)
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise validation(f"{field} {value[:40]!r} is not a date (ISO 8601).") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        stamp = parsed.timestamp()
    else:
        raise validation(f"{field} must be a timestamp, got {json.dumps(value)[:40]}.")
    if not 0 <= stamp < 253402300800:  # 1970 .. 9999
        raise validation(f"{field} {value!r} is out of range.")
    return stamp


def _when(stamp: float | None) -> dt.datetime | None:
    return None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.timezone.utc)


def tag_list(value: Any) -> dict[str, str]:
    """A TagList [{"Key", "Value"}] as a dict, checked as AWS checks it."""
    if not isinstance(value, list):
        raise validation("Tags must be a list of {Key, Value} objects.")
    if len(value) > 200:
        raise validation(f"A schedule group has at most 200 tags, got {len(value)}.")
    out = {}
    for tag in value:
        key = tag.get("Key") if isinstance(tag, dict) else None
        text = tag.get("Value") if isinstance(tag, dict) else None
        if not isinstance(key, str) or not isinstance(text, str):
            raise validation(f"Each tag needs a string Key and Value, got {json.dumps(tag)[:80]}.")
        if not 1 <= len(key) <= 128 or not 1 <= len(text) <= 256:
            raise validation(
                f"Invalid tag {key[:130]!r}: keys have 1-128 characters, values 1-256."
            )
        out[key] = text
    return out


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise validation(f"Invalid NextToken {token[:40]!r}.") from None


def page(items: list[dict[str, Any]], key: Callable[[dict[str, Any]], str], query: Any) -> tuple:
    """(this page, NextToken or None) of items sorted by key, from MaxResults / NextToken."""
    raw = query.get("MaxResults")
    limit = _MAX_RESULTS
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= _MAX_RESULTS:
            raise validation(f"MaxResults must be an integer between 1 and 100, got {raw!r}.")
        limit = int(raw)
    start = 0
    token = query.get("NextToken")
    if token:
        after = _untoken(token)
        keys = [key(item) for item in items]
        start = next((i for i, k in enumerate(keys) if k >= after), len(keys))
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return chunk, _token(key(items[start + limit])) if more else None


def read_schedules(state_dir: Path) -> list[dict[str, Any]]:
    """Every schedule record in a state dir, sorted by group then name (no service needed)."""
    found = []
    for path in sorted((Path(state_dir) / "scheduler" / "schedules").glob("_*/_*.json")):
        record = ScheduleStore._read(path)
        if record is not None:
            found.append(record)
    return sorted(found, key=lambda r: (r.get("GroupName", ""), r["Name"]))


class ScheduleStore:
    """Every schedule group and schedule of one local service (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        functions: Store,
        clock: Callable[[], float],
    ) -> None:
        self.root = Path(state_dir) / "scheduler"
        self.functions = functions
        self.region = functions.region
        self.clock = clock
        self._groups: dict[str, dict[str, Any]] = {}
        self._schedules: dict[tuple[str, str], dict[str, Any]] = {}

    # -- on disk --------------------------------------------------------------------------

    def _group_path(self, group: str) -> Path:
        return self.root / "groups" / f"_{group}.json"

    def _schedule_path(self, group: str, name: str) -> Path:
        return self.root / "schedules" / f"_{group}" / f"_{name}.json"

    @staticmethod
    def _write(path: Path, record: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: a crash never leaves half a record

    def load(self) -> None:
        """Read every group and schedule; creates the default group on first use."""
        for path in sorted((self.root / "groups").glob("_*.json")):
            record = self._read(path)
            if record is not None:
                self._groups[record["Name"]] = record
        if DEFAULT_GROUP not in self._groups:
            self._groups[DEFAULT_GROUP] = self._new_group(DEFAULT_GROUP, {})
            self._write(self._group_path(DEFAULT_GROUP), self._groups[DEFAULT_GROUP])
        for path in sorted((self.root / "schedules").glob("_*/_*.json")):
            record = self._read(path)
            if record is None:
                continue
            if record["GroupName"] not in self._groups:
                log.error("schedule %s names a group that does not exist; ignored", path)
                continue
            self._schedules[(record["GroupName"], record["Name"])] = record

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text())
            if not isinstance(record.get("Name"), str):
                raise ValueError("no Name")
            return record  # type: ignore[no-any-return]
        except (OSError, ValueError, AttributeError) as exc:
            log.error("ignoring unreadable scheduler record %s: %r", path, exc)
            return None

    def save(self, record: dict[str, Any]) -> None:
        """Write a schedule after a change made by the scheduler (its cursor)."""
        key = (record["GroupName"], record["Name"])
        if self._schedules.get(key) is record:
            self._write(self._schedule_path(*key), record)

    # -- names ----------------------------------------------------------------------------

    def group_arn(self, group: str) -> str:
        """A schedule group's ARN."""
        return f"arn:aws:scheduler:{self.region}:{ACCOUNT_ID}:schedule-group/{group}"

    def schedule_arn(self, group: str, name: str) -> str:
        """A schedule's ARN."""
        return f"arn:aws:scheduler:{self.region}:{ACCOUNT_ID}:schedule/{group}/{name}"

    # -- groups ---------------------------------------------------------------------------

    def _new_group(self, name: str, tags: dict[str, str]) -> dict[str, Any]:
        now = self.clock()
        return {"Arn": self.group_arn(name), "Name": name, "State": "ACTIVE",
                "CreationDate": now, "LastModificationDate": now, "Tags": tags}  # fmt: skip

    def group(self, name: str) -> dict[str, Any]:
        """One group; ResourceNotFoundException when missing."""
        found = self._groups.get(_name(name, "GroupName"))
        if found is None:
            raise missing(f"Schedule group {name} does not exist.")
        return found

    def groups(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """Every group (optionally those whose name starts with prefix), sorted by name."""
        if prefix is not None:
            _name(prefix, "NamePrefix")
        return [
            self._groups[n] for n in sorted(self._groups) if prefix is None or n.startswith(prefix)
        ]

    def create_group(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """CreateScheduleGroup."""
        _name(name)
        tags = tag_list(body["Tags"]) if body.get("Tags") is not None else {}
        if name in self._groups:
            raise conflict(f"Schedule group {name} already exists.")
        record = self._new_group(name, tags)
        self._groups[name] = record
        self._write(self._group_path(name), record)
        return record

    def delete_group(self, name: str) -> list[dict[str, Any]]:
        """DeleteScheduleGroup: the group and every schedule in it (returned)."""
        self.group(name)
        if name == DEFAULT_GROUP:
            raise validation("The default schedule group cannot be deleted.")
        gone = [self._schedules.pop(key) for key in sorted(self._schedules) if key[0] == name]
        shutil.rmtree(self.root / "schedules" / f"_{name}", ignore_errors=True)
        del self._groups[name]
        self._group_path(name).unlink(missing_ok=True)
        return gone

    def tagged(self, arn: str) -> dict[str, Any]:
        """The group a TagResource/ListTagsForResource ARN names."""
        match = _GROUP_ARN_RE.match(arn)
        if match is None:
            raise validation(
                f"Invalid ResourceArn {arn[:200]!r}: tags apply to schedule groups, "
                "arn:aws:scheduler:REGION:ACCOUNT:schedule-group/NAME."
            )
        if match["region"] != self.region or match["account"] != ACCOUNT_ID:
            raise missing(f"Schedule group {arn} does not exist.")
        return self.group(match["name"])

    def set_tags(self, group: dict[str, Any], tags: dict[str, str]) -> None:
        """Replace a group's tags."""
        if len(tags) > 200:
            raise validation(f"A schedule group has at most 200 tags, got {len(tags)}.")
        group["Tags"] = tags
        self._write(self._group_path(group["Name"]), group)

    # -- schedules ------------------------------------------------------------------------

    def schedule(self, group: str | None, name: str) -> dict[str, Any]:
        """One schedule; ResourceNotFoundException when it (or its group) is missing."""
        group = group or DEFAULT_GROUP
        self.group(group)
        found = self._schedules.get((group, _name(name)))
        if found is None:
            raise missing(f"Schedule {name} does not exist.")
        return found

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule, sorted by group then name."""
        return [self._schedules[key] for key in sorted(self._schedules)]

    def put_schedule(self, name: str, body: dict[str, Any], *, create: bool) -> dict[str, Any]:
        """CreateSchedule (create=True) or UpdateSchedule: the stored record."""
        _name(name)
        group = _typed(body, "GroupName", str) or DEFAULT_GROUP
        self.group(group)
        old = self._schedules.get((group, name))
        if create and old is not None:
            raise conflict(f"Schedule {name} already exists.")
        if not create and old is None:
            raise missing(f"Schedule {name} does not exist.")
        fields = self._checked(body)
        now = self.clock()
        record: dict[str, Any] = {
            "Arn": self.schedule_arn(group, name), "Name": name, "GroupName": group,
            **fields,
            "CreationDate": old["CreationDate"] if old else now, "LastModificationDate": now,
        }  # fmt: skip
        if isinstance(parse_expression(record["ScheduleExpression"]), At):
            same = old is not None and all(
                old.get(k) == record.get(k)
                for k in ("ScheduleExpression", "ScheduleExpressionTimezone")
            )
            record["_Cursor"] = old["_Cursor"] if same else 0.0
        else:
            record["_Cursor"] = now
        self._schedules[(group, name)] = record
        self._write(self._schedule_path(group, name), record)
        return record

    def delete_schedule(self, group: str | None, name: str) -> dict[str, Any]:
        """DeleteSchedule: the record removed."""
        record = self.schedule(group, name)
        del self._schedules[(record["GroupName"], name)]
        self._schedule_path(record["GroupName"], name).unlink(missing_ok=True)
        return record

    def _checked(self, body: dict[str, Any]) -> dict[str, Any]:
        """The schedule fields of a Create/UpdateSchedule body, checked, defaults filled."""
        out: dict[str, Any] = {}
        expression = _typed(body, "ScheduleExpression", str)
        if expression is None:
            raise validation("ScheduleExpression is required.")
        timezone = _typed(body, "ScheduleExpressionTimezone", str) or "UTC"
        try:
            zone(timezone)
            parse_expression(expression)
        except InvalidInput as exc:
            raise validation(str(exc)) from None
        out["ScheduleExpression"] = expression
        out["ScheduleExpressionTimezone"] = timezone
        start = _date(body.get("StartDate"), "StartDate")
        end = _date(body.get("EndDate"), "EndDate")
        if start is not None and end is not None and end <= start:
            raise validation("The StartDate must come before the EndDate.")
        if start is not None:
            out["StartDate"] = start
        if end is not None:
            out["EndDate"] = end
        description = _typed(body, "Description", str)
        if description is not None:
            if len(description) > 512:
                raise validation("Description must be at most 512 characters.")
            out["Description"] = description
        state = _typed(body, "State", str) or "ENABLED"
        if state not in ("ENABLED", "DISABLED"):
            raise validation(f"State must be ENABLED or DISABLED, got {state!r}.")
        out["State"] = state
        kms = _typed(body, "KmsKeyArn", str)
        if kms is not None:
            if not _KMS_RE.match(kms):
                raise validation(f"Invalid KmsKeyArn {kms[:200]!r}: a KMS key or alias ARN.")
            out["KmsKeyArn"] = kms
        after = _typed(body, "ActionAfterCompletion", str) or "NONE"
        if after not in ("NONE", "DELETE"):
            raise validation(f"ActionAfterCompletion must be NONE or DELETE, got {after!r}.")
        out["ActionAfterCompletion"] = after
        out["FlexibleTimeWindow"] = self._window(body.get("FlexibleTimeWindow"))
        out["Target"] = self._target(body.get("Target"))
        return out

    @staticmethod
    def _window(window: Any) -> dict[str, Any]:
        if not isinstance(window, dict):
            raise validation("FlexibleTimeWindow is required: {'Mode': 'OFF'} or FLEXIBLE.")
        mode = _typed(window, "Mode", str, "FlexibleTimeWindow.")
        minutes = _typed(window, "MaximumWindowInMinutes", int, "FlexibleTimeWindow.")
        if mode == "OFF":
            if minutes is not None:
                raise validation(
                    "FlexibleTimeWindow.MaximumWindowInMinutes is only for Mode FLEXIBLE."
                )
            return {"Mode": "OFF"}
        if mode == "FLEXIBLE":
            if minutes is None or not 1 <= minutes <= 1440:
                raise validation(
                    "FlexibleTimeWindow Mode FLEXIBLE needs MaximumWindowInMinutes between 1 "
                    f"and 1440, got {minutes!r}."
                )
            return {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": minutes}
        raise validation(f"FlexibleTimeWindow.Mode must be OFF or FLEXIBLE, got {mode!r}.")

    def _target(self, target: Any) -> dict[str, Any]:
        if not isinstance(target, dict):
            raise validation("Target is required: {'Arn': FUNCTION_ARN, 'RoleArn': ROLE_ARN}.")
        arn = _typed(target, "Arn", str, "Target.")
        role = _typed(target, "RoleArn", str, "Target.")
        if not arn:
            raise validation("Target.Arn is required.")
        if not role or not _ROLE_RE.match(role):
            raise validation(
                f"Invalid Target.RoleArn {role!r}: an IAM role ARN, "
                "arn:aws:iam::ACCOUNT:role/NAME (lambdakit local accepts any such role)."
            )
        others = [key for key in _OTHER_TARGET_KEYS if target.get(key) is not None]
        if others:
            raise validation(
                f"Target.{others[0]} is for another kind of target: lambdakit local delivers "
                "to Lambda functions only."
            )
        self.check_function(arn)
        out: dict[str, Any] = {"Arn": arn, "RoleArn": role}
        payload = _typed(target, "Input", str, "Target.")
        if payload is not None:
            if not payload:
                raise validation("Target.Input must not be empty.")
            out["Input"] = payload
        retry = _typed(target, "RetryPolicy", dict, "Target.") or {}
        policy = dict(DEFAULT_RETRY_POLICY)
        for key, low, high in (
            ("MaximumEventAgeInSeconds", 60, 86400),
            ("MaximumRetryAttempts", 0, 185),
        ):
            value = _typed(retry, key, int, "Target.RetryPolicy.")
            if value is not None:
                if not low <= value <= high:
                    raise validation(
                        f"Target.RetryPolicy.{key} must be between {low} and {high}, got {value}."
                    )
                policy[key] = value
        out["RetryPolicy"] = policy
        dead = _typed(target, "DeadLetterConfig", dict, "Target.")
        if dead is not None:
            queue = _typed(dead, "Arn", str, "Target.DeadLetterConfig.")
            if queue is not None:
                if not _QUEUE_RE.match(queue):
                    raise validation(
                        f"Invalid Target.DeadLetterConfig.Arn {queue[:200]!r}: an SQS queue "
                        "ARN, arn:aws:sqs:REGION:ACCOUNT:NAME."
                    )
                out["DeadLetterConfig"] = {"Arn": queue}
        return out

    def check_function(self, arn: str) -> tuple[str, str | None]:
        """(function, qualifier) a target ARN names; ValidationException when it names none."""
        name, qualifier = self.parse_target(arn)
        try:
            if qualifier is not None and not qualifier.isdigit() and qualifier != "$LATEST":
                self.functions.alias(name, qualifier)
            else:
                self.functions.config(name, qualifier)
        except ApiError:
            raise validation(f"The target function does not exist: {arn}") from None
        return name, qualifier

    def parse_target(self, arn: str) -> tuple[str, str | None]:
        """(function, qualifier) of a Lambda function ARN of this region and account."""
        match = _FUNCTION_ARN_RE.match(arn)
        if match is None:
            raise validation(
                f"Invalid Target.Arn {arn[:200]!r}: lambdakit local delivers to Lambda "
                "functions, arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]."
            )
        if match["region"] != self.region or match["account"] != ACCOUNT_ID:
            raise validation(
                f"Target.Arn {arn} names region {match['region']}, account "
                f"{match['account']}: lambdakit local serves {self.region}, {ACCOUNT_ID}."
            )
        return match["name"], match["qualifier"]

    # -- views ----------------------------------------------------------------------------

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        """A schedule or group as the API shows it."""
        return {k: copy.deepcopy(v) for k, v in record.items() if not k.startswith("_")}

    @staticmethod
    def summary(record: dict[str, Any]) -> dict[str, Any]:
        """A schedule as ListSchedules shows it."""
        keys = ("Arn", "Name", "GroupName", "State", "CreationDate", "LastModificationDate")
        return {**{k: record[k] for k in keys}, "Target": {"Arn": record["Target"]["Arn"]}}

    @staticmethod
    def timetable(record: dict[str, Any]) -> Timetable:
        """When a schedule runs (a rate() without StartDate counts from its last change)."""
        return Timetable.parse(
            record["ScheduleExpression"],
            record["ScheduleExpressionTimezone"],
            start=_when(record.get("StartDate")),
            end=_when(record.get("EndDate")),
            anchor=_when(record["LastModificationDate"]),
        )
