"""Business time over real IMAP and SMTP, driven only by mail and ``mailhelp run --once
--now``: escalation of a ticket nobody answered (once, to the leads; not when staff
answered first; not ticket by ticket for the old backlog after an upgrade), a reminder
due on a Saturday going out on Monday at opening, no auto-resolve over the winter
break, and the same desk without [calendar] counting plain calendar time. Times in the
CLI are on the desk's clock (America/Chicago)."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from mailhelp.db.models import Job, TicketEvent
from tests import mailclients
from tests.helpers import mailhelp, settled_outbox, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
CHICAGO = ZoneInfo("America/Chicago")
TEACHER1, TEACHER2 = "teacher1@school.test", "teacher2@school.test"
TECH1, LEAD = "tech1@school.test", "tech2@school.test"
ZONE = '[helpdesk]\ntimezone = "America/Chicago"\n'
DESK = ('[staff]\nleads = ["tech2@school.test"]\n'
        '[lifecycle]\nescalate_after = "4h"\npending_reminder_after = "1d"\n'
        'pending_resolve_after = "3d"\n[survey]\nenabled = false\n')
REMINDER = "Waiting for your answer"
SCHOOL = ('[calendar]\nhours = "Mon-Fri 07:30-16:00"\n'
          'holidays = ["2026-12-21..2027-01-01", "2027-01-18"]\n')


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=CHICAGO)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


class Desk:
    def __init__(self, mail, config, database_url: str) -> None:
        self.mail, self.config, self.url = mail, config, database_url

    def run(self, when: datetime, raw: bytes | None = None) -> str:
        """Mail arrives (if any) and the desk runs once at ``when``; returns its log."""
        if raw is not None:
            client = self.mail.imap(HELP)
            try:
                client.append("INBOX", raw)
            finally:
                client.logout()
        done = mailhelp(self.config, "run", "--once", "--now", when.isoformat())
        assert done.returncode == 0, done.stderr.decode()
        settled_outbox(self.config)  # every mail the run meant to send is delivered
        return done.stderr.decode()

    def mails(self, user: str, ticket: int, subject: str = "") -> list[email.message.Message]:
        """The mail in ``user``'s INBOX about ``ticket`` (subject containing ``subject``)."""
        found = [parsed(raw) for raw in self.mail.messages(user)]
        return [m for m in found if f"[#{ticket}]" in m["Subject"] and subject in m["Subject"]]

    def escalations(self, user: str, ticket: int) -> list[email.message.Message]:
        return self.mails(user, ticket, "No answer yet")

    def answer(self, ticket: int, when: datetime, text: str = "Restart it, please.") -> None:
        note = next(m for m in self.mails(TECH1, ticket) if "No answer yet" not in m["Subject"])
        self.run(when, mailclients.gmail(note.as_bytes(), f"Sam Tech <{TECH1}>", text))
        assert self.show(ticket)["status"] == "pending"

    def show(self, ticket: int) -> dict:
        done = mailhelp(self.config, "tickets", "show", str(ticket), "--json")
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    def rows(self, query):
        engine = create_engine(self.url)
        try:
            with Session(engine) as session:
                return list(session.execute(query))
        finally:
            engine.dispose()


@pytest.fixture(params=["school", "calendar"])
def desk(request, tmp_path, database_url, mail) -> Desk:
    extra = ZONE + DESK + (SCHOOL if request.param == "school" else "")
    config = write_config(tmp_path, database_url, mail, extra=extra)
    assert mailhelp(config, "init").returncode == 0
    return Desk(mail, config, database_url)


def new(sender: str, subject: str) -> bytes:
    return mailclients.new_message(sender, subject, "It does not work.\nThanks")


