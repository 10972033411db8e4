"""The morning queue over real Dovecot and SMTP (issue 18): at ``[staff] queue_digest``
each technician's INBOX gets one mail listing their tickets, the unassigned ones and
the longest waiting; a second run at the same time sends none; its mailto: actions,
composed as a mail client composes them and sent through the relay as the technician
(logged in, so the relay vouches for them), take and resolve the ticket.

One desk for the module: the steps follow one another through a Monday morning, as
the technicians would live it, and each test starts where the one before left off.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from html.parser import HTMLParser
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from mailhelp.states import OutboxStatus
from tests.helpers import mailhelp, outbox, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
TEACHER1, TEACHER2 = "teacher1@school.test", "teacher2@school.test"
TECH1, TECH2 = "tech1@school.test", "tech2@school.test"
# The desk's Friday and Monday, in Chicago (UTC-6 in December).
FRIDAY = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # 06:00 local: before Friday's queue
MONDAY_7 = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)  # 07:00 local: the queue is due
EXTRA = """
[helpdesk]
timezone = "America/Chicago"
[staff]
queue_digest = "Mon-Fri 07:00"
[authentication]
trusted_authserv_ids = ["localmail.test"]
unauthenticated_staff = "note"
"""


class Desk:
    def __init__(self, mail, config, database_url) -> None:
        self.mail, self.config, self.database_url = mail, config, database_url

    def submit(self, sender: str, subject: str, body: str, login: bool = False,
               in_reply_to: str = "") -> None:
        made = EmailMessage()
        made["From"], made["To"], made["Subject"] = sender, HELP, subject
        made["Message-ID"] = make_msgid(domain="school.test")
        if in_reply_to:
            made["In-Reply-To"] = made["References"] = in_reply_to
        made.set_content(body)
        self.send(made, login=email.utils.parseaddr(sender)[1] if login else "")

    def send(self, made: EmailMessage, login: str = "") -> None:
        with smtplib.SMTP(self.mail.smtp_host, self.mail.smtp_port, timeout=10) as smtp:
            if login:
                smtp.login(login, self.mail.users[login])
            smtp.send_message(made)

    def run(self, now: datetime) -> str:
        done = mailhelp(self.config, "run", "--once", "--now", now.isoformat())
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        return done.stdout.decode()

    def ticket(self, number: int) -> dict:
        done = mailhelp(self.config, "tickets", "show", str(number), "--json")
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    def queue_rows(self, to: str | None = None) -> list[dict]:
        rows = [row for row in outbox(self.database_url, to) if row["kind"] == "queue"]
        assert all(row["status"] == OutboxStatus.SENT for row in rows), rows
        return rows

    def queue_mails(self, user: str) -> list[email.message.EmailMessage]:
        """The queue mails in ``user``'s INBOX, as many as the outbox sent them."""
        found = [parsed(raw) for raw in self.mail.messages(user)]
        mails = [m for m in found if "Your queue for" in (m["Subject"] or "")]
        assert len(mails) == len(self.queue_rows(user)), (user, len(mails))
        return mails


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def plain(message: email.message.EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def section(text: str, title: str) -> str:
    """The part of the text mail under one heading (YOURS..., UNASSIGNED...)."""
    start = text.index(title)
    end = min([i for i in (text.find("\nUNASSIGNED", start + 1),
                           text.find("\nWAITING LONGEST", start + 1),
                           text.find("\n--\n", start + 1)) if i > 0])
    return text[start:end]


def tags(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^  \[#(\d+)\]", text, re.M)]


class Links(HTMLParser):
    """The href and the words of every link in an HTML part, as a reader clicks them."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data) -> None:
        if self._href is not None and data.strip():
            self.links.append((self._href, data.strip()))
            self._href = None


def compose(url: str, sender: str, signature: str) -> EmailMessage:
    """The message a mail client composes from a mailto: URL (RFC 6068), signed as the
    technician's client signs new mail; ready to send."""
    parts = urlsplit(url)
    assert parts.scheme == "mailto"
    fields = {name.lower(): values[0] for name, values in
              parse_qs(parts.query, keep_blank_values=True).items()}
    made = EmailMessage()
    made["From"], made["To"] = sender, unquote(parts.path)
    made["Subject"] = fields["subject"]
    made["Message-ID"] = make_msgid(domain="school.test")
    made.set_content(fields["body"].replace("\r\n", "\n") + f"\n-- \n{signature}\n")
    return made


@pytest.fixture(scope="module")
def desk(mail_servers_session, module_database_url, tmp_path_factory) -> Desk:
    mail = mail_servers_session
    mail.clear_mailboxes()
    config = write_config(tmp_path_factory.mktemp("queue-desk"), module_database_url, mail,
                          extra=EXTRA)
    assert mailhelp(config, "init").returncode == 0
    desk = Desk(mail, config, module_database_url)
    # Friday: four requests; tech1 answers #1, tech2 takes #2, tech1 resolves #4; #3
    # waits for someone.
    desk.submit(TEACHER1, "Projector in room 12", "It shows 'No signal'.")
    desk.submit(TEACHER2, "Printer jam in the office", "Paper stuck in tray 2.")
    desk.submit(TEACHER1, "Wifi down in room 3", "No network since the break.")
    desk.submit(TEACHER2, "Password reset", "I forgot my password.")
    desk.run(FRIDAY)
    desk.submit(TECH1, "Re: [#1] Projector in room 12", "Try another HDMI cable, please.",
                login=True)
    desk.submit(TECH2, "Re: [#2] Printer jam in the office", "#take", login=True)
    desk.submit(TECH1, "Re: [#4] Password reset", "#resolve\nDone: check your mail.",
                login=True)
    desk.run(FRIDAY + timedelta(minutes=30))
    assert desk.queue_rows() == []  # Thursday's is a day old, Friday's not yet due
    assert [desk.ticket(n)["status"] for n in (1, 2, 3, 4)] == [
        "pending", "new", "new", "resolved"]
    return desk


def test_each_technician_gets_one_queue_mail_with_the_right_tickets(desk):
    desk.run(MONDAY_7)
    assert len(desk.queue_rows()) == 2

    [tech1] = desk.queue_mails(TECH1)
    assert tech1["Subject"] == ("[Springfield SD Help Desk] Your queue for Monday 7 December: "
                                "1 yours, 1 unassigned")
    text = plain(tech1)
    assert tags(section(text, "YOURS")) == [1]
    assert tags(section(text, "UNASSIGNED")) == [3]
    # The desk's longest waiting, whoever has them: #3 untouched since 06:00 on Friday,
    # then #2 (tech2's), taken at 06:30.
    assert tags(section(text, "WAITING LONGEST")) == [3, 2]
    assert "last change 3 days ago" in section(text, "WAITING LONGEST")
    assert "Password reset" not in text  # resolved

    [tech2] = desk.queue_mails(TECH2)
    text = plain(tech2)
    assert tags(section(text, "YOURS")) == [2] and tags(section(text, "UNASSIGNED")) == [3]
    # Staff mail: from the help address, never held by the limits, marked automatic.
    assert email.utils.parseaddr(tech2["From"])[1] == HELP
    assert tech2["Auto-Submitted"] == "auto-generated"
    assert desk.mail.messages(TEACHER1) and not any(
        b"Your queue for" in raw for raw in desk.mail.messages(TEACHER1))


def test_a_second_run_at_the_same_time_and_later_that_day_sends_none(desk):
    desk.run(MONDAY_7)
    desk.run(MONDAY_7 + timedelta(hours=3))
    assert len(desk.queue_rows()) == 2
    assert len(desk.queue_mails(TECH1)) == len(desk.queue_mails(TECH2)) == 1


def test_take_from_the_html_button_assigns_the_ticket_and_tells_the_teacher_nothing(desk):
    [queue] = desk.queue_mails(TECH2)
    reader = Links()
    reader.feed(queue.get_body(("html",)).get_content())
    # #3 is listed twice (unassigned, and among the longest waiting): the same action.
    [take] = {href for href, words in reader.links if words == "Take" and "%5B%233%5D" in href}
    teacher_mail = len(desk.mail.messages(TEACHER1))
    desk.send(compose(take, "Alex Tech <tech2@school.test>", "Alex Tech\nIT, ext. 4410"),
              login=TECH2)
    desk.run(MONDAY_7 + timedelta(minutes=5))

    ticket = desk.ticket(3)
    assert ticket["assignee"] == TECH2 and ticket["status"] == "new"
    [taken] = [m for m in ticket["messages"] if m["message_id"] and m["from"] == TECH2]
    assert taken["kind"] == "staff_reply" and taken["text"] == ""
    # Nothing was relayed: the teacher's mailbox holds what it held.
    assert len(desk.mail.messages(TEACHER1)) == teacher_mail
    assert "relay" not in [m["kind"] for m in ticket["messages"]]


def test_resolve_from_the_text_link_resolves_the_ticket(desk):
    [queue] = desk.queue_mails(TECH1)
    [resolve] = {line.split("Resolve: ", 1)[1] for line in plain(queue).splitlines()
                 if "Resolve: " in line and "%5B%231%5D" in line}
    desk.send(compose(resolve.strip(), "Sam Tech <tech1@school.test>", "Sam"), login=TECH1)
    desk.run(MONDAY_7 + timedelta(minutes=10))
    ticket = desk.ticket(1)
    assert ticket["status"] == "resolved" and ticket["assignee"] == TECH1
    # The teacher is told it is resolved, as after any #resolve; no answer is relayed.
    kinds = [row["kind"] for row in outbox(desk.database_url, TEACHER1)]
    assert kinds.count("relay") == 1  # Friday's answer, and only it


def test_an_unproven_sender_cannot_act_from_a_queue_link(desk):
    """A forged mail in tech1's name (not logged in to the relay) composed from the same
    link is kept as a note: the ticket is not taken."""
    [queue] = desk.queue_mails(TECH1)
    [take] = {line.split("Take: ", 1)[1] for line in plain(queue).splitlines()
              if "Take: " in line and "%5B%232%5D" in line}
    desk.send(compose(take.strip(), "Sam Tech <tech1@school.test>", "Sam"))
    desk.run(MONDAY_7 + timedelta(minutes=15))
    ticket = desk.ticket(2)
    assert ticket["assignee"] == TECH2
    assert [m["kind"] for m in ticket["messages"] if m["from"] == TECH1] == ["note"]


def test_tuesday_queue_missed_at_seven_goes_out_when_the_desk_is_back_that_day(desk):
    tuesday_7 = MONDAY_7 + timedelta(days=1)
    desk.run(tuesday_7 - timedelta(minutes=1))  # 06:59: Monday's is over, Tuesday's not due
    assert len(desk.queue_rows()) == 2
    desk.run(tuesday_7 + timedelta(hours=3))  # down at 07:00, back at 10:00
    [_, tuesday] = desk.queue_mails(TECH2)
    text = plain(tuesday)
    assert "Tuesday 8 December" in tuesday["Subject"]
    assert sorted(tags(section(text, "YOURS"))) == [2, 3]  # #3 is theirs now
    assert "UNASSIGNED (0)" in text
    # tech1 has nothing left (both theirs resolved, none unassigned): no mail for them.
    assert len(desk.queue_mails(TECH1)) == 1 and len(desk.queue_rows()) == 3


def test_two_runners_at_once_queue_each_mail_once(desk, tmp_path):
    """Two `run --once` at the same instant race for Wednesday's queue: one row each.
    Their relay is away (a closed port), so that what is compared is what they queued;
    the next run sends it. (Two senders flushing one outbox at the same moment may
    both send a row: the outbox's matter, not the queue's.)"""
    import subprocess
    import sys

    from mailhelp.localmail import free_port

    away = write_config(tmp_path, desk.database_url, desk.mail, smtp_port=free_port(),
                        extra=EXTRA)
    wednesday_7 = MONDAY_7 + timedelta(days=2)
    runners = [subprocess.Popen(
        [sys.executable, "-m", "mailhelp", "--config", str(away), "run", "--once",
         "--now", wednesday_7.isoformat()], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    for runner in runners:
        output, _ = runner.communicate(timeout=60)
        assert runner.returncode == 0, output.decode()
    queued = [row for row in outbox(desk.database_url, TECH2) if row["kind"] == "queue"]
    assert [row["status"] for row in queued] == [OutboxStatus.SENT] * 2 + [OutboxStatus.QUEUED]
    desk.run(wednesday_7 + timedelta(minutes=5))
    assert len(desk.queue_rows(TECH2)) == 3  # Monday's, Tuesday's and Wednesday's
    assert "Wednesday 9 December" in desk.queue_mails(TECH2)[-1]["Subject"]
