"""The morning queue: when it is due, what each technician's mail lists, its mailto:
actions (pure, digest.py); and, on a real database, that each occurrence is sent once
per technician and recorded with its mail (periodic.py)."""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Outbox, PeriodicMail, Ticket
from mailhelp.db.session import Database
from mailhelp.desk import commands, digest, periodic
from mailhelp.desk.threads import tag_pattern
from mailhelp.service.pipeline import Arrival, Pipeline
from mailhelp.weekly import DateSpan, WeeklyAt
from tests.helpers import desk_config, mail_of

CHICAGO = ZoneInfo("America/Chicago")
WEEKDAYS = WeeklyAt.parse("Mon-Fri 07:00")
# Monday 7 December 2026, 07:00 in Chicago (CST, UTC-6).
MONDAY_7 = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)


# When ------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "expected"), [
    (MONDAY_7, MONDAY_7),  # on the minute
    (MONDAY_7 + timedelta(hours=10, minutes=59), MONDAY_7),  # 23:59 the same evening
    (MONDAY_7 - timedelta(minutes=1), None),  # 06:59: Friday's is a day old and more
    (MONDAY_7 + timedelta(hours=17), None),  # Tuesday 00:00 local: Monday's is stale
    (MONDAY_7 + timedelta(days=1, minutes=5), MONDAY_7 + timedelta(days=1)),
    (MONDAY_7 - timedelta(days=2), None),  # Saturday
])
def test_due_is_todays_occurrence_and_never_a_stale_one(now, expected):
    assert digest.due(WEEKDAYS, CHICAGO, (), now) == expected


def test_no_queue_on_a_holiday():
    holidays = (DateSpan.parse("2026-12-21..2027-01-01"), DateSpan.parse("2026-12-07"))
    assert digest.due(WEEKDAYS, CHICAGO, holidays, MONDAY_7) is None
    assert digest.due(WEEKDAYS, CHICAGO, holidays, MONDAY_7 + timedelta(days=1)) \
        == MONDAY_7 + timedelta(days=1)
    assert digest.due(WEEKDAYS, CHICAGO, holidays, datetime(2026, 12, 28, 14, tzinfo=UTC)) \
        is None


def test_next_due_skips_the_weekend_and_follows_daylight_saving():
    friday = MONDAY_7 - timedelta(days=3)
    assert digest.next_due(WEEKDAYS, CHICAGO, friday) == MONDAY_7
    assert digest.next_due(WEEKDAYS, CHICAGO, friday - timedelta(minutes=1)) == friday
    # Clocks go forward on Sunday 14 March 2027: 07:00 on Monday is 12:00 UTC, not 13:00.
    before = datetime(2027, 3, 12, 14, 0, tzinfo=UTC)
    assert digest.next_due(WEEKDAYS, CHICAGO, before) == datetime(2027, 3, 15, 12, 0,
                                                                     tzinfo=UTC)
    assert digest.due(WEEKDAYS, CHICAGO, (), datetime(2027, 3, 15, 12, 0, tzinfo=UTC)) \
        == datetime(2027, 3, 15, 12, 0, tzinfo=UTC)


# What ------------------------------------------------------------------------------

def ticket(number: int, status: str, assignee: str = "", hours: float = 1,
           priority: str = "normal") -> digest.QueueTicket:
    return digest.QueueTicket(number, f"Ticket {number}", status, priority, "Jane Teacher",
                              assignee, MONDAY_7 - timedelta(hours=hours))


TECH1, TECH2 = "tech1@school.test", "tech2@school.test"


def test_each_technician_gets_their_own_the_unassigned_and_the_oldest():
    tickets = [ticket(1, "open", TECH1, hours=3), ticket(2, "pending", TECH1, hours=90),
               ticket(3, "new", "", hours=5), ticket(4, "open", TECH2, hours=200),
               ticket(5, "new", "", hours=2, priority="urgent"),
               ticket(6, "pending", "", hours=300),  # waiting on the requester: no one's
               ticket(7, "new", TECH1, hours=1, priority="high")]
    found = digest.queues(tickets, [TECH1, TECH2], oldest=2)
    mine = found[TECH1]
    # Waiting on them first (the most urgent first), then those waiting on the requester.
    assert [t.id for t in mine.mine.tickets] == [7, 1, 2]
    assert [t.id for t in mine.unassigned.tickets] == [5, 3]
    assert [t.id for t in mine.oldest] == [4, 3]
    assert mine.size == 5 and not mine.empty
    assert [t.id for t in found[TECH2].mine.tickets] == [4]


