"""Business time: a delay counted only while the desk is open.

The rule, as a school's IT staff count it (``[calendar]``, read in ``[helpdesk]
timezone``):

- Time the desk is closed does not count: the count starts at the next opening (a
  ticket answered on Saturday counts from Monday 07:30).
- A delay of whole days (``"3d"``, ``"1w"``; ``"48h"`` is the same value as ``"2d"``)
  counts open days: 3d after Friday 14:00 is Wednesday 14:00, the weekend and any
  holiday skipped.
- Any other delay (``"4h"``, ``"90m"``, ``"1d4h"``) counts open hours on the wall
  clock: 4h after Friday 14:00, with hours 07:30-16:00, is Monday 09:30. A delay that
  runs out at closing time is due at closing time.
- ``"0s"`` is at once, open or not.
- With ``holidays`` but no ``hours``, every hour of every other day counts; with no
  ``[calendar]`` at all, a delay is plain elapsed time (``moment + delay``), exactly.

Hours are counted on the clock on the wall, so a night of a daylight-saving change
neither adds nor loses an hour of school, and a result that falls in the hour the
clocks skip moves on past it. Every walk is bounded: holidays are jumped a span at a
time (by bisection), and runs of weeks without one are skipped whole, so a thousand
holidays or a delay of years costs a few thousand steps at most.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
# A delay longer than this counts as this (a century: "never", without overflowing
# the calendar).
MAX_DELAY = timedelta(days=36_525)
_US = timedelta(microseconds=1)
_EPOCH = date(2000, 1, 3)  # a Monday: between counts whole days from here


@dataclass(frozen=True)
class WorkCalendar:
    """When the desk is open, in its zone; ``add`` counts a delay in that time."""

    zone: ZoneInfo
    days: frozenset[int] = frozenset(range(7))  # open weekdays, Monday 0
    opens: timedelta = timedelta(0)  # from local midnight
    closes: timedelta = DAY
    firsts: tuple[date, ...] = ()  # holiday spans, sorted and merged: first days
    lasts: tuple[date, ...] = ()  # and last days (both included)
    elapsed: bool = True  # no calendar: a delay is plain elapsed time
    # Open days before a date (between's memo: a report asks about the same few hundred
    # days for thousands of tickets). Not part of the calendar's value.
    _days_before: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def build(cls, zone: ZoneInfo, hours=None, holidays=()) -> WorkCalendar:
        """From ``[calendar] hours`` (a WeeklyHours or None) and ``holidays`` (DateSpans)."""
        spans: list[list[date]] = []
        for span in sorted(holidays, key=lambda s: s.first):
            if spans and span.first <= spans[-1][1] + DAY:
                spans[-1][1] = max(spans[-1][1], span.last)
            else:
                spans.append([span.first, span.last])
        found = {"zone": zone, "firsts": tuple(s[0] for s in spans),
                 "lasts": tuple(s[1] for s in spans),
                 "elapsed": hours is None and not spans}
        if hours is not None:
            found.update(days=frozenset(hours.days), opens=_since_midnight(hours.start),
                         closes=_since_midnight(hours.end))
        return cls(**found)

    # -- questions about days ---------------------------------------------------------

    def holiday(self, day: date) -> int | None:
        """The index of the holiday span ``day`` is in, or None."""
        i = bisect_right(self.firsts, day) - 1
        return i if i >= 0 and self.lasts[i] >= day else None

    def is_open_day(self, day: date) -> bool:
        return day.weekday() in self.days and self.holiday(day) is None

    def is_open(self, moment: datetime) -> bool:
        """Whether the desk is open at ``moment`` (aware)."""
        if self.elapsed:
            return True
        local = _local(moment, self.zone)
        since = local - datetime.combine(local.date(), time())
        return self.is_open_day(local.date()) and self.opens <= since < self.closes

    def _next_open_day(self, day: date) -> date:
        """The first open day after ``day``: a holiday span is jumped at once, and a
        week holds an open weekday, so this takes a few steps per holiday in the way."""
        day += DAY
        for _ in range(8 * (len(self.firsts) + 2)):
            span = self.holiday(day)
            if span is not None:
                day = self.lasts[span] + DAY
            elif day.weekday() not in self.days:
                day += DAY
            else:
                return day
        raise AssertionError("an open day follows every closed stretch")

    def _free_weeks(self, day: date) -> int:
        """How many whole weeks after ``day`` hold no holiday, the day that ends the
        last of them included (``day`` itself is open)."""
        j = bisect_left(self.firsts, day)
        return ((self.firsts[j] - day).days - 1) // 7 if j < len(self.firsts) else 10**9

    def _opening(self, local: datetime) -> datetime:
        """``local`` if the desk is open then, else its next opening (local wall time)."""
        day = local.date()
        midnight = datetime.combine(day, time())
        if self.is_open_day(day) and local - midnight < self.closes:
            return max(local, midnight + self.opens)
        return datetime.combine(self._next_open_day(day), time()) + self.opens

    # -- the arithmetic ---------------------------------------------------------------

    def add(self, moment: datetime, delay: timedelta) -> datetime:
        """``moment`` (aware) plus ``delay`` of open time, as an aware UTC datetime."""
        if moment.tzinfo is None:
            raise ValueError("business time needs an aware datetime")
        delay = min(delay, MAX_DELAY)
        if delay <= timedelta(0):
            return moment
        if self.elapsed:
            return moment + delay
        local = self._opening(_local(moment, self.zone))
        if delay % DAY == timedelta(0):
            local = self._add_days(local, delay // DAY)
        else:
            local = self._add_hours(local, delay)
        return _aware(local, self.zone, moment)

    def _add_days(self, local: datetime, count: int) -> datetime:
        """The same time of day, ``count`` open days after ``local`` (which is open)."""
        day, of_day = local.date(), local - datetime.combine(local.date(), time())
        per_week = len(self.days)
        for _ in range(16 * (len(self.firsts) + 2)):
            # A run of weeks without a holiday holds per_week open days each.
            weeks = min((count - 1) // per_week, self._free_weeks(day))
            if weeks > 0:
                day += weeks * WEEK
                count -= weeks * per_week
                continue
            day = self._next_open_day(day)
            count -= 1
            if count == 0:
                return datetime.combine(day, time()) + of_day
        raise AssertionError("the walk over open days is bounded by the holidays")

    def _add_hours(self, local: datetime, delay: timedelta) -> datetime:
        """``delay`` of open hours after ``local`` (which is open), on the wall clock."""
        left = delay
        week_open = len(self.days) * (self.closes - self.opens)
        for _ in range(16 * (len(self.firsts) + 2)):
            day = local.date()
            midnight = datetime.combine(day, time())
            # A run of weeks without a holiday holds week_open of open time each (from
            # any moment: the week is the same on both ends).
            weeks = min(_whole_below(left, week_open), self._free_weeks(day))
            if weeks > 0:
                local += weeks * WEEK
                left -= weeks * week_open
                local = self._opening(local)
                continue
            closing = midnight + self.closes
            if left <= closing - local:
                return local + left
            left -= closing - local
            local = datetime.combine(self._next_open_day(day), time()) + self.opens
        raise AssertionError("the walk over open hours is bounded by the holidays")


    # -- the other way round: how much open time lies between two moments ------------

    def between(self, start: datetime, end: datetime) -> timedelta:
        """The open time from ``start`` to ``end`` (aware): what a delay from ``start``
        has used up by ``end``; zero if ``end`` is not later. Whole days between the
        two are counted by arithmetic (weeks, then the holiday spans in the way), so the
        cost grows with the holidays, not with the distance."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("business time needs an aware datetime")
        if end <= start:
            return timedelta(0)
        if self.elapsed:
            return end - start
        # In whole microseconds of the local day: exact, and cheap enough to ask for
        # every ticket of a report.
        a, b = start.astimezone(self.zone), end.astimezone(self.zone)
        first, last = a.date(), b.date()
        opens, closes = self.opens // _US, self.closes // _US
        a_since = ((a.hour * 60 + a.minute) * 60 + a.second) * 1_000_000 + a.microsecond
        b_since = ((b.hour * 60 + b.minute) * 60 + b.second) * 1_000_000 + b.microsecond
        if first == last:
            if not self.is_open_day(first):
                return timedelta(0)
            return timedelta(microseconds=max(0, min(closes, b_since) - max(opens, a_since)))
        total = 0
        if self.is_open_day(first):
            total += max(0, closes - max(opens, a_since))
        if self.is_open_day(last):
            total += max(0, min(closes, b_since) - opens)
        middle = self._before(last) - self._before(first + DAY)
        return timedelta(microseconds=total) + middle * (self.closes - self.opens)

    def _before(self, day: date) -> int:
        """Open days from an epoch to ``day`` (excluded; negative before the epoch),
        remembered: between's whole days are a difference of two of these."""
        found = self._days_before.get(day)
        if found is None:
            found = (self._open_days(_EPOCH, day - DAY) if day >= _EPOCH
                     else -self._open_days(day, _EPOCH - DAY))
            if len(self._days_before) < 100_000:
                self._days_before[day] = found
        return found

    def _open_days(self, first: date, last: date) -> int:
        """How many open days from ``first`` to ``last`` (both included)."""
        if last < first:
            return 0
        count = self._weekdays(first, last)
        for i in range(max(0, bisect_right(self.lasts, first - DAY)), len(self.firsts)):
            if self.firsts[i] > last:
                break
            count -= self._weekdays(max(first, self.firsts[i]), min(last, self.lasts[i]))
        return count

    def _weekdays(self, first: date, last: date) -> int:
        """How many of the open weekdays fall from ``first`` to ``last`` (included)."""
        if last < first:
            return 0
        days = (last - first).days + 1
        count = days // 7 * len(self.days)
        for k in range(days % 7):
            count += (first.weekday() + k) % 7 in self.days
        return count


