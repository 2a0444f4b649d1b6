"""Schedule expressions: AWS's cron dialect against Unix cron's, time zones, DST, bounds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lambdakit.errors import InvalidInput
from lambdakit.expressions import At, Cron, Rate, Timetable, parse_expression, zone

UTC = timezone.utc


def runs(expression, n=4, *, after, tz="UTC", **bounds):
    table = Timetable.parse(expression, tz, **bounds)
    return [run.isoformat() for run in table.next_runs(n, after=after)]


def utc(*parts):
    return datetime(*parts, tzinfo=UTC)


# -- Europe/Berlin across both changes of 2025, written by hand --------------------------
# Clocks go 02:00 CET -> 03:00 CEST on 30 March, and 03:00 CEST -> 02:00 CET on 26 October.


def test_a_daily_run_in_the_skipped_hour_is_skipped_on_the_spring_change():
    assert runs("cron(30 2 * * ? *)", after=utc(2025, 3, 28), tz="Europe/Berlin") == [
        "2025-03-28T02:30:00+01:00",
        "2025-03-29T02:30:00+01:00",
        # 30 March 02:30 does not exist in Berlin: no run that day
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
    ]


def test_a_daily_run_in_the_repeated_hour_runs_once_on_the_autumn_change():
    assert runs("cron(30 2 * * ? *)", after=utc(2025, 10, 25), tz="Europe/Berlin") == [
        "2025-10-25T02:30:00+02:00",
        "2025-10-26T02:30:00+02:00",  # the first 02:30 only (00:30Z), not again at 01:30Z
        "2025-10-27T02:30:00+01:00",
        "2025-10-28T02:30:00+01:00",
    ]


def test_an_hourly_cron_across_both_changes():
    spring = Timetable.parse("cron(0 * * * ? *)", "Europe/Berlin")
    first = spring.next_runs(3, after=utc(2025, 3, 30))
    got = [r.astimezone(UTC).strftime("%H:%MZ") for r in first]
    assert got == ["00:00Z", "01:00Z", "02:00Z"]  # 01:00 CET, 03:00 CEST, 04:00 CEST
    autumn = spring.next_runs(4, after=utc(2025, 10, 25, 23))
    assert [r.isoformat() for r in autumn] == [
        "2025-10-26T01:00:00+02:00",
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T03:00:00+01:00",  # two hours after the last: 02:00 CET was not run again
        "2025-10-26T04:00:00+01:00",
    ]


def test_a_morning_run_keeps_its_wall_time_so_its_utc_time_moves():
    got = Timetable.parse("cron(0 9 * * ? *)", "Europe/Berlin").next_runs(
        3, after=utc(2025, 3, 29, 9)
    )
    assert [r.astimezone(UTC).isoformat() for r in got] == [
        "2025-03-30T07:00:00+00:00",
        "2025-03-31T07:00:00+00:00",
        "2025-04-01T07:00:00+00:00",
    ]
    assert runs("cron(0 9 * * ? *)", 1, after=utc(2025, 3, 29, 7), tz="Europe/Berlin") == [
        "2025-03-29T09:00:00+01:00"
    ]


def test_rate_days_are_24_hours_whatever_the_zone():
    anchor = utc(2025, 3, 29, 1)  # 02:00 CET
    assert runs("rate(1 day)", 3, after=anchor, tz="Europe/Berlin", anchor=anchor) == [
        "2025-03-29T02:00:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T03:00:00+02:00",
    ]


def test_at_reads_the_wall_time_of_its_zone_and_moves_out_of_the_skipped_hour():
    assert runs("at(2025-07-01T08:00:00)", after=utc(2025, 1, 1), tz="Europe/Berlin") == [
        "2025-07-01T08:00:00+02:00"
    ]
    assert runs("at(2025-03-30T02:30:00)", after=utc(2025, 1, 1), tz="Europe/Berlin") == [
        "2025-03-30T03:30:00+02:00"
    ]
    # The repeated hour: its first occurrence (CEST).
    assert runs("at(2025-10-26T02:30:00)", after=utc(2025, 1, 1), tz="Europe/Berlin") == [
        "2025-10-26T02:30:00+02:00"
    ]


# -- AWS's dialect where Unix cron differs ------------------------------------------------


def test_day_of_week_1_is_sunday_not_monday():
    # Unix cron's `0 12 * * 1` runs on Mondays; AWS's 1 is SUN.
    assert runs("cron(0 12 ? * 1 *)", 2, after=utc(2025, 6, 1)) == [
        "2025-06-01T12:00:00+00:00",  # a Sunday
        "2025-06-08T12:00:00+00:00",
    ]
    weekdays = Timetable.parse("cron(0 12 ? * 2-6 *)").next_runs(7, after=utc(2025, 6, 1))
    assert [d.strftime("%a") for d in weekdays] == [
        "Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"
    ]  # fmt: skip
    saturday = Timetable.parse("cron(0 12 ? * 7 *)").next_runs(1, after=utc(2025, 6, 1))
    assert saturday[0].strftime("%a %F") == "Sat 2025-06-07"
    names = Timetable.parse("cron(0 12 ? * sun,sat *)").next_runs(2, after=utc(2025, 6, 2))
    assert [d.strftime("%a") for d in names] == ["Sat", "Sun"]


def test_one_day_field_must_be_a_question_mark():
    # Unix cron accepts `* *` in both day fields; AWS refuses both set and both '?'.
    for text in ("cron(0 12 * * * *)", "cron(0 12 1 * MON *)", "cron(0 12 ? * ? *)"):
        with pytest.raises(InvalidInput, match="exactly one of day-of-month and day-of-week"):
            parse_expression(text)
    assert isinstance(parse_expression("cron(0 12 * * ? *)"), Cron)
    assert isinstance(parse_expression("cron(0 12 ? * * *)"), Cron)


def test_the_year_field_bounds_the_runs():
    assert runs("cron(0 12 1 1 ? 2026)", after=utc(2025, 1, 1)) == ["2026-01-01T12:00:00+00:00"]
    assert runs("cron(0 12 1 1 ? 2026-2027)", after=utc(2025, 1, 1)) == [
        "2026-01-01T12:00:00+00:00",
        "2027-01-01T12:00:00+00:00",
    ]
    assert runs("cron(0 12 1 1 ? 2024)", after=utc(2025, 1, 1)) == []


def test_five_unix_fields_are_refused_naming_the_six():
    with pytest.raises(InvalidInput, match=r"six fields .* got 5"):
        parse_expression("cron(0 12 * * 1)")


def test_l_w_and_hash():
    assert runs("cron(0 12 L 2 ? 2024-2025)", after=utc(2024, 1, 1)) == [
        "2024-02-29T12:00:00+00:00",
        "2025-02-28T12:00:00+00:00",
    ]
    # L alone in day-of-week is its last day, Saturday; 6L the last Friday of the month.
    assert runs("cron(0 12 ? * L *)", 1, after=utc(2025, 6, 2)) == ["2025-06-07T12:00:00+00:00"]
    assert runs("cron(0 12 ? * 6L *)", 2, after=utc(2025, 6, 1)) == [
        "2025-06-27T12:00:00+00:00",
        "2025-07-25T12:00:00+00:00",
    ]
    # 3#2: the second Tuesday (3 = TUE when 1 = SUN).
    assert runs("cron(0 12 ? * 3#2 *)", 2, after=utc(2025, 6, 1)) == [
        "2025-06-10T12:00:00+00:00",
        "2025-07-08T12:00:00+00:00",
    ]
    # 15W: the weekday nearest the 15th (15 June 2025 is a Sunday -> Monday the 16th);
    # 1W never leaves the month (1 June 2024 is a Saturday -> Monday the 3rd).
    assert runs("cron(0 12 15W * ? *)", 1, after=utc(2025, 6, 1)) == ["2025-06-16T12:00:00+00:00"]
    assert runs("cron(0 12 1W * ? *)", 1, after=utc(2024, 5, 2)) == ["2024-06-03T12:00:00+00:00"]


def test_steps_ranges_lists_and_month_names():
    assert runs("cron(1/20 10 * * ? *)", 3, after=utc(2025, 6, 1)) == [
        "2025-06-01T10:01:00+00:00",
        "2025-06-01T10:21:00+00:00",
        "2025-06-01T10:41:00+00:00",
    ]
    assert runs("cron(0 8-9,17 1 JAN,jul ? *)", 4, after=utc(2025, 6, 1)) == [
        "2025-07-01T08:00:00+00:00",
        "2025-07-01T09:00:00+00:00",
        "2025-07-01T17:00:00+00:00",
        "2026-01-01T08:00:00+00:00",
    ]
    # A day-of-week range may wrap past Saturday: FRI-MON.
    wrap = Timetable.parse("cron(0 12 ? * FRI-MON *)").next_runs(5, after=utc(2025, 6, 2))
    assert [d.strftime("%a") for d in wrap] == ["Mon", "Fri", "Sat", "Sun", "Mon"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cron(0 25 * * ? *)", "hours value 25 is out of range 0-23"),
        ("cron(60 * * * ? *)", "minutes value 60 is out of range 0-59"),
        ("cron(0 12 32 * ? *)", "day-of-month value 32 is out of range 1-31"),
        ("cron(0 12 ? * 8 *)", "day-of-week value 8 is out of range 1-7"),
        ("cron(0 12 ? * 0 *)", "day-of-week value 0 is out of range 1-7"),
        ("cron(0 12 * 13 ? *)", "month value 13 is out of range 1-12"),
        ("cron(0 12 * * ? 1969)", "year value 1969 is out of range 1970-2199"),
        ("cron(0 12 * * ? 2150)", "up to 2099"),
        ("cron(0 12 ? * 3#1,6#3 *)", "'#' stands alone"),
        ("cron(0 12 ? * 3#6 *)", "k of day#k must be 1-5"),
        ("cron(0 12 LW * ? *)", "each stand alone"),
        ("cron(0 L * * ? *)", "hours takes , - \\* / only"),
        ("cron(0 12 1#2 * ? *)", "day-of-month takes no '#'"),
        ("cron(5-1 * * * ? *)", "runs backwards"),
        ("cron(0/61 * * * ? *)", "step /61"),
        ("cron(0 12 * * ? *", "ends with '\\)'"),
        ("cron(a 12 * * ? *)", "minutes value 'a' is not a number"),
        ("rate(1 minutes)", "singular unit: rate\\(1 minute\\)"),
        ("rate(5 minute)", "plural unit: rate\\(5 minutes\\)"),
        ("rate(0 hours)", "positive whole number"),
        ("rate(5 weeks)", "minute\\(s\\), hour\\(s\\) or day\\(s\\)"),
        ("rate(1.5 hours)", "positive whole value"),
        ("at(2025-02-30T00:00:00)", "not a date and time"),
        ("at(2025-06-01 08:00:00)", "at\\(yyyy-mm-ddThh:mm:ss\\)"),
        ("every day at 2", "expected at\\(yyyy-mm-ddThh:mm:ss\\), rate\\(value unit\\) or cron"),
        ("", "non-empty string"),
    ],
)
def test_malformed_expressions_are_refused_naming_the_problem(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_expression(text)


def test_expression_kinds():
    assert isinstance(parse_expression("at(2025-06-01T08:00:00)"), At)
    rate = parse_expression("rate(90 minutes)")
    assert isinstance(rate, Rate) and rate.period == timedelta(minutes=90)
    assert str(rate) == "rate(90 minutes)"


def test_unknown_time_zones_are_refused():
    assert zone("Europe/Berlin").key == "Europe/Berlin"
    for name in ("Mars/Olympus", "Europe", "../etc/passwd", "", "x" * 51):
        with pytest.raises(InvalidInput, match="ScheduleExpressionTimezone"):
            zone(name)
    with pytest.raises(InvalidInput, match="Mars/Olympus"):
        Timetable.parse("rate(1 hour)", "Mars/Olympus")


def test_start_and_end_bound_recurring_runs_but_not_at():
    start, end = utc(2025, 6, 1, 12, 30), utc(2025, 6, 1, 14, 0)
    assert runs("cron(0 * * * ? *)", 5, after=utc(2025, 6, 1), start=start, end=end) == [
        "2025-06-01T13:00:00+00:00"  # 14:00 is not before EndDate
    ]
    # rate() counts from StartDate.
    assert runs("rate(30 minutes)", 5, after=utc(2025, 6, 1), start=start, end=end) == [
        "2025-06-01T12:30:00+00:00",
        "2025-06-01T13:00:00+00:00",
        "2025-06-01T13:30:00+00:00",
    ]
    assert runs("at(2025-01-01T00:00:00)", after=utc(2024, 1, 1), start=start, end=end) == [
        "2025-01-01T00:00:00+00:00"
    ]
    with pytest.raises(InvalidInput, match="must come after StartDate"):
        Timetable.parse("rate(1 hour)", start=end, end=start)


def test_rate_counts_from_its_anchor_and_bounds_in_another_zone_compare_by_instant():
    berlin = zone("Europe/Berlin")
    anchor = datetime(2025, 10, 26, 1, 30, tzinfo=berlin)  # CEST, before the change back
    table = Timetable.parse("rate(1 hour)", "Europe/Berlin", anchor=anchor)
    got = table.next_runs(3, after=datetime(2025, 10, 26, 2, 0, tzinfo=berlin))
    assert [r.isoformat() for r in got] == [
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:30:00+01:00",  # the repeated hour: an hour later, same wall time
        "2025-10-26T03:30:00+01:00",
    ]


def test_next_runs_wants_an_aware_after_and_a_count():
    table = Timetable.parse("rate(1 hour)")
    with pytest.raises(InvalidInput, match="timezone-aware"):
        table.next_runs(1, after=datetime(2025, 1, 1))
    with pytest.raises(InvalidInput, match="n must be"):
        table.next_runs(-1, after=utc(2025, 1, 1))
    assert table.next_runs(0, after=utc(2025, 1, 1)) == []
    # Without after=, from now; without StartDate or anchor, a rate() runs from then on.
    first = table.next_runs(1)[0]
    assert abs((first - datetime.now(UTC)).total_seconds()) < 60