def test_each_list_is_capped_and_says_how_many_more():
    tickets = [ticket(n, "new", hours=n) for n in range(1, 131)]
    tickets += [ticket(n, "open", TECH1, hours=n) for n in range(200, 260)]
    queue = digest.queues(tickets, [TECH1])[TECH1]
    assert len(queue.unassigned.tickets) == digest.CAP and queue.unassigned.more == 80
    assert [t.id for t in queue.unassigned.tickets][:2] == [130, 129]  # the oldest first
    assert queue.mine.total == 60 and queue.mine.more == 10
    text = digest_text(queue)
    assert "... and 80 more." in text and "... and 10 more." in text


def test_nothing_to_do_is_an_empty_queue():
    queue = digest.queues([ticket(1, "open", TECH2)], [TECH1])[TECH1]
    assert queue.empty and queue.size == 0 and [t.id for t in queue.oldest] == [1]


def test_age_in_the_unit_a_person_says():
    assert [digest.age(MONDAY_7 - delta, MONDAY_7) for delta in (
        timedelta(seconds=5), timedelta(minutes=40), timedelta(hours=5),
        timedelta(hours=47), timedelta(days=9, hours=3))] == [
        "1 min", "40 min", "5 h", "47 h", "9 days"]


# The mailto: actions ---------------------------------------------------------------

def digest_text(queue: digest.Queue) -> str:
    from mailhelp.delivery.templating import render

    variables = digest.variables(
        queue, helpdesk={"name": "Help Desk", "address": "help+it@school.test"},
        tag=lambda n: f"#{n}", zone=CHICAGO, now=MONDAY_7)
    return render("queue", variables).text


def compose(url: str, sender: str) -> EmailMessage:
    """What a mail client makes of a mailto: URL (RFC 6068)."""
    parts = urlsplit(url)
    assert parts.scheme == "mailto"
    query = parse_qs(parts.query, keep_blank_values=True)
    made = EmailMessage()
    made["From"], made["To"] = sender, unquote(parts.path)
    made["Subject"] = query["subject"][0]
    made.set_content(query["body"][0].replace("\r\n", "\n"))
    return made


def test_an_action_composes_the_command_on_the_ticket_whatever_its_subject_holds():
    subject = 'Beamer "Raum 12" & Wi-Fi + 100% kaputt?\n#close <b>' + "x" * 300
    url = digest.action("help+it@school.test", "#42", subject, "take")
    assert " " not in url and "\n" not in url and "+" not in url.partition("?")[2]
    assert url.startswith("mailto:help+it@school.test?subject=%5B%2342%5D%20Beamer%20%22")
    made = compose(url, TECH1)
    assert made["To"] == "help+it@school.test"
    assert made["Subject"].startswith('[#42] Beamer "Raum 12" & Wi-Fi + 100% kaputt? #close')
    assert len(made["Subject"]) <= digest.SUBJECT_CHARS + 6
    assert int(tag_pattern("#{id}").search(made["Subject"]).group(1)) == 42
    parsed = commands.parse(made.get_content())
    assert [c.name for c in parsed.commands] == ["take"] and parsed.text == ""


def test_the_mail_carries_take_and_resolve_links_for_each_ticket():
    tickets = [ticket(1, "open", TECH1), ticket(2, "new")]
    queue = digest.queues(tickets, [TECH1])[TECH1]
    variables = digest.variables(queue, helpdesk={"name": "Help Desk",
                                                  "address": "help@school.test"},
                                 tag=lambda n: f"#{n}", zone=CHICAGO, now=MONDAY_7)
    assert variables["day"] == "Monday 7 December"
    [own] = variables["mine"]["tickets"]
    assert own["take"] == ""  # it is theirs already
    assert compose(own["resolve"], TECH1).get_content() == "#resolve\n"
    [other] = variables["unassigned"]["tickets"]
    assert compose(other["take"], TECH1)["Subject"] == "[#2] Ticket 2"
    text = digest_text(queue)
    assert digest.action("help+it@school.test", "#2", "Ticket 2", "take") in text
    assert "mailto:help+it@school.test?subject=%5B%232%5D%20Ticket%202&body=%23take%0D%0A" \
        in text


