"""Times of the week as people write them in the config.

``"Mon-Fri 07:00"`` (a time on some days: the morning queue, the weekly digest),
``"Mon-Fri 07:30-16:00"`` (opening hours) and ``"2026-12-21..2027-01-01"`` (a holiday,
or a span of them). Each is parsed once, when the config is read, and answers questions
about local wall-clock times; the desk's zone (``[helpdesk] timezone``) is applied by
whoever asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_days(text: str) -> frozenset[int]:
    """``"Mon-Fri"``, ``"Mon,Wed,Fri"``, ``"Sat-Sun,Wed"`` or ``"daily"`` -> weekday
    numbers (Monday 0). A range may wrap (``"Fri-Mon"``)."""
    text = text.strip()
    if text.lower() in ("daily", "every day"):
        return frozenset(range(7))
    days: set[int] = set()
    for piece in text.split(","):
        first, _, last = piece.strip().partition("-")
        start, end = _day(first), _day(last or first)
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(days)


def _day(name: str) -> int:
    name = name.strip()
    short = name[:3].lower()
    if short not in DAY_NAMES or len(name) < 3:
        raise ValueError(f"{name!r} is not a day (write Mon, Tue, ... Sun, or a range Mon-Fri)")
    return DAY_NAMES.index(short)


def _time(text: str) -> time:
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time of day (write 07:30)")
    return time(int(match.group(1)), int(match.group(2)))


def _split(text: str, example: str) -> tuple[frozenset[int], str]:
    days, _, rest = text.strip().rpartition(" ")
    if not days or not rest:
        raise ValueError(f"{text!r}: write days and a time, as {example!r}")
    return parse_days(days), rest


@dataclass(frozen=True)
class WeeklyAt:
    """A time of day on some days of the week: ``"Mon-Fri 07:00"``."""

    days: frozenset[int]
    at: time
    text: str

    @classmethod
    def parse(cls, text: str) -> WeeklyAt:
        days, at = _split(text, "Mon-Fri 07:00")
        return cls(days, _time(at), text.strip())

    def latest(self, moment: datetime) -> datetime:
        """The last occurrence at or before ``moment`` (naive or aware, local time)."""
        day = moment.date()
        for back in range(8):
            candidate = datetime.combine(day - timedelta(days=back), self.at, moment.tzinfo)
            if candidate.weekday() in self.days and candidate <= moment:
                return candidate
        raise AssertionError("a week holds every weekday")

    def following(self, moment: datetime) -> datetime:
        """The first occurrence after ``moment``."""
        day = moment.date()
        for ahead in range(8):
            candidate = datetime.combine(day + timedelta(days=ahead), self.at, moment.tzinfo)
            if candidate.weekday() in self.days and candidate > moment:
                return candidate
        raise AssertionError("a week holds every weekday")


@dataclass(frozen=True)
class WeeklyHours:
    """Opening hours on some days of the week: ``"Mon-Fri 07:30-16:00"``."""

    days: frozenset[int]
    start: time
    end: time
    text: str

    @classmethod
    def parse(cls, text: str) -> WeeklyHours:
        days, span = _split(text, "Mon-Fri 07:30-16:00")
        first, dash, last = span.partition("-")
        if not dash:
            raise ValueError(f"{text!r}: write the hours as a span, 07:30-16:00")
        start, end = _time(first), _time(last)
        if end <= start:
            raise ValueError(f"{text!r}: the hours must end after they start")
        return cls(days, start, end, text.strip())


@dataclass(frozen=True)
class DateSpan:
    """One day (``"2027-01-18"``) or the days from one to another, both included
    (``"2026-12-21..2027-01-01"``)."""

    first: date
    last: date

    @classmethod
    def parse(cls, text: str) -> DateSpan:
        first, dots, last = text.strip().partition("..")
        try:
            start = date.fromisoformat(first.strip())
            end = date.fromisoformat(last.strip()) if dots else start
        except ValueError:
            raise ValueError(f"{text!r} is not a date or a span of dates (write 2027-01-18 "
                             f"or 2026-12-21..2027-01-01)") from None
        if end < start:
            raise ValueError(f"{text!r}: the span ends before it starts")
        return cls(start, end)

    def __contains__(self, day: date) -> bool:
        return self.first <= day <= self.last
