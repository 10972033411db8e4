"""clocktext.LocalTimes gives exactly what astimezone(zone).isoformat(timespec="seconds")
gives, for every minute of a year and across each zone's transitions: whole-hour
offsets (spliced), half- and quarter-hour ones, a half-hour DST shift, historic
offsets with seconds (the plain way), and PostgreSQL's trimmed fractions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailhelp.clocktext import LocalTimes

ZONES = ("America/Chicago", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata",
         "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham", "UTC")


def text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # as the database keeps it (UTC)


@pytest.mark.parametrize("name", ZONES)
def test_every_seven_minutes_of_a_year_as_astimezone_gives_it(name):
    zone, clock = ZoneInfo(name), LocalTimes(ZoneInfo(name))
    moment = datetime(2026, 1, 1, 0, 0, 13, 987654, tzinfo=UTC)
    while moment.year == 2026:
        expected = moment.astimezone(zone).isoformat(timespec="seconds")
        assert clock.iso(text(moment)) == expected, (name, moment)
        moment += timedelta(minutes=7)


@pytest.mark.parametrize("name", ZONES)
def test_each_second_around_the_transitions(name):
    zone, clock = ZoneInfo(name), LocalTimes(ZoneInfo(name))
    hour, seen = datetime(2026, 1, 1, tzinfo=UTC), []
    while hour.year == 2026:  # the hours in which the offset changes
        if hour.astimezone(zone).utcoffset() != (hour + timedelta(hours=1)).astimezone(
                zone).utcoffset():
            seen.append(hour)
        hour += timedelta(hours=1)
    for hour in seen:
        for second in range(0, 7200, 1):
            moment = hour + timedelta(seconds=second)
            assert clock.iso(text(moment)) == moment.astimezone(zone).isoformat(
                timespec="seconds"), (name, moment)
    assert name == "UTC" or name in ("Asia/Kolkata", "Asia/Kathmandu") or seen


def test_seconds_in_the_offset_go_the_plain_way_and_other_texts_splice_alike():
    zone = ZoneInfo("Europe/Amsterdam")  # +00:19:32 until 1937
    clock = LocalTimes(zone)
    moment = datetime(1930, 6, 1, 12, 30, 5, tzinfo=UTC)
    assert clock.iso(text(moment)) == moment.astimezone(zone).isoformat(timespec="seconds")
    assert clock._days["1930-06-01"] is None  # that day is not spliced
    # PostgreSQL's text leaves out a zero fraction and trims the rest; a "T" may stand
    # between date and time: all spliced, all as astimezone gives them.
    for given in ("2026-03-04 05:06:07", "2026-03-04 05:06:07.12", "2026-03-04T05:06:07.5"):
        assert clock.iso(given) == clock.plain(given) == "2026-03-04T06:06:07+01:00", given
    assert clock._days["2026-03-04"] is not None
    with pytest.raises(ValueError):
        clock.iso("not a time")
