"""Cron expressions evaluated in a time zone (standard library only).

    >>> c = Cron.parse("0 3 * * *", "Europe/Paris")
    >>> c.next_after(datetime(2025, 7, 1, tzinfo=timezone.utc))
    datetime.datetime(2025, 7, 1, 1, 0, tzinfo=datetime.timezone.utc)

Syntax: 5 fields ``minute hour day-of-month month day-of-week`` (the second is
0) or 6 fields with the second first ``second minute hour dom month dow``.
Each field is a comma-separated list of items; an item is ``*``, a number
``a``, a range ``a-b``, or one of those followed by a step ``/n`` (``a/n``
means ``a`` to the field's maximum).  Months accept JAN-DEC and days SUN-SAT
(case-insensitive); day-of-week is 0-7 where both 0 and 7 are Sunday.
Macros: @yearly/@annually, @monthly, @weekly, @daily/@midnight, @hourly.

Day rule (as in classic cron): if both day-of-month and day-of-week are
restricted (neither field is exactly ``*``), a day matches when EITHER
matches; otherwise both must match.

Time zones: candidates are local wall-clock times in the cron's zone, mapped
to UTC with ``fold=0``.
  * A wall-clock time that does not exist (in a spring-forward gap) is skipped:
    "30 2 * * *" does not fire on that day; "* * * * *" resumes at the first
    wall-clock time after the gap.
  * A wall-clock time that occurs twice (fall back) fires once, at its first
    occurrence (``fold=0``); the repeated wall-clock times do not fire again.
"""

from __future__ import annotations

import zoneinfo
from bisect import bisect_left
from datetime import UTC, date, datetime, timedelta, tzinfo

__all__ = ["Cron"]

# Days of each month in the longest year (February 29 exists in leap years).
_LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
# Search horizon of next_after, in years past the starting point.
_MAX_YEARS = 5

_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAY_NAMES = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# (name, low, high, names) per field, in 6-field order.
# A field: its name, lowest and highest value, and the names it accepts for values.
_Spec = tuple[str, int, int, dict[str, int] | None]
_SECOND: _Spec = ("second", 0, 59, None)
_MINUTE: _Spec = ("minute", 0, 59, None)
_HOUR: _Spec = ("hour", 0, 23, None)
_DOM: _Spec = ("day-of-month", 1, 31, None)
_MONTH: _Spec = ("month", 1, 12, _MONTH_NAMES)
_DOW: _Spec = ("day-of-week", 0, 7, _DAY_NAMES)

_ONE_SECOND = timedelta(seconds=1)


def _parse_value(text: str, item: str, spec: _Spec) -> int:
    name, low, high, names = spec
    if text.isascii() and text.isdigit():
        value = int(text)
    elif names is not None and text.upper() in names:
        value = names[text.upper()]
    else:
        kind = "a number or name" if names is not None else "a number"
        raise ValueError(f"cron: {name} field '{item}' is not {kind}")
    if not low <= value <= high:
        raise ValueError(f"cron: {name} field '{text}' is out of range {low}-{high}")
    return value


