"""Times of the week as written in the config: days, a time on them, hours, holidays."""

from datetime import date, datetime, time

import pytest

from mailhelp.config import loads
from mailhelp.errors import ConfigError
from mailhelp.weekly import DateSpan, WeeklyAt, WeeklyHours, parse_days

BASE = '[helpdesk]\naddress = "help@school.test"\n'


@pytest.mark.parametrize(("text", "days"), [
    ("Mon-Fri", {0, 1, 2, 3, 4}), ("mon,wed,fri", {0, 2, 4}), ("Sat-Sun,Wed", {2, 5, 6}),
    ("Fri-Mon", {4, 5, 6, 0}), ("daily", set(range(7))), ("Tuesday", {1}),
])
def test_days(text, days):
    assert parse_days(text) == days


def test_a_time_on_weekdays_skips_the_weekend():
    morning = WeeklyAt.parse("Mon-Fri 07:00")
    friday_noon = datetime(2026, 12, 4, 12, 0)  # a Friday
    assert morning.following(friday_noon) == datetime(2026, 12, 7, 7, 0)  # Monday
    assert morning.latest(datetime(2026, 12, 6, 23, 0)) == datetime(2026, 12, 4, 7, 0)
    assert morning.latest(datetime(2026, 12, 7, 7, 0)) == datetime(2026, 12, 7, 7, 0)
    assert morning.following(datetime(2026, 12, 7, 7, 0)) == datetime(2026, 12, 8, 7, 0)


def test_hours_and_spans():
    hours = WeeklyHours.parse("Mon-Fri 07:30-16:00")
    assert (hours.start, hours.end) == (time(7, 30), time(16, 0))
    winter = DateSpan.parse("2026-12-21..2027-01-01")
    assert date(2026, 12, 25) in winter and date(2027, 1, 2) not in winter
    assert DateSpan.parse("2027-01-18").first == DateSpan.parse("2027-01-18").last


def test_the_config_reads_them_and_the_zone():
    config = loads(BASE + 'timezone = "America/Chicago"\n[calendar]\n'
                   'hours = "Mon-Fri 07:30-16:00"\nholidays = ["2027-01-18"]\n'
                   '[staff]\nqueue_digest = "Mon-Fri 07:00"\n')
    assert config.helpdesk.zone.key == "America/Chicago"
    assert config.calendar.hours.days == frozenset(range(5))
    assert config.calendar.holidays == (DateSpan(date(2027, 1, 18), date(2027, 1, 18)),)
    assert config.staff.queue_digest.at == time(7, 0)
    plain = loads(BASE)
    assert (plain.helpdesk.timezone, plain.calendar.hours, plain.staff.queue_digest) == (
        "UTC", None, None)


@pytest.mark.parametrize(("text", "message"), [
    ('timezone = "Mars/Base"', "helpdesk.timezone: 'Mars/Base' is not a time zone"),
    ('[calendar]\nhours = "Mon-Fri 16:00-07:00"', "calendar.hours: "),
    ('[calendar]\nhours = "Mon-Fri"', "calendar.hours: "),
    ('[calendar]\nholidays = ["2027-13-01"]', "calendar.holidays: '2027-13-01' is not a date"),
    ('[calendar]\nholidays = ["2027-01-05..2027-01-01"]', "calendar.holidays: "),
    ('[staff]\nqueue_digest = "Funday 07:00"', "staff.queue_digest: 'Funday' is not a day"),
    ('[staff]\nqueue_digest = "Mon 25:00"', "staff.queue_digest: '25:00' is not a time"),
])
def test_errors_name_the_key(text, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        loads(BASE + text)