def test_escalation_reminders_and_auto_resolve_count_open_time(desk, request):
    school = "school" in request.node.callspec.id
    # Monday 7 December, 14:00: two requests. Nobody answers #1; tech1 answers #2.
    desk.run(local(2026, 12, 7, 14, 0), new(f"Jane <{TEACHER1}>", "Projector in room 12"))
    desk.run(local(2026, 12, 7, 14, 0), new(f"Tom <{TEACHER2}>", "Printer jam"))
    desk.answer(2, local(2026, 12, 7, 14, 30))

    # escalate_after = 4h: Tuesday 09:30 with school hours (2h on Monday until 16:00,
    # 2h from Tuesday's opening); Monday 18:00 on the calendar.
    due = local(2026, 12, 8, 9, 30) if school else local(2026, 12, 7, 18, 0)
    if school:
        desk.run(local(2026, 12, 7, 18, 0))  # the calendar's due time: nothing yet
        assert desk.escalations(LEAD, 1) == []
    desk.run(due - timedelta(minutes=1))
    assert desk.escalations(LEAD, 1) == []
    desk.run(due)
    [alert] = desk.escalations(LEAD, 1)
    desk.run(local(2026, 12, 8, 12, 0))  # a second run: still one
    assert len(desk.escalations(LEAD, 1)) == 1
    # To the leads only, threaded under the lead's notification of the ticket.
    assert desk.escalations(TECH1, 1) == []
    [notification] = [m for m in desk.mails(LEAD, 1) if m is not alert
                      and "No answer yet" not in m["Subject"]]
    assert alert["In-Reply-To"] == notification["Message-ID"]
    text = alert.get_body(("plain",)).get_content()
    assert "It does not work." in text and "#take" in text
    assert "Mon 07 Dec 2026 14:00 CST" in text  # the desk's clock, not UTC (20:00)
    # Answered first: #2 is never escalated; its job was cancelled by the answer.
    assert desk.escalations(LEAD, 2) == [] and desk.escalations(TECH1, 2) == []
    jobs = desk.rows(select(Job.ticket_id, Job.done_at, Job.cancelled_at, Job.result)
                     .where(Job.kind == "escalate").order_by(Job.ticket_id))
    assert [(j.ticket_id, j.done_at is not None, j.cancelled_at is not None) for j in jobs] \
        == [(1, True, False), (2, False, True)]
    assert jobs[0].result == "escalated to 1"
    events = desk.rows(select(TicketEvent.ticket_id, TicketEvent.detail)
                       .where(TicketEvent.action == "escalated"))
    assert [(e.ticket_id, e.detail) for e in events] == [(1, LEAD)]

    # tech1 answers #1 on Friday 11 December at 07:00, before opening. A reminder a day
    # later is due on Saturday at 07:00 on the calendar; with school hours the count
    # starts at Friday's opening, so it goes out on Monday at opening, 07:30.
    desk.answer(1, local(2026, 12, 11, 7, 0))
    desk.run(local(2026, 12, 12, 7, 0))  # Saturday
    assert len(desk.mails(TEACHER1, 1, REMINDER)) == (0 if school else 1)
    desk.run(local(2026, 12, 14, 7, 29))
    assert len(desk.mails(TEACHER1, 1, REMINDER)) == (0 if school else 1)
    desk.run(local(2026, 12, 14, 7, 30))  # Monday, opening
    assert len(desk.mails(TEACHER1, 1, REMINDER)) == 1

    # #3 is answered on Thursday 17 December, 09:30, the week before the winter break
    # (21 December to 1 January). Three days later is Sunday 20 December on the
    # calendar; in school days, Friday 18, Monday 4 and Tuesday 5 January, 09:30.
    desk.run(local(2026, 12, 17, 9, 0), new(f"Tom <{TEACHER2}>", "Laptop cart 3"))
    desk.answer(3, local(2026, 12, 17, 9, 30))
    desk.run(local(2026, 12, 20, 9, 31))
    if not school:  # on the calendar, resolved on Sunday in the break
        assert desk.show(3)["status"] == "resolved"
        assert len(desk.mails(TEACHER2, 3, "Resolved:")) == 1
        return
    assert desk.show(3)["status"] == "pending"
    desk.run(local(2026, 12, 30, 12, 0))  # in the break
    desk.run(local(2027, 1, 5, 9, 29))
    assert desk.show(3)["status"] == "pending"
    assert desk.mails(TEACHER2, 3, "Resolved:") == []
    desk.run(local(2027, 1, 5, 9, 30))
    ticket = desk.show(3)
    assert ticket["status"] == "resolved"
    assert datetime.fromisoformat(ticket["resolved_at"]) == local(2027, 1, 5, 9, 30)
    assert len(desk.mails(TEACHER2, 3, "Resolved:")) == 1


