"""Escalation on a real database, with the clock moved by hand: who is told, once, and
what takes a ticket out of it (mailhelp/desk/escalation.py, schedule.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Job, Outbox, TicketEvent
from mailhelp.db.session import Database
from mailhelp.desk.lifecycle import run_due
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.helpers import desk_config, mail_of

T0 = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # a Monday
STAFF = ("tech1@school.test", "tech2@school.test")
REQUEST = ("From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Wifi\n"
           "Message-ID: <r1@school.test>\n\nNo wifi in room 3.\n")


class Desk:
    def __init__(self, tmp_path, database_url, extra: str = "") -> None:
        self.config = desk_config(tmp_path, database_url, extra, staff=STAFF)
        self.db = Database(database_url)
        upgrade(self.db)
        self.now = T0
        self.pipeline = Pipeline(self.config, self.db, lambda: self.now)
        self.mail(REQUEST)

    def mail(self, raw: str) -> None:
        [result] = self.pipeline.accept([Arrival(raw.encode(), "t")])
        assert not result.failed, result.error

    def staff(self, text: str, n: int = 1) -> None:
        self.mail(f"From: Sam <tech1@school.test>\nTo: help@school.test\nSubject: Re: Wifi\n"
                  f"Message-ID: <s{n}@school.test>\nIn-Reply-To: <r1@school.test>\n\n{text}\n")

    def run(self, after: timedelta) -> int:
        self.now = T0 + after
        return run_due(self.db, self.config, lambda: self.now)

    def escalations(self) -> list[Outbox]:
        with self.db.sessions() as session:
            rows = list(session.scalars(select(Outbox).order_by(Outbox.id)))
            return [row for row in rows if b"No answer yet" in mail_of(row)]

    def jobs(self) -> list[tuple[str, bool, bool]]:  # escalate jobs: (kind, done, cancelled)
        with self.db.sessions() as session:
            return [(j.kind, j.done_at is not None, j.cancelled_at is not None)
                    for j in session.scalars(select(Job).where(Job.kind == "escalate"))]


@pytest.fixture
def make(tmp_path, database_url):
    """make(extra) -> a Desk with Jane's request on it; its engine is disposed after."""
    made: list[Desk] = []

    def make_desk(extra: str = "") -> Desk:
        made.append(Desk(tmp_path, database_url, extra))
        return made[-1]

    yield make_desk
    for desk in made:
        desk.db.dispose()


def test_every_staff_address_is_told_once_when_no_leads_are_named(make):
    desk = make()
    assert desk.run(timedelta(hours=3, minutes=59)) == 0
    assert desk.jobs() == [("escalate", False, False)]
    assert desk.escalations() == []
    assert desk.run(timedelta(hours=4)) == 1
    assert sorted(r.recipients[0] for r in desk.escalations()) == list(STAFF)
    assert desk.run(timedelta(days=2)) == 0
    assert len(desk.escalations()) == 2
    with desk.db.sessions() as session:
        [event] = session.scalars(select(TicketEvent).where(TicketEvent.action == "escalated"))
    assert (event.ticket_id, event.actor, event.detail) == (1, "system", ", ".join(STAFF))


@pytest.mark.parametrize("command", ["#take", "#assign tech2@school.test", "#open",
                                     "On my way."])
def test_an_assignment_a_status_change_or_an_answer_cancels_it(make, command):
    desk = make()
    assert desk.run(timedelta(minutes=1)) == 0  # the pass plans it, not due yet
    assert desk.jobs() == [("escalate", False, False)]
    desk.staff(command)
    assert desk.jobs() == [("escalate", False, True)]
    desk.run(timedelta(days=1))
    assert desk.escalations() == []


def test_a_ticket_answered_before_any_pass_gets_no_job(make):
    desk = make()
    desk.staff("On my way.")
    desk.run(timedelta(days=1))
    assert desk.jobs() == [] and desk.escalations() == []


def test_a_note_is_no_answer(make):
    desk = make('[staff]\nleads = ["lead@school.test"]\n')
    desk.staff("#note\nLooking into it.")
    desk.run(timedelta(hours=4))
    assert [r.recipients for r in desk.escalations()] == [["lead@school.test"]]


def test_0s_turns_it_off(make):
    desk = make('[lifecycle]\nescalate_after = "0s"\n')
    desk.run(timedelta(days=30))
    assert desk.jobs() == [] and desk.escalations() == []


