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