def test_the_html_part_escapes_what_teachers_wrote():
    from mailhelp.delivery.templating import render

    evil = digest.QueueTicket(9, "<script>alert(1)</script>", "new", "normal",
                              "<b>Mallory</b>", "", MONDAY_7)
    queue = digest.queues([evil], [TECH1])[TECH1]
    html = render("queue", digest.variables(
        queue, helpdesk={"name": "Help Desk", "address": "help@school.test"},
        tag=lambda n: f"#{n}", zone=CHICAGO, now=MONDAY_7)).html
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>Mallory" not in html
    assert 'href="mailto:help@school.test?subject=%5B%239%5D%20%3Cscript%3E' in html


# Sent once, recorded with its mail (a real database) --------------------------------

class Desk:
    def __init__(self, tmp_path, database_url):
        self.config = desk_config(
            tmp_path, database_url,
            '[helpdesk]\ntimezone = "America/Chicago"\n[staff]\nqueue_digest = "Mon-Fri 07:00"\n',
            staff=(TECH1, TECH2))
        self.db = Database(database_url)
        upgrade(self.db)
        self.now = MONDAY_7 - timedelta(days=3)
        self.pipeline = Pipeline(self.config, self.db, lambda: self.now)

    def mail(self, raw: str) -> None:
        [result] = self.pipeline.accept([Arrival(raw.encode(), "t")])
        assert not result.failed, result.error

    def run(self, now: datetime) -> int:
        self.now = now
        return periodic.run_due(self.db, self.config, now)

    def rows(self, model, *where):
        with self.db.sessions() as session:
            return list(session.scalars(select(model).where(*where).order_by(model.id)))


@pytest.fixture
def desk(tmp_path, database_url):
    desk = Desk(tmp_path, database_url)
    desk.mail("From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Wifi\n"
              "Message-ID: <r1@x>\n\nNo wifi in room 3.\n")
    desk.mail("From: Sam <tech1@school.test>\nTo: help@school.test\nSubject: Re: [#1] Wifi\n"
              "Message-ID: <s1@x>\n\n#take\n")
    yield desk
    desk.db.dispose()


def test_one_queue_mail_per_technician_and_occurrence(desk, caplog):
    caplog.set_level(logging.INFO, logger="mailhelp.desk.periodic")
    desk.mail("From: Bob <teacher2@school.test>\nTo: help@school.test\nSubject: Printer\n"
              "Message-ID: <r2@x>\n\nThe printer jams.\n")
    assert desk.run(MONDAY_7 - timedelta(minutes=1)) == 0  # Friday's is stale by now
    assert desk.run(MONDAY_7) == 2
    assert desk.run(MONDAY_7 + timedelta(hours=2)) == 0  # the same occurrence
    queued = desk.rows(Outbox, Outbox.kind == "queue")
    assert [row.recipients for row in queued] == [[TECH1], [TECH2]]
    assert all(row.ticket_id is None and row.status == "queued" for row in queued)
    records = desk.rows(PeriodicMail)
    assert [(r.kind, r.recipient, r.due_at, r.message_id) for r in records] == [
        ("queue_digest", TECH1, MONDAY_7, queued[0].message_id),
        ("queue_digest", TECH2, MONDAY_7, queued[1].message_id)]
    mine = email.message_from_bytes(mail_of(queued[0]), policy=email.policy.default)
    assert mine["Subject"] == ("[Springfield SD Help Desk] Your queue for Monday 7 December: "
                               "1 yours, 1 unassigned")
    assert mine["Auto-Submitted"] == "auto-generated"
    assert "Resolve: mailto:help@school.test?subject=%5B%231%5D%20Wifi&body=%23resolve" in \
        mine.get_body(("plain",)).get_content()
    lines = [r.getMessage() for r in caplog.records if "action=queue_digest" in r.getMessage()]
    assert len(lines) == 2 and f"to={TECH1} tickets=2 " in lines[0]
    assert f"to={TECH2} tickets=1 " in lines[1]
    assert desk.run(MONDAY_7 + timedelta(days=1)) == 2  # Tuesday's