def test_due_in_open_hours(make):
    # 14:00 UTC is 08:00 in Chicago: four open hours later is noon there.
    desk = make('[helpdesk]\ntimezone = "America/Chicago"\n'
                '[calendar]\nhours = "Mon-Fri 07:30-16:00"\n')
    desk.run(timedelta(minutes=1))
    with desk.db.sessions() as session:
        [job] = session.scalars(select(Job))
    assert job.due_at == datetime(2026, 12, 7, 18, 0, tzinfo=UTC)


def test_the_mail_shows_times_on_the_desks_clock():
    from mailhelp.delivery.templating import render

    variables = {
        "helpdesk": {"name": "Help Desk", "address": "help@school.test",
                     "timezone": "America/Chicago"},
        "tag": "#1", "ticket": {"id": 1, "subject": "Wifi <b>", "status": "new"},
        "requester": {"name": "Jane", "address": "teacher1@school.test"},
        "participants": [], "waited": "4h", "business_time": True,
        "created_at": "2026-12-07T14:00:00+00:00", "message": {"text": "No <wifi>."},
    }
    mail = render("escalation", variables)
    assert mail.subject == "[#1] No answer yet: Wifi <b>"
    assert "Mon 07 Dec 2026 08:00 CST" in mail.text and "4h of open hours" in mail.text
    assert "08:00 CST" in mail.html and "No &lt;wifi&gt;." in mail.html  # autoescaped
    utc = render("escalation", {**variables, "helpdesk": {"name": "H", "address": "h@x"}})
    assert "Mon 07 Dec 2026 14:00 UTC" in utc.text


def test_a_second_runners_job_sends_nothing_more(make):
    desk = make()
    desk.run(timedelta(minutes=1))
    with desk.db.sessions() as session, session.begin():  # as if two runners planned it
        session.add(Job(kind="escalate", ticket_id=1, due_at=T0, created_at=T0))
    assert desk.run(timedelta(hours=4)) == 2
    assert len(desk.escalations()) == len(STAFF)
    with desk.db.sessions() as session:
        results = sorted(session.scalars(select(Job.result).where(Job.kind == "escalate")))
    assert results == ["escalated to 2", "skipped: escalated already"]


# -- an old backlog: overdue_long_ago (pure) and skip_overdue (on the database) ----------

CHICAGO_SCHOOL = ('[helpdesk]\naddress = "help@school.test"\ntimezone = "America/Chicago"\n'
                  '[calendar]\nhours = "Mon-Fri 07:30-16:00"\n')


def chicago(*parts: int) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(*parts, tzinfo=ZoneInfo("America/Chicago"))


def test_overdue_long_ago_is_a_day_past_due_in_plain_time():
    from mailhelp.config import loads
    from mailhelp.desk.escalation import overdue_long_ago

    config = loads('[helpdesk]\naddress = "help@school.test"\n')  # "4h", no calendar
    assert not overdue_long_ago(config, T0, T0)
    assert not overdue_long_ago(config, T0, T0 + timedelta(hours=8))
    assert not overdue_long_ago(config, T0, T0 + timedelta(days=1))  # just on the line
    assert overdue_long_ago(config, T0, T0 + timedelta(days=1, seconds=1))
    assert overdue_long_ago(config, T0, T0 + timedelta(days=30))
    longer = loads('[helpdesk]\naddress = "help@school.test"\n'
                   '[lifecycle]\nescalate_after = "2d"\n')
    assert not overdue_long_ago(longer, T0, T0 + timedelta(hours=47))
    assert overdue_long_ago(longer, T0, T0 + timedelta(days=2, minutes=1))


def test_a_desk_run_hourly_from_cron_loses_no_escalation():
    from mailhelp.config import loads
    from mailhelp.desk.escalation import overdue_long_ago

    config = loads('[helpdesk]\naddress = "help@school.test"\n'
                   '[lifecycle]\nescalate_after = "30m"\n')
    due_at = T0 + timedelta(minutes=25)  # a ticket at 08:55, due 09:25
    for late in (timedelta(minutes=35), timedelta(hours=1, minutes=35), timedelta(hours=6)):
        assert not overdue_long_ago(config, due_at, due_at + late)  # the next passes


