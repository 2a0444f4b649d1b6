"""Schedule expressions as EventBridge Scheduler reads them: at(), rate() and cron(), pure.

    >>> table = Timetable.parse("cron(0 2 * * ? *)", timezone="Europe/Berlin")
    >>> [t.isoformat() for t in table.next_runs(2, after=datetime(2024, 3, 30, tzinfo=UTC))]
    ['2024-03-30T02:00:00+01:00', '2024-04-01T02:00:00+02:00']

AWS's cron dialect is not Unix cron. Six fields, `minutes hours day-of-month month
day-of-week year`; exactly one of day-of-month and day-of-week is `?`; day-of-week counts
1 = SUN to 7 = SAT; `L` (last day of the month, or of the week: SAT), `nL` (the last weekday
n of the month), `nW` (the weekday nearest day n) and `n#k` (the k-th weekday n of the month)
each stand alone in their field. The fields are checked here, by name, then translated to
croniter's dialect (day-of-week shifted to 0 = SUN, a seconds field added) and croniter
walks the calendar.

Time zones are zoneinfo's. cron() and at() read wall-clock time in the schedule's zone, as
AWS does across daylight saving changes: a wall time that does not exist (the hour skipped
in spring) is skipped, and a wall time that happens twice (the hour repeated in autumn)
fires once, at its first occurrence. An at() in the skipped hour runs at the instant that
wall time names with the offset before the change (02:30 becomes 03:30 CEST). rate() is a
fixed duration (a day is 24 hours) from its StartDate, or from its anchor (the time the
schedule was created or last updated), whatever the zone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from lambdakit.errors import InvalidInput

__all__ = [
    "MAX_CRON_YEAR",
    "UTC",
    "At",
    "Cron",
    "Expression",
    "Rate",
    "Timetable",
    "parse_expression",
    "zone",
]

UTC = dt.timezone.utc
# croniter walks calendars up to 2099; AWS accepts years up to 2199.
MAX_CRON_YEAR = 2099
_MAX_EXPRESSION = 256
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name, lowest, highest, names) of the six fields, in order.
_FIELDS = (
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, ()),
)
_AT_RE = re.compile(r"^at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)$")
_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_ITEM_RE = re.compile(r"^(\*|[A-Za-z0-9]+)(?:-([A-Za-z0-9]+))?(?:/(\d+))?$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (Europe/Berlin, UTC, ...); InvalidInput names a bad one."""
    if not isinstance(name, str) or not 1 <= len(name) <= 50:
        raise InvalidInput(f"Invalid ScheduleExpressionTimezone {name!r}: 1-50 characters.")
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f"Invalid ScheduleExpressionTimezone {name!r}: not a time zone of the IANA "
            "database (use a name such as UTC, Europe/Berlin or America/New_York)."
        ) from None


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _problem(text: str, why: str) -> InvalidInput:
    return InvalidInput(f"Invalid ScheduleExpression {text[:_MAX_EXPRESSION]!r}: {why}")


@dataclass(frozen=True)
class At:
    """`at(yyyy-mm-ddThh:mm:ss)`: once, at that wall time of the schedule's zone."""

    when: datetime  # naive: a wall time, read in the schedule's time zone
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Rate:
    """`rate(N unit)`: every N minutes, hours or days (fixed durations)."""

    value: int
    unit: str  # minute | hour | day (singular)
    text: str

    @property
    def period(self) -> timedelta:
        """The time between two runs."""
        return timedelta(seconds=self.value * _UNIT_SECONDS[self.unit])

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Cron:
    """`cron(minutes hours day-of-month month day-of-week year)` in AWS's dialect."""

    fields: tuple[str, ...]  # the six fields as given
    croniter_form: str  # the same schedule in croniter's seven-field dialect
    text: str

    def __str__(self) -> str:
        return self.text


Expression = At | Rate | Cron