def _parse_field(field: str, spec: _Spec) -> tuple[int, ...]:
    name, low, high, _ = spec
    values: set[int] = set()
    for item in field.split(","):
        if not item:
            raise ValueError(f"cron: {name} field '{field}' has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()):
                raise ValueError(f"cron: {name} field '{item}' has an invalid step")
            step = int(step_text)
            if step < 1:
                raise ValueError(f"cron: {name} field '{item}' has step 0; the step must be at least 1")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            if not a or not b:
                raise ValueError(f"cron: {name} field '{item}' is not a valid range")
            start, end = _parse_value(a, item, spec), _parse_value(b, item, spec)
            if start > end:
                raise ValueError(f"cron: {name} field '{item}' is a backwards range")
        elif base:
            start = _parse_value(base, item, spec)
            end = high if slash else start
        else:
            raise ValueError(f"cron: {name} field '{item}' is missing a value")
        values.update(range(start, end + 1, step))
    if spec is _DOW and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


def _load_zone(name: str) -> tzinfo:
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone: unknown time zone {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        if name == "UTC":  # no tz database on this machine; UTC needs none
            return UTC
        raise ValueError(f"timezone: unknown time zone {name!r}") from exc


def _next_in(values: tuple[int, ...], current: int) -> int | None:
    """The smallest value >= current, or None."""
    i = bisect_left(values, current)
    return values[i] if i < len(values) else None


class Cron:
    """A parsed cron expression in a time zone."""

    __slots__ = (
        "expression",
        "timezone",
        "_tz",
        "_seconds",
        "_minutes",
        "_hours",
        "_doms",
        "_months",
        "_dows",
        "_dom_star",
        "_dow_star",
    )

    expression: str
    timezone: str
    _tz: tzinfo
    _seconds: tuple[int, ...]
    _minutes: tuple[int, ...]
    _hours: tuple[int, ...]
    _doms: frozenset[int]
    _months: tuple[int, ...]
    _dows: frozenset[int]
    _dom_star: bool
    _dow_star: bool

    def __init__(self) -> None:  # use Cron.parse
        raise TypeError("use Cron.parse(expression, timezone)")

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """Parse ``expression`` (5 or 6 fields, or a macro) for ``timezone``.

        Raises ValueError naming the bad field or the unknown time zone."""
        if not isinstance(expression, str):
            raise ValueError(f"cron: expression must be a string, got {type(expression).__name__}")
        normalized = " ".join(expression.split())
        text = normalized
        if text.startswith("@"):
            macro = _MACROS.get(text.lower())
            if macro is None:
                raise ValueError(f"cron: unknown macro '{text}'")
            text = macro
        fields = text.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        elif len(fields) != 6:
            raise ValueError(f"cron: expected 5 or 6 fields, got {len(fields)}")

        self = object.__new__(cls)
        self._seconds = _parse_field(fields[0], _SECOND)
        self._minutes = _parse_field(fields[1], _MINUTE)
        self._hours = _parse_field(fields[2], _HOUR)
        self._doms = frozenset(_parse_field(fields[3], _DOM))
        self._months = _parse_field(fields[4], _MONTH)
        self._dows = frozenset(_parse_field(fields[5], _DOW))
        self._dom_star = fields[3] == "*"
        self._dow_star = fields[5] == "*"
        self._tz = _load_zone(timezone)
        self.expression = normalized
        self.timezone = timezone
        if self._dow_star and not any(day <= _LONGEST_MONTH[m] for m in self._months for day in self._doms):
            raise ValueError(
                f"cron: '{normalized}' never fires: none of its months has "
                f"day {', '.join(map(str, sorted(self._doms)))}"
            )
        return self

    def __str__(self) -> str:
        return f"{self.expression} ({self.timezone})"

    def __repr__(self) -> str:
        return f"Cron.parse({self.expression!r}, {self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return (self.expression, self.timezone) == (other.expression, other.timezone)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    # -- evaluation ---------------------------------------------------------

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (timezone-aware, any
        zone), as an aware datetime in UTC.

        Raises ValueError if ``after`` is naive or nothing fires within
        5 years."""
        if not isinstance(after, datetime) or after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("next_after: 'after' must be a timezone-aware datetime")
        tz = self._tz
        after_utc = after.astimezone(UTC)
        local = after_utc.astimezone(tz).replace(tzinfo=None, fold=0)
        start = local.replace(microsecond=0) + _ONE_SECOND
        limit_year = start.year + _MAX_YEARS
        try:
            while True:
                t = self._next_local(start, limit_year)
                aware = t.replace(tzinfo=tz)  # fold=0
                utc = aware.astimezone(UTC)
                back = utc.astimezone(tz).replace(tzinfo=None)
                if back != t:  # nonexistent wall-clock time (DST gap): skip the gap
                    start = self._gap_end(t, back)
                    continue
                if utc <= after_utc:
                    # Ambiguous wall-clock time whose first occurrence (fold=0)
                    # is not after `after`: it already fired.  Resume at the
                    # wall-clock time just past `after` in the fold=0 offset.
                    offset = aware.utcoffset() or timedelta(0)
                    resume = after_utc.replace(tzinfo=None, microsecond=0) + offset + _ONE_SECOND
                    start = max(resume, t + _ONE_SECOND)
                    continue
                return utc
        except OverflowError:
            raise ValueError(
                f"cron: '{self.expression}' has no fire time after {after.isoformat()}"
            ) from None

    def _exists(self, t: datetime) -> bool:
        utc = t.replace(tzinfo=self._tz).astimezone(UTC)
        return utc.astimezone(self._tz).replace(tzinfo=None) == t

    def _gap_end(self, t: datetime, back: datetime) -> datetime:
        """The first existing wall-clock second after nonexistent ``t``;
        ``back`` (its fold=0 round trip) exists and lies past the gap."""
        if back <= t:
            return t + _ONE_SECOND
        lo, hi = t, back  # lo does not exist, hi does
        while (hi - lo) > _ONE_SECOND:
            mid = lo + timedelta(seconds=(hi - lo) // _ONE_SECOND // 2)
            if self._exists(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def _day_matches(self, d: date) -> bool:
        dom_ok = d.day in self._doms
        dow_ok = (d.weekday() + 1) % 7 in self._dows  # Python Monday=0 -> cron Sunday=0
        if not self._dom_star and not self._dow_star:
            return dom_ok or dow_ok
        return dom_ok and dow_ok

    def _next_local(self, t: datetime, limit_year: int) -> datetime:
        """The first naive wall-clock time >= ``t`` matching every field."""
        while True:
            if t.year > limit_year:
                raise ValueError(f"cron: '{self.expression}' has no fire time within {_MAX_YEARS} years")
            month = _next_in(self._months, t.month)
            if month is None:
                t = datetime(t.year + 1, self._months[0], 1)
                continue
            if month != t.month:
                t = datetime(t.year, month, 1)
            if not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            hour = _next_in(self._hours, t.hour)
            if hour is None:
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0, second=0)
            minute = _next_in(self._minutes, t.minute)
            if minute is None:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if minute != t.minute:
                t = t.replace(minute=minute, second=0)
            second = _next_in(self._seconds, t.second)
            if second is None:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            return t.replace(second=second)
