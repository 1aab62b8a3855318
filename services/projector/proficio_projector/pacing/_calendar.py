"""A school calendar: which days are school days, and school weeks counted on them.

Pacing is measured in school time, never seat time: a break does not make a learner fall behind, and a
"week" is a school week (Monday to Sunday holding at least one school day). Without a calendar every
Monday-to-Friday is a school day.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta


@dataclass(frozen=True)
class Break:
    first: date
    last: date
    name: str = ""


@dataclass(frozen=True)
class SchoolCalendar:
    first_day: date | None = None
    last_day: date | None = None
    breaks: tuple[Break, ...] = field(default=())
    #: Weekdays that are school days (Monday = 0).
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})

    def __post_init__(self) -> None:
        if self.first_day and self.last_day and self.last_day < self.first_day:
            raise ValueError("a calendar's last day comes after its first")
        for b in self.breaks:
            if b.last < b.first:
                raise ValueError(f"break {b.name or b.first}: its last day comes before its first")
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday), at least one")

    def is_school_day(self, day: date) -> bool:
        if day.weekday() not in self.weekdays:
            return False
        if (self.first_day and day < self.first_day) or (self.last_day and day > self.last_day):
            return False
        return not any(b.first <= day <= b.last for b in self.breaks)

    def school_days(self, after: date, through: date) -> int:
        """School days in (after, through]: the days after ``after`` up to and including ``through``."""
        return _school_days(self, after, through)

    def _count_school_days(self, after: date, through: date) -> int:
        if through <= after:
            return 0
        weeks, rest = divmod((through - after).days, 7)
        count = 0
        if not self.breaks and self.first_day is None and self.last_day is None:
            count = weeks * len(self.weekdays)  # the common case, without walking every day
            start = after + timedelta(days=weeks * 7)
            return count + sum((start + timedelta(days=n)).weekday() in self.weekdays for n in range(1, rest + 1))
        return sum(self.is_school_day(after + timedelta(days=n)) for n in range(1, (through - after).days + 1))

    def add_school_days(self, start: date, days: int) -> date | None:
        """The date ``days`` school days after ``start`` (None past the calendar's last day)."""
        return _add_school_days(self, start, days)

    def _walk_school_days(self, start: date, days: int) -> date | None:
        day, left = start, days
        while left > 0:
            day += timedelta(days=1)
            if self.last_day and day > self.last_day:
                return None
            left -= self.is_school_day(day)
        return day

    def week_of(self, day: date) -> date:
        """The Monday that starts ``day``'s week: a school week's identity."""
        return day - timedelta(days=day.weekday())

    def school_weeks(self, after: date, through: date) -> list[date]:
        """The weeks (their Mondays) with at least one school day in (after, through], oldest first."""
        return list(_school_weeks(self, after, through))

    def _list_school_weeks(self, after: date, through: date) -> list[date]:
        weeks: list[date] = []
        day = after + timedelta(days=1)
        while day <= through:
            monday = self.week_of(day)
            if any(self.is_school_day(monday + timedelta(days=n)) and after < monday + timedelta(days=n) <= through
                   for n in range(7)):  # fmt: skip
                weeks.append(monday)
            day = monday + timedelta(days=7)
        return weeks


# Pace is judged for thousands of learners on the same days of the same few calendars: the day arithmetic
# (walking a calendar a day at a time) is done once per calendar and pair of days.
@functools.lru_cache(maxsize=65_536)
def _school_days(calendar: SchoolCalendar, after: date, through: date) -> int:
    return calendar._count_school_days(after, through)


@functools.lru_cache(maxsize=4096)
def _school_weeks(calendar: SchoolCalendar, after: date, through: date) -> tuple[date, ...]:
    return tuple(calendar._list_school_weeks(after, through))


@functools.lru_cache(maxsize=65_536)
def _add_school_days(calendar: SchoolCalendar, start: date, days: int) -> date | None:
    return calendar._walk_school_days(start, days)


def calendar_from_data(data: dict[str, object] | None) -> SchoolCalendar:
    """A calendar from its event payload (None: Monday to Friday, no breaks)."""
    if not data:
        return SchoolCalendar()
    breaks_data = data.get("breaks") or []
    assert isinstance(breaks_data, Sequence)
    breaks = tuple(
        Break(date.fromisoformat(str(b["first"])), date.fromisoformat(str(b["last"])), str(b.get("name", "")))
        for b in breaks_data
    )
    weekdays = data.get("weekdays")
    return SchoolCalendar(
        date.fromisoformat(str(data["first_day"])) if data.get("first_day") else None,
        date.fromisoformat(str(data["last_day"])) if data.get("last_day") else None,
        breaks,
        frozenset(int(d) for d in weekdays) if isinstance(weekdays, Sequence) else frozenset({0, 1, 2, 3, 4}),
    )
