"""cairn.cron: parsing, field syntax, the dom/dow OR rule, seconds, time zones,
DST transitions, leap days, strictly-after semantics, errors, speed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from cairn.cron import Cron

UTC = UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def u(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(expr: str, after: datetime, n: int, tz: str = "UTC") -> list[datetime]:
    cron = Cron.parse(expr, tz)
    out = []
    for _ in range(n):
        after = cron.next_after(after)
        out.append(after)
    return out


# -- parsing and basics ------------------------------------------------------


def test_parse_attributes_and_str() -> None:
    c = Cron.parse("  0   3 * *  *  ", "Europe/Paris")
    assert c.expression == "0 3 * * *"
    assert c.timezone == "Europe/Paris"
    assert str(c) == "0 3 * * * (Europe/Paris)"
    assert eval(repr(c), {"Cron": Cron}) == c
    assert Cron.parse("* * * * *").timezone == "UTC"


def test_result_is_utc_and_aware() -> None:
    r = Cron.parse("0 3 * * *", "Europe/Paris").next_after(u(2025, 1, 1))
    assert r.tzinfo is UTC
    assert r == u(2025, 1, 1, 2)


def test_five_fields_fire_at_second_zero() -> None:
    assert fires("* * * * *", u(2025, 1, 1, 12, 0, 30), 2) == [u(2025, 1, 1, 12, 1), u(2025, 1, 1, 12, 2)]


def test_star() -> None:
    assert fires("* * * * * *", u(2025, 1, 1, 12), 3) == [
        u(2025, 1, 1, 12, 0, 1),
        u(2025, 1, 1, 12, 0, 2),
        u(2025, 1, 1, 12, 0, 3),
    ]


def test_numbers() -> None:
    assert fires("30 14 * * *", u(2025, 1, 1), 2) == [u(2025, 1, 1, 14, 30), u(2025, 1, 2, 14, 30)]


def test_range() -> None:
    assert fires("0 9-11 * * *", u(2025, 1, 1), 4) == [
        u(2025, 1, 1, 9),
        u(2025, 1, 1, 10),
        u(2025, 1, 1, 11),
        u(2025, 1, 2, 9),
    ]


def test_star_step() -> None:
    assert fires("*/20 * * * *", u(2025, 1, 1, 12, 5), 4) == [
        u(2025, 1, 1, 12, 20),
        u(2025, 1, 1, 12, 40),
        u(2025, 1, 1, 13, 0),
        u(2025, 1, 1, 13, 20),
    ]


def test_range_step() -> None:
    assert fires("10-30/10 * * * *", u(2025, 1, 1, 12), 4) == [
        u(2025, 1, 1, 12, 10),
        u(2025, 1, 1, 12, 20),
        u(2025, 1, 1, 12, 30),
        u(2025, 1, 1, 13, 10),
    ]


def test_start_step_runs_to_field_max() -> None:
    assert fires("45/5 * * * *", u(2025, 1, 1, 12), 4) == [
        u(2025, 1, 1, 12, 45),
        u(2025, 1, 1, 12, 50),
        u(2025, 1, 1, 12, 55),
        u(2025, 1, 1, 13, 45),
    ]


def test_list_with_mixed_items() -> None:
    assert fires("0 1,5-6,20/2 * * *", u(2025, 1, 1), 7) == [u(2025, 1, 1, h) for h in (1, 5, 6, 20, 22)] + [
        u(2025, 1, 2, 1),
        u(2025, 1, 2, 5),
    ]


def test_month_names_case_insensitive() -> None:
    assert fires("0 0 1 jan,Jul-AUG *", u(2025, 3, 1), 3) == [u(2025, 7, 1), u(2025, 8, 1), u(2026, 1, 1)]


def test_day_names_case_insensitive() -> None:
    # 2025-01-01 is a Wednesday.
    assert fires("0 0 * * mon-Wed,SAT", u(2025, 1, 1), 4) == [
        u(2025, 1, 4),
        u(2025, 1, 6),
        u(2025, 1, 7),
        u(2025, 1, 8),
    ]


@pytest.mark.parametrize("dow", ["0", "7", "SUN", "sun"])
def test_sunday_is_0_and_7(dow: str) -> None:
    assert fires(f"0 0 * * {dow}", u(2025, 1, 1), 2) == [u(2025, 1, 5), u(2025, 1, 12)]


def test_dow_range_ending_at_7() -> None:
    # Fri 3, Sat 4, Sun 5, then Fri 10.
    assert fires("0 0 * * 5-7", u(2025, 1, 1), 4) == [
        u(2025, 1, 3),
        u(2025, 1, 4),
        u(2025, 1, 5),
        u(2025, 1, 10),
    ]


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros(macro: str, equivalent: str) -> None:
    start = u(2025, 5, 17, 13, 27)
    assert fires(macro, start, 3) == fires(equivalent, start, 3)


def test_macro_values() -> None:
    after = u(2025, 5, 17, 13, 27)
    assert Cron.parse("@yearly").next_after(after) == u(2026, 1, 1)
    assert Cron.parse("@monthly").next_after(after) == u(2025, 6, 1)
    assert Cron.parse("@weekly").next_after(after) == u(2025, 5, 18)
    assert Cron.parse("@daily").next_after(after) == u(2025, 5, 18)
    assert Cron.parse("@hourly").next_after(after) == u(2025, 5, 17, 14)


def test_rollover_year_end() -> None:
    assert Cron.parse("59 23 31 12 *").next_after(u(2025, 12, 31, 23, 59)) == u(2026, 12, 31, 23, 59)
    assert Cron.parse("0 0 1 1 *").next_after(u(2025, 12, 31, 23, 59, 59)) == u(2026, 1, 1)


def test_dom_31_skips_short_months() -> None:
    assert fires("0 0 31 * *", u(2025, 1, 31), 3) == [u(2025, 3, 31), u(2025, 5, 31), u(2025, 7, 31)]


# -- day-of-month / day-of-week rule -----------------------------------------


def test_dom_and_dow_both_restricted_is_or() -> None:
    # The 13th OR any Friday. 2025-06: Fridays 6, 13, 20, 27; 13th is a Friday too.
    assert fires("0 0 13 * 5", u(2025, 6, 1), 5) == [
        u(2025, 6, 6),
        u(2025, 6, 13),
        u(2025, 6, 20),
        u(2025, 6, 27),
        u(2025, 7, 4),
    ]
    # 2025-07-13 is a Sunday: still fires through day-of-month.
    assert fires("0 0 13 * 5", u(2025, 7, 5), 2) == [u(2025, 7, 11), u(2025, 7, 13)]


def test_only_dom_restricted() -> None:
    assert fires("0 0 13 * *", u(2025, 6, 1), 2) == [u(2025, 6, 13), u(2025, 7, 13)]


def test_only_dow_restricted() -> None:
    assert fires("0 0 * * FRI", u(2025, 6, 1), 2) == [u(2025, 6, 6), u(2025, 6, 13)]


def test_dom_and_dow_with_steps_are_or() -> None:
    # Neither field is literally '*', so OR: 1st, 16th, 31st of the month or any Monday.
    assert fires("0 0 1-31/15 * MON", u(2025, 6, 1), 5) == [
        u(2025, 6, 2),
        u(2025, 6, 9),
        u(2025, 6, 16),
        u(2025, 6, 23),
        u(2025, 6, 30),
    ]


# -- seconds -------------------------------------------------------------------


def test_six_fields_seconds_first() -> None:
    assert fires("*/2 * * * * *", u(2025, 1, 1, 12), 2) == [u(2025, 1, 1, 12, 0, 2), u(2025, 1, 1, 12, 0, 4)]


def test_six_fields_all_positions() -> None:
    assert Cron.parse("15 30 6 * * *").next_after(u(2025, 1, 1)) == u(2025, 1, 1, 6, 30, 15)
    assert fires("0,30 * * * * *", u(2025, 1, 1, 12, 0, 45), 2) == [
        u(2025, 1, 1, 12, 1),
        u(2025, 1, 1, 12, 1, 30),
    ]


def test_seconds_roll_over_minute_hour_day() -> None:
    assert Cron.parse("* * * * * *").next_after(u(2025, 12, 31, 23, 59, 59)) == u(2026, 1, 1)


# -- strictly after ----------------------------------------------------------------


def test_after_exactly_on_fire_time_returns_next() -> None:
    c = Cron.parse("0 12 * * *")
    assert c.next_after(u(2025, 1, 1, 12)) == u(2025, 1, 2, 12)
    assert c.next_after(u(2025, 1, 1, 11, 59, 59, 999999)) == u(2025, 1, 1, 12)


def test_sub_second_after() -> None:
    c = Cron.parse("* * * * * *")
    assert c.next_after(u(2025, 1, 1, 12, 0, 0, 1)) == u(2025, 1, 1, 12, 0, 1)
    assert c.next_after(u(2025, 1, 1, 12, 0, 0, 999999)) == u(2025, 1, 1, 12, 0, 1)


# -- time zones ----------------------------------------------------------------------


def test_paris_summer_and_winter() -> None:
    c = Cron.parse("0 3 * * *", "Europe/Paris")
    assert c.next_after(u(2025, 7, 1)) == u(2025, 7, 1, 1)  # CEST, UTC+2
    assert c.next_after(u(2025, 1, 15)) == u(2025, 1, 15, 2)  # CET, UTC+1


def test_after_in_any_zone() -> None:
    c = Cron.parse("0 3 * * *", "Europe/Paris")
    # 2025-07-01 02:30 in New York is 06:30 UTC, past 01:00 UTC: next day.
    assert c.next_after(datetime(2025, 6, 30, 22, 30, tzinfo=NEW_YORK)) == u(2025, 7, 2, 1)
    tokyo = timezone(timedelta(hours=9))
    assert c.next_after(datetime(2025, 7, 1, 9, 0, tzinfo=tokyo)) == u(2025, 7, 1, 1)  # = 00:00 UTC


def test_new_york_offsets() -> None:
    c = Cron.parse("30 8 * * MON-FRI", "America/New_York")
    assert c.next_after(u(2025, 7, 4, 13)) == u(2025, 7, 7, 12, 30)  # EDT, UTC-4
    assert c.next_after(u(2025, 1, 3, 14)) == u(2025, 1, 6, 13, 30)  # EST, UTC-5


# -- DST transitions -------------------------------------------------------------------


def test_paris_spring_forward_skips_missing_time() -> None:
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    c = Cron.parse("30 2 * * *", "Europe/Paris")
    assert fires("30 2 * * *", u(2025, 3, 28, 12), 3, "Europe/Paris") == [
        u(2025, 3, 29, 1, 30),
        u(2025, 3, 31, 0, 30),
        u(2025, 4, 1, 0, 30),
    ]
    assert c.next_after(u(2025, 3, 29, 1, 30)) == u(2025, 3, 31, 0, 30)


def test_paris_spring_forward_every_minute_resumes_after_gap() -> None:
    # 01:59 CET = 00:59 UTC; next wall-clock time that exists is 03:00 CEST = 01:00 UTC.
    assert fires("* * * * *", u(2025, 3, 30, 0, 58), 3, "Europe/Paris") == [
        u(2025, 3, 30, 0, 59),
        u(2025, 3, 30, 1, 0),
        u(2025, 3, 30, 1, 1),
    ]
    assert fires("*/30 * * * * *", u(2025, 3, 30, 0, 59, 30), 2, "Europe/Paris") == [
        u(2025, 3, 30, 1, 0),
        u(2025, 3, 30, 1, 0, 30),
    ]


def test_paris_spring_forward_hourly() -> None:
    assert fires("0 * * * *", u(2025, 3, 29, 23, 30), 4, "Europe/Paris") == [
        u(2025, 3, 30, 0),
        u(2025, 3, 30, 1),
        u(2025, 3, 30, 2),
        u(2025, 3, 30, 3),
    ]  # 01, 03, 04, 05 local


def test_paris_fall_back_fires_once() -> None:
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    c = Cron.parse("30 2 * * *", "Europe/Paris")
    first = c.next_after(u(2025, 10, 25, 12))
    assert first == u(2025, 10, 26, 0, 30)  # 02:30 CEST (fold=0)
    assert c.next_after(first) == u(2025, 10, 27, 1, 30)  # not again at 01:30 UTC
    # Asked from inside the repeated hour (02:15 CET = 01:15 UTC): already fired.
    assert c.next_after(u(2025, 10, 26, 1, 15)) == u(2025, 10, 27, 1, 30)


def test_paris_fall_back_hourly() -> None:
    # 02:00 CEST, then 03:00 CET (the repeated 02:00 CET does not fire), 04:00, 05:00.
    assert fires("0 * * * *", u(2025, 10, 25, 23, 30), 4, "Europe/Paris") == [
        u(2025, 10, 26, 0),
        u(2025, 10, 26, 2),
        u(2025, 10, 26, 3),
        u(2025, 10, 26, 4),
    ]


def test_new_york_spring_forward() -> None:
    # 2025-03-09: 02:00 EST jumps to 03:00 EDT.
    assert fires("30 2 * * *", u(2025, 3, 8, 5), 2, "America/New_York") == [
        u(2025, 3, 8, 7, 30),
        u(2025, 3, 10, 6, 30),
    ]
    assert fires("* * * * *", u(2025, 3, 9, 6, 58), 3, "America/New_York") == [
        u(2025, 3, 9, 6, 59),
        u(2025, 3, 9, 7, 0),
        u(2025, 3, 9, 7, 1),
    ]  # 01:59 EST, 03:00 EDT


def test_new_york_fall_back() -> None:
    # 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:xx happens twice.
    c = Cron.parse("45 1 * * *", "America/New_York")
    assert c.next_after(u(2025, 11, 1, 12)) == u(2025, 11, 2, 5, 45)  # 01:45 EDT
    assert c.next_after(u(2025, 11, 2, 5, 45)) == u(2025, 11, 3, 6, 45)  # next day, EST
    assert c.next_after(u(2025, 11, 2, 6, 30)) == u(2025, 11, 3, 6, 45)  # from 01:30 EST
    # Every minute: the repeated hour (06:00-06:59 UTC) is skipped; no duplicates, no crash.
    got = fires("* * * * *", u(2025, 11, 2, 5, 58), 3, "America/New_York")
    assert got == [u(2025, 11, 2, 5, 59), u(2025, 11, 2, 7, 0), u(2025, 11, 2, 7, 1)]


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York"])
@pytest.mark.parametrize("expr", ["* * * * *", "*/7 * * * * *", "0 * * * *", "30 1-3 * * *", "@daily"])
def test_dst_days_strictly_increasing(tz: str, expr: str) -> None:
    for start in (u(2025, 3, 8, 20), u(2025, 3, 29, 20), u(2025, 10, 25, 20), u(2025, 11, 1, 20)):
        times = fires(expr, start, 200, tz)
        assert times[0] > start
        assert all(a < b for a, b in zip(times, times[1:]))
        walls = [t.astimezone(ZoneInfo(tz)).replace(tzinfo=None) for t in times]
        assert len(set(walls)) == len(walls)  # an ambiguous wall-clock time fires once
        assert Cron.parse(expr, tz).next_after(times[-1] - timedelta(microseconds=1)) == times[-1]


# -- leap day and impossible dates ----------------------------------------------------


def test_leap_day() -> None:
    assert fires("0 0 29 2 *", u(2025, 1, 1), 2) == [u(2028, 2, 29), u(2032, 2, 29)]
    assert Cron.parse("0 0 29 2 *").next_after(u(2024, 2, 28, 12)) == u(2024, 2, 29)


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_impossible_date_is_refused_when_parsed(expr: str) -> None:
    # Refused up front, so a schedule that could never fire is INVALID_ARGUMENT
    # at CreateSchedule/RegisterWorker rather than an error when history plans it.
    with pytest.raises(ValueError, match=r"never fires: none of its months has day 3[01]"):
        Cron.parse(expr)


def test_far_future_does_not_overflow() -> None:
    with pytest.raises(ValueError):
        Cron.parse("0 0 30 2 *").next_after(datetime(9999, 12, 31, tzinfo=UTC))


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "cron: minute field '61' is out of range 0-59"),
        ("* 24 * * *", "cron: hour field '24' is out of range 0-23"),
        ("* * 0 * *", "cron: day-of-month field '0' is out of range 1-31"),
        ("* * 32 * *", "cron: day-of-month field '32' is out of range 1-31"),
        ("* * * 13 *", "cron: month field '13' is out of range 1-12"),
        ("* * * * 8", "cron: day-of-week field '8' is out of range 0-7"),
        ("60 * * * * *", "cron: second field '60' is out of range 0-59"),
        ("* * *", "cron: expected 5 or 6 fields, got 3"),
        ("", "cron: expected 5 or 6 fields, got 0"),
        ("* * * * * * *", "cron: expected 5 or 6 fields, got 7"),
        ("x * * * *", "cron: minute field 'x' is not a number"),
        ("* * * FOO *", "cron: month field 'FOO' is not a number or name"),
        ("* * * * MONDAY", "cron: day-of-week field 'MONDAY' is not a number or name"),
        ("* JAN * * *", "cron: hour field 'JAN' is not a number"),
        ("*/0 * * * *", "cron: minute field '*/0' has step 0"),
        ("*/x * * * *", "cron: minute field '*/x' has an invalid step"),
        ("*/ * * * *", "cron: minute field '*/' has an invalid step"),
        ("* 5-3 * * *", "cron: hour field '5-3' is a backwards range"),
        ("* 5- * * *", "cron: hour field '5-' is not a valid range"),
        ("1,,2 * * * *", "cron: minute field '1,,2' has an empty list item"),
        ("/5 * * * *", "cron: minute field '/5' is missing a value"),
        ("-5 * * * *", "cron: minute field '-5' is not a valid range"),
        ("@reboot", "cron: unknown macro '@reboot'"),
        ("* * * * * 1-9", "cron: day-of-week field '9' is out of range 0-7"),
    ],
)
def test_invalid_expressions(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Cron.parse(expr)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("tz", ["Mars/Base", "", "../etc/passwd", "Europe"])
def test_unknown_time_zone(tz: str) -> None:
    with pytest.raises(ValueError) as info:
        Cron.parse("* * * * *", tz)
    assert str(info.value) == f"timezone: unknown time zone {tz!r}"


def test_naive_after_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Cron.parse("* * * * *").next_after(datetime(2025, 1, 1))


def test_non_string_expression_raises() -> None:
    with pytest.raises(ValueError):
        Cron.parse(None)  # type: ignore[arg-type]


def test_constructor_is_private() -> None:
    with pytest.raises(TypeError):
        Cron()


# -- performance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "tz"),
    [
        ("* * * * * *", "UTC"),
        ("0 0 29 2 *", "UTC"),
        ("0 0 29 2 *", "America/New_York"),
        ("* * * * * *", "Europe/Paris"),
    ],
)
def test_fast(expr: str, tz: str) -> None:
    c = Cron.parse(expr, tz)
    after = u(2025, 3, 1)
    c.next_after(after)  # warm up the zone cache
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        c.next_after(after)
    assert (time.perf_counter() - t0) / n < 0.005