def _whole_below(left: timedelta, unit: timedelta) -> int:
    """How many whole ``unit``s fit in ``left`` with some of it still to go."""
    return max(0, (left - timedelta(microseconds=1)) // unit)


def _since_midnight(at: time) -> timedelta:
    return timedelta(hours=at.hour, minutes=at.minute)


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    """Wall-clock time in ``zone``, naive."""
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def _aware(local: datetime, zone: ZoneInfo, start: datetime) -> datetime:
    """A wall-clock result back to UTC, never before ``start``. In the hour the clocks
    skip, it moves on by that hour (fold 0); in the hour they repeat, it is the first
    pass unless that is before the start."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first >= start:
        return first
    return max(local.replace(tzinfo=zone, fold=1).astimezone(UTC), start.astimezone(UTC))


@lru_cache(maxsize=16)
def _calendar(timezone: str, calendar) -> WorkCalendar:
    return WorkCalendar.build(ZoneInfo(timezone), calendar.hours, calendar.holidays)


def work_calendar(config) -> WorkCalendar:
    """The desk's calendar (``[calendar]`` in ``[helpdesk] timezone``), built once."""
    return _calendar(config.helpdesk.timezone, config.calendar)


def due(config, moment: datetime, delay: timedelta) -> datetime:
    """``moment`` plus ``delay`` of the desk's open time."""
    return work_calendar(config).add(moment, delay)


def desk_time(value: datetime, zone: ZoneInfo) -> datetime:
    """A stored (UTC) time as the desk's clock shows it; a naive one is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone)