def test_a_technician_with_nothing_to_do_gets_no_mail_and_the_log_says_so(desk, caplog):
    caplog.set_level(logging.INFO, logger="mailhelp.desk.periodic")
    desk.now = MONDAY_7 - timedelta(hours=1)
    desk.mail("From: Sam <tech1@school.test>\nTo: help@school.test\nSubject: Re: [#1] Wifi\n"
              "Message-ID: <s2@x>\n\n#resolve\n")
    assert desk.run(MONDAY_7) == 0
    assert desk.rows(Outbox, Outbox.kind == "queue") == []
    assert [r.result for r in desk.rows(PeriodicMail)] == [periodic.NOTHING] * 2
    lines = [r.getMessage() for r in caplog.records if "action=queue_digest" in r.getMessage()]
    assert len(lines) == 2 and all("tickets=0" in line and "sent=no reason=nothing in the "
                                   "queue" in line for line in lines)
    assert desk.run(MONDAY_7 + timedelta(minutes=30)) == 0  # decided once: no second line
    assert len([r for r in caplog.records if "action=queue_digest" in r.getMessage()]) == 2


def test_a_second_runner_that_raced_past_the_check_sends_nothing(desk, caplog):
    caplog.set_level(logging.INFO, logger="mailhelp.desk.periodic")
    with desk.db.sessions() as session:
        tickets = periodic._active_tickets(session)
    queue = digest.queues(tickets, [TECH1])[TECH1]
    assert periodic._send(desk.db, desk.config, queue, MONDAY_7, MONDAY_7) == 1
    assert periodic._send(desk.db, desk.config, queue, MONDAY_7, MONDAY_7) == 0
    assert len(desk.rows(Outbox, Outbox.kind == "queue")) == 1
    assert len(desk.rows(PeriodicMail)) == 1
    assert "reason=another runner sent it" in caplog.text


def test_a_mail_composed_from_an_action_takes_the_ticket_and_tells_the_teacher_nothing(desk):
    desk.mail("From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Printer\n"
              "Message-ID: <r2@x>\n\nThe printer jams.\n")
    desk.run(MONDAY_7)
    [_, theirs] = desk.rows(Outbox, Outbox.kind == "queue")
    text = email.message_from_bytes(mail_of(theirs), policy=email.policy.default) \
        .get_body(("plain",)).get_content()
    take = next(line.split(": ", 1)[1].strip() for line in text.splitlines()
                if line.strip().startswith("Take:") and "%232%5D" in line)
    made = compose(take, "Alex <tech2@school.test>")
    made.set_content(made.get_content() + "\n-- \nAlex Tech\nIT, ext. 4410\n")  # signed
    made["Message-ID"] = "<take-2@x>"
    relays_before = len(desk.rows(Outbox, Outbox.kind == "relay"))
    desk.mail(made.as_string())
    with desk.db.sessions() as session:
        assert session.get(Ticket, 2).assignee.address == TECH2
        assert session.get(Ticket, 2).status == "new"
    # The signature is no answer: nothing goes to the teacher.
    assert len(desk.rows(Outbox, Outbox.kind == "relay")) == relays_before


def test_the_daemon_wakes_for_the_next_queue(tmp_path, database_url):
    from mailhelp.app import App
    from mailhelp.service.daemon import _until_next_job

    friday_8 = MONDAY_7 - timedelta(days=2, hours=23)  # Friday 08:00 in Chicago
    db = Database(database_url)
    upgrade(db)  # no ticket, so no job: only the queue to wait for
    queue = desk_config(tmp_path, database_url, '[helpdesk]\ntimezone = "America/Chicago"\n'
                        '[staff]\nqueue_digest = "Mon-Fri 07:00"\n')
    assert _until_next_job(App(queue, db, lambda: friday_8), 10 ** 7) \
        == (MONDAY_7 - friday_8).total_seconds()
    assert _until_next_job(App(desk_config(tmp_path, database_url), db, lambda: friday_8),
                           10 ** 7) == 10 ** 7
    db.dispose()


def test_the_logo_goes_with_the_queue_mail(tmp_path, database_url):
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    config = desk_config(tmp_path, database_url,
                         f'[helpdesk]\nlogo = "{logo}"\n[staff]\nqueue_digest = "daily 07:00"\n')
    db = Database(database_url)
    upgrade(db)
    Pipeline(config, db, lambda: MONDAY_7).accept([Arrival(
        b"From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Wifi\n"
        b"Message-ID: <r1@x>\n\nNo wifi.\n", "t")])
    assert periodic.run_due(db, config, MONDAY_7) == 1
    with db.sessions() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == "queue"))
        sent = email.message_from_bytes(mail_of(row), policy=email.policy.default)
    db.dispose()
    html = sent.get_body(("html",))
    assert 'src="cid:logo@mailhelp"' in html.get_content()
    [image] = [part for part in sent.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo@mailhelp>"