@pytest.mark.parametrize("hours", ["school", "calendar"])
def test_after_an_upgrade_the_old_backlog_is_not_mailed_ticket_by_ticket(
        tmp_path, database_url, mail, hours):
    school = hours == "school"
    extra = ZONE + DESK + (SCHOOL if school else "")
    before = write_config(tmp_path, database_url, mail,
                          extra=extra + '[lifecycle]\nescalate_after = "0s"\n')
    assert mailhelp(before, "init").returncode == 0
    desk = Desk(mail, before, database_url)
    # Before the upgrade (no escalation): three requests nobody answers.
    desk.run(local(2026, 12, 7, 9, 0), new(f"Jane <{TEACHER1}>", "Projector in room 12"))
    desk.run(local(2026, 12, 10, 9, 0), new(f"Tom <{TEACHER2}>", "Printer jam"))
    desk.run(local(2026, 12, 11, 14, 0), new(f"Jane <{TEACHER1}>", "Laptop cart 3"))
    # The upgrade (escalate_after = "4h"), and its first pass on Monday 14 at 08:00,
    # with a fresh request #4. #1 and #2 fell due days ago. #3's escalation fell due
    # on Friday at 18:00 on the calendar (an old backlog by Monday); in school hours,
    # on Monday at 09:30 (two open hours on Friday, two on Monday): not yet due.
    assert write_config(tmp_path, database_url, mail, extra=extra) == before
    log = desk.run(local(2026, 12, 14, 8, 0), new(f"Tom <{TEACHER2}>", "Wifi in the gym"))
    [line] = [x for x in log.splitlines() if "action=escalations_skipped" in x]
    assert f"count={2 if school else 3} " in line, line
    skipped = "skipped: overdue by more than 1d" + (" of open time" if school else "")
    jobs = desk.rows(select(Job.ticket_id, Job.done_at, Job.result)
                     .where(Job.kind == "escalate").order_by(Job.ticket_id))
    assert [(j.ticket_id, j.done_at is not None, j.result.startswith(skipped))
            for j in jobs] == [(1, True, True), (2, True, True), (3, not school, not school),
                               (4, False, False)]
    # Noon: #4 (due now) and, in school hours, #3 (two and a half hours late) go to the
    # lead as before; the backlog never does, then or later.
    desk.run(local(2026, 12, 14, 12, 0))
    desk.run(local(2026, 12, 15, 12, 0))
    escalated = [n for n in (1, 2, 3, 4) if desk.escalations(LEAD, n)]
    assert escalated == ([3, 4] if school else [4])
    assert all(len(desk.escalations(LEAD, n)) == 1 for n in escalated)
    events = desk.rows(select(TicketEvent.ticket_id).where(TicketEvent.action == "escalated"))
    assert sorted(e.ticket_id for e in events) == escalated


def test_times_in_the_cli_are_on_the_desks_clock(tmp_path, database_url, mail):
    config = write_config(tmp_path, database_url, mail, extra=ZONE + DESK)
    assert mailhelp(config, "init").returncode == 0
    desk = Desk(mail, config, database_url)
    desk.run(local(2026, 12, 7, 7, 30), new(f"Jane <{TEACHER1}>", "Projector in room 12"))
    ticket = desk.show(1)
    assert ticket["created_at"] == "2026-12-07T07:30:00-06:00"  # ISO 8601, with the offset
    assert all(m["date"].endswith("-06:00") for m in ticket["messages"]
               if m["direction"] == "out")
    listed = json.loads(mailhelp(config, "tickets", "list", "--json").stdout)
    assert listed[0]["created_at"] == "2026-12-07T07:30:00-06:00"
    line = mailhelp(config, "tickets", "list").stdout.decode()
    # Piped: tab-separated, the opening and the last update on the desk's clock.
    assert re.search(r"^1\tnew\tnormal\t2026-12-07T07:30:00-06:00\t", line, re.M), line
    shown = mailhelp(config, "tickets", "show", "1").stdout.decode()
    assert "Opened:    2026-12-07 07:30 CST" in shown, shown