def test_overdue_long_ago_counts_open_days_so_a_weekend_does_not_age_a_ticket():
    from mailhelp.config import loads
    from mailhelp.desk.escalation import overdue_long_ago

    config = loads(CHICAGO_SCHOOL)
    friday = chicago(2026, 12, 11, 15, 0)  # due an hour before Friday's closing
    # An open day after Friday 15:00 is Monday 15:00.
    assert not overdue_long_ago(config, friday, chicago(2026, 12, 14, 7, 30))
    assert not overdue_long_ago(config, friday, chicago(2026, 12, 14, 15, 0))
    assert overdue_long_ago(config, friday, chicago(2026, 12, 14, 15, 1))
    # The same due time in plain time is an old backlog by Saturday afternoon.
    plain = loads('[helpdesk]\naddress = "help@school.test"\ntimezone = "America/Chicago"\n')
    assert not overdue_long_ago(plain, friday, chicago(2026, 12, 12, 15, 0))
    assert overdue_long_ago(plain, friday, chicago(2026, 12, 12, 15, 1))


def test_overdue_long_ago_never_when_escalation_is_off():
    from mailhelp.config import loads
    from mailhelp.desk.escalation import overdue_long_ago

    config = loads('[helpdesk]\naddress = "help@school.test"\n'
                   '[lifecycle]\nescalate_after = "0s"\n')
    assert not overdue_long_ago(config, T0, T0 + timedelta(days=365))


def escalate_results(desk: Desk) -> list[tuple[int, bool, str]]:
    with desk.db.sessions() as session:
        return [(j.ticket_id, j.done_at is not None, j.result) for j in session.scalars(
            select(Job).where(Job.kind == "escalate").order_by(Job.ticket_id))]


SKIPPED = "skipped: overdue by more than 1d (an old backlog)"


def test_an_old_backlog_is_marked_done_unsent_and_a_fresh_ticket_still_escalates(
        make, caplog):
    # As after an upgrade: the first pass with escalation comes long after #1 came in.
    desk = make()
    desk.now = T0 + timedelta(days=1, hours=8, minutes=1)
    desk.mail(REQUEST.replace("r1@", "r2@").replace("Wifi", "Printer"))  # #2, fresh
    with caplog.at_level("WARNING", logger="mailhelp.desk.escalation"):
        assert desk.run(timedelta(days=1, hours=8, minutes=1)) == 0
    assert escalate_results(desk) == [(1, True, SKIPPED), (2, False, "")]
    assert desk.escalations() == []
    [line] = [r.getMessage() for r in caplog.records if "escalations_skipped" in r.getMessage()]
    assert "count=1 " in line and "escalate_after=4h" in line
    # #2 crosses the line as before: mailed when due, an hour late is still in time.
    assert desk.run(timedelta(days=1, hours=13, minutes=1)) == 1
    assert [b"Printer" in mail_of(row) for row in desk.escalations()] == [True, True]
    assert escalate_results(desk) == [(1, True, SKIPPED), (2, True, "escalated to 2")]


def test_a_daemon_stopped_for_days_skips_what_fell_due_meanwhile(make):
    desk = make()
    assert desk.run(timedelta(minutes=1)) == 0  # planned: due at T0 + 4h
    assert desk.run(timedelta(days=3)) == 0
    assert escalate_results(desk) == [(1, True, SKIPPED)]
    assert desk.escalations() == []
    assert desk.run(timedelta(days=4)) == 0  # and never later either
    assert desk.escalations() == []


def test_a_short_stop_delays_the_escalation_and_does_not_drop_it(make):
    desk = make()
    assert desk.run(timedelta(minutes=1)) == 0
    assert desk.run(timedelta(hours=8)) == 1  # due at 4h, the next pass at 8h: in time
    assert len(desk.escalations()) == len(STAFF)


def test_with_open_hours_a_closed_weekend_does_not_age_an_escalation(make):
    # #1 on Monday 7 December 08:00 in Chicago (T0), due at noon; #2 on Friday 11 at
    # 14:00 there, due on Monday 14 at 09:30 (two open hours on Friday, two on Monday).
    desk = make('[helpdesk]\ntimezone = "America/Chicago"\n'
                '[calendar]\nhours = "Mon-Fri 07:30-16:00"\n')
    assert desk.run(timedelta(minutes=1)) == 0
    friday = timedelta(days=4, hours=6)  # 14:00 in Chicago
    desk.now = T0 + friday
    desk.mail(REQUEST.replace("r1@", "r2@").replace("Wifi", "Printer"))
    assert desk.run(friday) == 0  # #1 (due Monday noon) was an old backlog from Tuesday noon
    assert escalate_results(desk) == [(1, True, SKIPPED.replace("1d", "1d of open time")),
                                      (2, False, "")]
    # Monday 10:00 in Chicago, 16:00 UTC: three days after #2's due time on the
    # calendar, half an hour in open time: mailed.
    assert desk.run(timedelta(days=7, hours=2)) == 1
    assert [b"Printer" in mail_of(row) for row in desk.escalations()] == [True, True]
