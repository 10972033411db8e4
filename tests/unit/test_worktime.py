"""Business time: delays counted in the desk's open days and hours (mailhelp/worktime.py)."""

from __future__ import annotations

import random
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailhelp.config import loads
from mailhelp.weekly import DateSpan, WeeklyHours
from mailhelp.worktime import MAX_DELAY, WorkCalendar, due

CHICAGO = ZoneInfo("America/Chicago")
SCHOOL = WeeklyHours.parse("Mon-Fri 07:30-16:00")
WINTER = (DateSpan.parse("2026-12-21..2027-01-01"), DateSpan.parse("2027-01-18"))


def at(*parts: int, zone=CHICAGO) -> datetime:
    return datetime(*parts, tzinfo=zone)


def school(zone=CHICAGO, holidays=WINTER) -> WorkCalendar:
    return WorkCalendar.build(zone, SCHOOL, holidays)


# -- the rule, by example ----------------------------------------------------------------

@pytest.mark.parametrize(("start", "delay", "expected"), [
    # Whole days count school days, at the same time of day.
    (at(2026, 12, 4, 14, 0), "3d", at(2026, 12, 9, 14, 0)),   # Fri -> Wed
    (at(2026, 12, 3, 10, 0), "1d", at(2026, 12, 4, 10, 0)),   # Thu -> Fri
    (at(2026, 12, 4, 10, 0), "1w", at(2026, 12, 15, 10, 0)),  # 7 school days
    (at(2026, 12, 4, 10, 0), "48h", at(2026, 12, 8, 10, 0)),  # the same value as 2d
    # Closed time does not count: the count starts at the next opening.
    (at(2026, 12, 4, 7, 0), "1d", at(2026, 12, 7, 7, 30)),    # Fri before opening -> Mon
    (at(2026, 12, 5, 10, 0), "1d", at(2026, 12, 8, 7, 30)),   # Sat -> Tue opening
    (at(2026, 12, 4, 17, 0), "1d", at(2026, 12, 8, 7, 30)),   # Fri evening
    (at(2026, 12, 4, 16, 0), "1d", at(2026, 12, 8, 7, 30)),   # Fri at closing
    # Hours and minutes count open hours.
    (at(2026, 12, 4, 14, 0), "4h", at(2026, 12, 7, 9, 30)),   # Fri -> Mon
    (at(2026, 12, 4, 14, 0), "2h", at(2026, 12, 4, 16, 0)),   # runs out at closing
    (at(2026, 12, 5, 12, 0), "30m", at(2026, 12, 7, 8, 0)),   # Sat -> Mon
    (at(2026, 12, 7, 7, 30), "42h30m", at(2026, 12, 11, 16, 0)),  # one school week
    (at(2026, 12, 7, 9, 0), "1d4h", at(2026, 12, 10, 11, 30)),  # 28 open hours, below
    # Holidays: the winter break and a single day.
    (at(2026, 12, 18, 10, 0), "1d", at(2027, 1, 4, 10, 0)),
    (at(2026, 12, 18, 14, 0), "4h", at(2027, 1, 4, 9, 30)),
    (at(2026, 12, 23, 10, 0), "1d", at(2027, 1, 5, 7, 30)),   # asked during the break
    (at(2027, 1, 15, 10, 0), "1d", at(2027, 1, 19, 10, 0)),   # Fri, then MLK day
    # At once is at once, open or not.
    (at(2026, 12, 5, 10, 0), "0s", at(2026, 12, 5, 10, 0)),
])
def test_school_days_and_hours(start, delay, expected):
    from mailhelp.durations import parse_duration

    assert school().add(start, parse_duration(delay)) == expected


def test_a_delay_not_of_whole_days_counts_hours():
    # 28 open hours: 7h on Monday, 8.5h on Tuesday and on Wednesday, 4h on Thursday.
    assert school().add(at(2026, 12, 7, 9, 0), timedelta(hours=28)) == at(2026, 12, 10, 11, 30)


def test_results_are_utc_and_the_input_zone_does_not_matter():
    friday = at(2026, 12, 4, 20, 0, zone=UTC)  # 14:00 in Chicago
    found = school().add(friday, timedelta(days=3))
    assert found.tzinfo is UTC
    assert found == at(2026, 12, 9, 14, 0)


def test_no_calendar_is_plain_elapsed_time():
    calendar = WorkCalendar.build(CHICAGO)
    for start in (at(2026, 12, 5, 10, 0), at(2026, 3, 7, 23, 0), at(2026, 10, 31, 23, 0)):
        for delay in (timedelta(days=3), timedelta(hours=4), timedelta(seconds=1)):
            assert calendar.add(start, delay) == start + delay  # real elapsed time


def test_no_calendar_in_the_config_is_todays_behaviour():
    config = loads('[helpdesk]\naddress = "help@school.test"\ntimezone = "America/Chicago"\n')
    saturday = at(2026, 12, 5, 10, 0, zone=UTC)
    assert due(config, saturday, timedelta(days=3)) == saturday + timedelta(days=3)