def parse_expression(text: str) -> Expression:
    """An at(), rate() or cron() expression; InvalidInput says what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise InvalidInput(f"ScheduleExpression must be a non-empty string, got {text!r}.")
    if len(text) > _MAX_EXPRESSION:
        raise _problem(text, f"longer than {_MAX_EXPRESSION} characters.")
    if text.startswith("at("):
        return _parse_at(text)
    if text.startswith("rate("):
        return _parse_rate(text)
    if text.startswith("cron("):
        return _parse_cron(text)
    raise _problem(text, "expected at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(six fields).")


def _parse_at(text: str) -> At:
    match = _AT_RE.match(text)
    if match is None:
        raise _problem(text, "an at() expression reads at(yyyy-mm-ddThh:mm:ss).")
    try:
        when = datetime(*(int(part) for part in match.groups()))
    except ValueError as exc:
        raise _problem(text, f"not a date and time ({exc}).") from None
    return At(when, text)


def _parse_rate(text: str) -> Rate:
    match = _RATE_RE.match(text)
    if match is None:
        raise _problem(
            text,
            "a rate() expression reads rate(value unit), with a positive whole value and a "
            "unit of minute(s), hour(s) or day(s), separated by one space.",
        )
    value, unit = int(match.group(1)), match.group(2)
    if value < 1:
        raise _problem(text, "the value must be a positive whole number.")
    singular = unit.rstrip("s")
    if value == 1 and unit != singular:
        raise _problem(text, f"a value of 1 takes the singular unit: rate(1 {singular}).")
    if value > 1 and unit == singular:
        raise _problem(text, f"a value above 1 takes the plural unit: rate({value} {unit}s).")
    return Rate(value, singular, text)


def _parse_cron(text: str) -> Cron:
    if not text.endswith(")"):
        raise _problem(text, "a cron() expression ends with ')'.")
    fields = tuple(text[len("cron(") : -1].split())
    if len(fields) != 6:
        raise _problem(
            text,
            f"cron() takes six fields (minutes hours day-of-month month day-of-week year), "
            f"got {len(fields)}.",
        )
    day_of_month, day_of_week = fields[2], fields[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise _problem(
            text,
            "exactly one of day-of-month and day-of-week must be '?' (the other says which "
            "days), e.g. cron(0 12 * * ? *) or cron(0 12 ? * MON-FRI *).",
        )
    translated = [
        _plain(text, fields[0], 0),
        _plain(text, fields[1], 1),
        _day_of_month(text, day_of_month),
        _plain(text, fields[3], 3),
        _day_of_week(text, day_of_week),
        "0",  # croniter's seconds field: AWS runs on the minute
        _year(text, fields[5]),
    ]
    return Cron(fields, " ".join(translated), text)


def _value(text: str, index: int, token: str) -> int:
    """One value of field `index` (a number, or a month/day name), range-checked."""
    name, low, high, names = _FIELDS[index]
    upper = token.upper()
    if upper in names:
        return names.index(upper) + low
    if not token.isdigit():
        allowed = f" or {names[0]}-{names[-1]}" if names else ""
        raise _problem(text, f"{name} value {token!r} is not a number{allowed}.")
    value = int(token)
    if not low <= value <= high:
        raise _problem(text, f"{name} value {value} is out of range {low}-{high}.")
    return value


def _items(text: str, index: int, field: str, *, wrap: bool = False) -> list[tuple]:
    """(start, end, step) per comma-separated item; start None for '*'."""
    name, low, high, _ = _FIELDS[index]
    out = []
    for item in field.split(","):
        match = _ITEM_RE.match(item)
        if match is None:
            raise _problem(
                text,
                f"{name} item {item!r} is not a value, a range a-b, '*', or one of those "
                "with a step /n.",
            )
        first, last, step = match.groups()
        if first == "*" and last is not None:
            raise _problem(text, f"{name} item {item!r}: '*' takes no range.")
        start = None if first == "*" else _value(text, index, first)
        end = _value(text, index, last) if last is not None else None
        if start is not None and end is not None and end < start and not wrap:
            raise _problem(text, f"{name} range {item!r} runs backwards.")
        if step is not None and not 1 <= int(step) <= high - low + 1:
            raise _problem(text, f"{name} step /{step} must be between 1 and {high - low + 1}.")
        out.append((start, end, int(step) if step is not None else None))
    return out


def _render(items: list[tuple], shift: int = 0) -> str:
    parts = []
    for start, end, step in items:
        part = "*" if start is None else str(start + shift)
        if end is not None:
            part += f"-{end + shift}"
        if step is not None:
            part += f"/{step}"
        parts.append(part)
    return ",".join(parts)


def _plain(text: str, field: str, index: int) -> str:
    """minutes, hours, month or year: values, ranges, '*' and steps, nothing else."""
    specials = _specials(field)
    if specials:
        raise _problem(
            text, f"{_FIELDS[index][0]} takes , - * / only: {specials} are day-field wildcards."
        )
    return _render(_items(text, index, field))


def _specials(field: str) -> str:
    """The day-field wildcards (?, L, W, #) in a field, as "'L' and '#'" ('' if none)."""
    bare = re.sub("|".join(_MONTHS + _DAYS), "", field.upper())
    return " and ".join(repr(mark) for mark in ("?", "L", "W", "#") if mark in bare)


def _day_of_month(text: str, field: str) -> str:
    if field == "?":
        return "*"
    upper = field.upper()
    if upper == "L":
        return "l"
    if "#" in upper:
        raise _problem(text, "day-of-month takes no '#' (n#k is for day-of-week).")
    if "W" in upper or "L" in upper:
        match = re.fullmatch(r"(\d+)W", upper)
        if match is None or "," in upper:
            raise _problem(
                text,
                f"day-of-month {field!r}: 'L' (the last day) and 'nW' (the weekday nearest "
                "day n, e.g. 15W) each stand alone in the field.",
            )
        day = _value(text, 2, match.group(1))
        return f"{day}w"
    return _render(_items(text, 2, field))


def _day_of_week(text: str, field: str) -> str:
    if field == "?":
        return "*"
    upper = field.upper()
    if upper == "L":
        return "6"  # the last day of the week: SAT
    if "#" in upper:
        match = re.fullmatch(r"([A-Z0-9]+)#(\d+)", upper)
        if match is None:
            raise _problem(
                text,
                f"day-of-week {field!r}: '#' stands alone in the field, as day#k (3#2 is "
                "the second Tuesday of the month); a list such as 3#1,6#3 is not allowed.",
            )
        day = _value(text, 4, match.group(1))
        nth = int(match.group(2))
        if not 1 <= nth <= 5:
            raise _problem(text, f"day-of-week {field!r}: the k of day#k must be 1-5.")
        return f"{day - 1}#{nth}"
    if upper.endswith("L") and upper not in _DAYS:
        match = re.fullmatch(r"(\d)L", upper)
        if match is None:
            raise _problem(
                text,
                f"day-of-week {field!r}: 'L' stands alone (SAT), or after one day number "
                "(6L is the last Friday of the month).",
            )
        return f"l{_value(text, 4, match.group(1)) - 1}"
    if "W" in upper.replace("WED", "") or "?" in upper:
        raise _problem(text, f"day-of-week {field!r}: 'W' and a '?' in a list are not allowed.")
    # AWS counts 1 = SUN ... 7 = SAT; croniter 0 = SUN ... 6 = SAT.
    return _render(_items(text, 4, field, wrap=True), shift=-1)


def _year(text: str, field: str) -> str:
    _plain(text, field, 5)
    items = _items(text, 5, field)
    for start, end, _ in items:
        for value in (start, end):
            if value is not None and value > MAX_CRON_YEAR:
                raise _problem(
                    text,
                    f"year {value}: lambdakit computes cron() schedules up to "
                    f"{MAX_CRON_YEAR} (AWS accepts up to 2199).",
                )
    return _render(items)


def _wall_time(local: datetime, tz: ZoneInfo) -> datetime | None:
    """The aware instant of a wall time, fold 0 when repeated; None when it never happens."""
    aware = local.replace(tzinfo=tz)
    back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return aware if back == local else None


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{what} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} must be timezone-aware (e.g. tzinfo=datetime.timezone.utc)")
    return value


@dataclass(frozen=True)
class Timetable:
    """When a schedule runs: its expression, time zone, StartDate/EndDate and rate anchor.

    `start` and `end` bound cron() and rate() runs (start <= run < end); at() ignores them,
    as AWS does. `anchor` is where a rate() without `start` counts from.
    """

    expression: Expression
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    anchor: datetime | None = None

    def __post_init__(self) -> None:
        zone(self.timezone)
        for what in ("start", "end", "anchor"):
            value = getattr(self, what)
            if value is not None:
                # In UTC: arithmetic on a zone's datetimes is wall-clock arithmetic, and two
                # of the same zone compare without their offsets.
                object.__setattr__(self, what, _aware(value, what).astimezone(UTC))
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InvalidInput(
                f"EndDate {self.end.isoformat()} must come after StartDate "
                f"{self.start.isoformat()}."
            )

    @classmethod
    def parse(
        cls,
        expression: str,
        timezone: str = "UTC",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        anchor: datetime | None = None,
    ) -> Timetable:
        """A Timetable from an expression's text (InvalidInput names what is wrong)."""
        return cls(parse_expression(expression), timezone, start, end, anchor)

    @property
    def tz(self) -> ZoneInfo:
        """The schedule's time zone."""
        return zone(self.timezone)

    @property
    def recurring(self) -> bool:
        """True for rate() and cron(); at() runs once."""
        return not isinstance(self.expression, At)

    def runs(self, since: datetime) -> Iterator[datetime]:
        """Every run at or after `since`, in order, as aware datetimes in the schedule's zone."""
        since = _aware(since, "since").astimezone(UTC)
        expression = self.expression
        if isinstance(expression, At):
            when = expression.when.replace(tzinfo=self.tz)  # fold 0: see the module docstring
            if when >= since:
                yield when.astimezone(UTC).astimezone(self.tz)
            return
        if self.start is not None and since < self.start:
            since = self.start
        if isinstance(expression, Rate):
            yield from self._rate_runs(expression, since)
        else:
            yield from self._cron_runs(expression, since)

    def next_runs(self, n: int = 5, *, after: datetime | None = None) -> list[datetime]:
        """The next `n` runs at or after `after` (default now), in the schedule's zone."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInput(f"n must be a whole number >= 0, got {n!r}")
        since = after if after is not None else datetime.now(UTC)
        out: list[datetime] = []
        for run in self.runs(since):
            if len(out) == n:
                break
            out.append(run)
        return out

    def _rate_runs(self, rate: Rate, since: datetime) -> Iterator[datetime]:
        origin = self.start or self.anchor or since
        period = rate.period
        steps = 0 if since <= origin else -((origin - since) // period)  # ceiling division
        run = origin + steps * period
        tz = self.tz
        while self.end is None or run < self.end:
            yield run.astimezone(tz)
            run += period

    def _cron_runs(self, cron: Cron, since: datetime) -> Iterator[datetime]:
        tz = self.tz
        # Wall time is not monotonic across a change back; start early enough that no run
        # at or after `since` is passed over (no zone has shifted by more than 2 hours).
        wall = since.astimezone(tz).replace(tzinfo=None) - timedelta(hours=2, seconds=1)
        walker = croniter(cron.croniter_form, wall, ret_type=datetime)
        while True:
            try:
                local = walker.get_next()
            except CroniterBadDateError:
                return  # no date left that matches (the years given are over)
            run = _wall_time(local, tz)
            if run is None or run < since:
                continue
            if self.end is not None and run >= self.end:
                return
            yield run