def test_the_config_is_read_in_the_desk_zone():
    config = loads('[helpdesk]\naddress = "help@school.test"\ntimezone = "America/Chicago"\n'
                   '[calendar]\nhours = "Mon-Fri 07:30-16:00"\n'
                   'holidays = ["2026-12-21..2027-01-01"]\n')
    assert due(config, at(2026, 12, 18, 15, 0), timedelta(hours=2)) == at(2027, 1, 4, 8, 30)
    assert due(config, at(2026, 12, 18, 15, 0), timedelta(0)) == at(2026, 12, 18, 15, 0)


def test_holidays_without_hours_close_whole_days():
    calendar = WorkCalendar.build(CHICAGO, None, WINTER)
    # Saturday: Sunday, then the break, then Saturday and Sunday again.
    assert calendar.add(at(2026, 12, 19, 10, 0), timedelta(days=3)) == at(2027, 1, 3, 10, 0)
    assert calendar.add(at(2026, 12, 20, 22, 0), timedelta(hours=4)) == at(2027, 1, 2, 2, 0)
    assert calendar.add(at(2026, 12, 5, 10, 0), timedelta(days=1)) == at(2026, 12, 6, 10, 0)


def test_overlapping_and_unsorted_holidays_are_merged():
    spans = (DateSpan.parse("2026-12-28..2027-01-01"), DateSpan.parse("2026-12-21..2026-12-29"),
             DateSpan.parse("2026-12-22"))
    calendar = school(holidays=spans)
    assert calendar.firsts == (date(2026, 12, 21),) and calendar.lasts == (date(2027, 1, 1),)
    assert calendar.add(at(2026, 12, 18, 10, 0), timedelta(days=1)) == at(2027, 1, 4, 10, 0)


def test_is_open():
    calendar = school()
    assert calendar.is_open(at(2026, 12, 4, 7, 30))
    assert not calendar.is_open(at(2026, 12, 4, 16, 0))
    assert not calendar.is_open(at(2026, 12, 5, 10, 0))  # Saturday
    assert not calendar.is_open(at(2026, 12, 22, 10, 0))  # winter break
    assert WorkCalendar.build(CHICAGO).is_open(at(2026, 12, 5, 3, 0))


# -- daylight saving ------------------------------------------------------------------------
# America/Chicago, 2026: clocks go forward on Sunday 8 March at 02:00, back on Sunday
# 1 November at 02:00.

def test_school_hours_across_the_spring_change_keep_the_wall_clock():
    friday = at(2026, 3, 6, 14, 0)  # CST, UTC-6
    monday = school().add(friday, timedelta(days=1))
    assert monday == at(2026, 3, 9, 14, 0)  # CDT
    assert monday.astimezone(UTC).hour == 19  # not 20: the wall clock, not 72 hours
    assert school().add(friday, timedelta(hours=4)) == at(2026, 3, 9, 9, 30)


def test_school_hours_across_the_autumn_change():
    friday = at(2026, 10, 30, 15, 0)  # CDT
    assert school().add(friday, timedelta(hours=2)) == at(2026, 11, 2, 8, 30)  # CST
    assert school().add(friday, timedelta(days=1)) == at(2026, 11, 2, 15, 0)


def test_whole_days_open_round_the_clock_across_the_changes():
    calendar = WorkCalendar.build(CHICAGO, None, (DateSpan.parse("2026-01-01"),))
    # Four hours on the wall from 23:00 on the night the clocks skip 02:00-03:00.
    found = calendar.add(at(2026, 3, 7, 23, 0), timedelta(hours=4))
    assert found == at(2026, 3, 8, 3, 0)
    # A result in the skipped hour moves on past it.
    skipped = calendar.add(at(2026, 3, 8, 1, 30), timedelta(hours=1))
    assert skipped == datetime(2026, 3, 8, 8, 30, tzinfo=UTC)  # 03:30 CDT
    # In the repeated hour, counting from its second pass never goes back in time.
    second = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)  # 01:30 CST, the second 01:30
    later = calendar.add(second, timedelta(minutes=10))
    assert later == datetime(2026, 11, 1, 7, 40, tzinfo=UTC)
    first = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 CDT, the first
    assert calendar.add(first, timedelta(minutes=10)) == datetime(2026, 11, 1, 6, 40,
                                                                  tzinfo=UTC)
    # A day later is the same wall time, whatever the night's length.
    assert calendar.add(at(2026, 10, 31, 12, 0), timedelta(days=1)) == at(2026, 11, 1, 12, 0)


def test_a_desk_whose_hours_include_the_skipped_hour():
    nights = WorkCalendar.build(CHICAGO, WeeklyHours.parse("daily 01:00-04:00"))
    found = nights.add(at(2026, 3, 8, 1, 0), timedelta(hours=2))
    assert found > at(2026, 3, 8, 1, 0)
    # 01:00 + 2h on the wall is 03:00 CDT (08:00Z): the skipped hour is not counted.
    assert found == datetime(2026, 3, 8, 8, 0, tzinfo=UTC)


# -- bounded work ---------------------------------------------------------------------------

def _many_holidays(count: int, seed: int = 7) -> tuple[DateSpan, ...]:
    rng = random.Random(seed)
    start, spans = date(2026, 1, 1), []
    for _ in range(count):
        start += timedelta(days=rng.randint(2, 12))
        spans.append(DateSpan(start, start + timedelta(days=rng.randint(0, 3))))
    return tuple(spans)


def test_a_thousand_holidays_and_delays_of_years_are_quick():
    calendar = school(zone=UTC, holidays=_many_holidays(1000))
    began = clock.process_time()
    for delay in (timedelta(days=1000), timedelta(hours=20_000), timedelta(days=3)):
        found = calendar.add(at(2026, 1, 5, 9, 0, zone=UTC), delay)
        assert found > at(2026, 1, 5, 9, 0, zone=UTC)
    assert clock.process_time() - began < 0.5


def test_long_spans_skip_whole_weeks():
    calendar = school(zone=UTC, holidays=())
    start = at(2026, 1, 5, 9, 0, zone=UTC)  # a Monday
    # 5000 school days are 1000 weeks, to the day.
    assert calendar.add(start, timedelta(days=5000)) == start + 1000 * timedelta(weeks=1)
    hours = calendar.add(start, 1000 * 5 * timedelta(hours=8, minutes=30))
    assert hours == start + 1000 * timedelta(weeks=1)


def test_a_year_long_holiday_is_jumped_at_once():
    calendar = school(zone=UTC, holidays=(DateSpan.parse("2027-01-01..2035-12-31"),))
    assert calendar.add(at(2026, 12, 31, 10, 0, zone=UTC), timedelta(days=1)) == \
        at(2036, 1, 1, 10, 0, zone=UTC)


def test_the_longest_delay_does_not_overflow():
    found = school().add(at(2026, 12, 4, 14, 0), timedelta(days=999_999_999))
    assert found == school().add(at(2026, 12, 4, 14, 0), MAX_DELAY)
    assert found.year < 2300
    assert WorkCalendar.build(CHICAGO).add(at(2026, 1, 1), timedelta.max) == \
        at(2026, 1, 1) + MAX_DELAY


def test_naive_moments_are_refused():
    with pytest.raises(ValueError):
        school().add(datetime(2026, 12, 4, 14, 0), timedelta(hours=1))


# -- against a plain walk, minute by quarter-hour ------------------------------------------

def _reference(calendar: WorkCalendar, hours: WeeklyHours, spans, start: datetime,
               delay: timedelta) -> datetime:
    """A slow, obvious count: quarter-hour steps (days: open days one at a time)."""
    step = timedelta(minutes=15)

    def open_day(day: date) -> bool:
        return day.weekday() in hours.days and not any(day in s for s in spans)

    def open_at(t: datetime) -> bool:
        return open_day(t.date()) and hours.start <= t.time() < hours.end

    t = start.replace(tzinfo=None)
    if delay == timedelta(0):
        return start
    while not open_at(t):
        t += step
    if delay % timedelta(days=1) == timedelta(0):
        day, left = t.date(), delay.days
        while left:
            day += timedelta(days=1)
            left -= open_day(day)
        return datetime.combine(day, t.time(), tzinfo=UTC)
    left = delay
    while True:
        if open_at(t):
            left -= step
            t += step
            if not left:
                return t.replace(tzinfo=UTC)
        else:
            t += step


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_plain_walk(seed):
    rng = random.Random(seed)
    first, last = rng.randint(0, 4), rng.randint(0, 6)
    days = "Mon-Fri" if seed % 2 else f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri')[first]}-" \
        f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[max(first, last)]}"
    opens = rng.randint(24, 40)  # in quarter hours: 06:00-10:00
    closes = opens + rng.randint(4, 40)
    hours = WeeklyHours.parse(f"{days} {opens // 4:02d}:{opens % 4 * 15:02d}-"
                              f"{closes // 4:02d}:{closes % 4 * 15:02d}")
    spans = _many_holidays(40, seed)[:rng.randint(0, 40)]
    calendar = WorkCalendar.build(UTC, hours, spans)
    for _ in range(40):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=15 * rng.randint(0, 20000))
        if rng.random() < 0.5:
            delay = timedelta(days=rng.randint(0, 40))
        else:
            delay = timedelta(minutes=15 * rng.randint(1, 800))
        assert calendar.add(start, delay) == _reference(calendar, hours, spans, start, delay), \
            (hours.text, start, delay)


def test_time_of_day_helper_is_the_wall_clock():
    from mailhelp.worktime import desk_time

    assert desk_time(datetime(2026, 12, 7, 13, 30, tzinfo=UTC), CHICAGO).isoformat() == \
        "2026-12-07T07:30:00-06:00"
    assert desk_time(datetime(2026, 12, 7, 13, 30), CHICAGO).time() == time(7, 30)
