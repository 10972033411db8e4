"""The district directory and categories over Dovecot and the relay, with the daemon
running: a teacher's request takes the name, school and room the roster gives and the
category its words give; the teacher's ack and the staff notification show them; the
roster rewritten on disk is read by the running daemon for the next request; a
technician, logged in to the relay, files a ticket with #category by mail, and an
unknown name gets the command-error mail listing the known ones."""

from __future__ import annotations

import email
import email.policy
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from mailhelp.db.models import Ticket, TicketEvent
from tests import mailclients
from tests.helpers import Daemon, mailhelp, wait_for_outbox, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
TEACHER1, TEACHER2, TECH1 = "teacher1@school.test", "teacher2@school.test", "tech1@school.test"
EXTRA = """
[authentication]
trusted_authserv_ids = ["localmail.test"]
unauthenticated_staff = "note"
[directory]
csv = "staff.csv"
"""
CATEGORIES = """
[[categories]]
name = "Printers"
keywords = ["printer", "toner", "paper jam"]

[[categories]]
name = "Network"
keywords = ["wifi", "internet"]
"""
# As Google Admin or a spreadsheet writes it: a byte-order mark, CRLF, quoted fields,
# columns in its own order and case, one the desk does not use, a blank line.
ROSTER = ("\ufeffRoom,Email Address,Employee ID,Full Name,SCHOOL\r\n"
          "12,teacher1@school.test,881,\"García, María\",Lincoln Elementary\r\n"
          "\r\n"
          "B-4,teacher2@school.test,882,Bob Miller,\"East High, Annex\"\r\n")


class Desk:
    def __init__(self, mail, config, database_url, daemon) -> None:
        self.mail, self.config, self.database_url = mail, config, database_url
        self.daemon = daemon
        self.roster = config.parent / "staff.csv"

    def send(self, made: EmailMessage | bytes, login: str = "") -> None:
        with smtplib.SMTP(self.mail.smtp_host, self.mail.smtp_port, timeout=10) as smtp:
            if login:
                smtp.login(login, self.mail.users[login])
            if isinstance(made, bytes):
                smtp.sendmail(login or TEACHER1, [HELP], made)
            else:
                smtp.send_message(made)

    def request(self, sender: str, subject: str, body: str) -> None:
        made = EmailMessage()
        made["From"], made["To"], made["Subject"] = sender, HELP, subject
        made["Message-ID"] = make_msgid(domain="school.test")
        made.set_content(body)
        self.send(made)

    def processed(self, count: int) -> None:
        """Wait until the daemon has filed ``count`` messages (its pass is over)."""
        self.mail.wait_for_messages(HELP, count, "mailhelp/processed", timeout=30)

    def ticket(self, number: int) -> tuple[str, str, str, str]:
        engine = create_engine(self.database_url)
        try:
            with Session(engine) as session:
                ticket = session.get(Ticket, number)
                return (ticket.requester.name, ticket.school, ticket.room, ticket.category)
        finally:
            engine.dispose()

    def events(self, number: int, action: str) -> list[tuple[str, str]]:
        engine = create_engine(self.database_url)
        try:
            with Session(engine) as session:
                return [(e.actor, e.detail) for e in session.scalars(
                    select(TicketEvent).where(TicketEvent.ticket_id == number,
                                              TicketEvent.action == action)
                    .order_by(TicketEvent.id))]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def desk(mail_servers_session, module_database_url, tmp_path_factory):
    mail = mail_servers_session
    mail.clear_mailboxes()
    directory = tmp_path_factory.mktemp("directory-desk")
    config = write_config(directory, module_database_url, mail, extra=EXTRA)
    config.write_text(config.read_text() + CATEGORIES)
    (directory / "staff.csv").write_bytes(ROSTER.encode())
    assert mailhelp(config, "init").returncode == 0
    check = mailhelp(config, "check").stdout.decode()
    assert "people from 2 rows" in check, check
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_connected", timeout=30)
        yield Desk(mail, config, module_database_url, daemon)
    finally:
        assert daemon.stop() == 0, daemon.output()


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def parts(raw: bytes) -> tuple[str, str]:
    message = parsed(raw)
    return (message.get_body(("plain",)).get_content().replace("\r\n", "\n"),
            message.get_body(("html",)).get_content())


def test_a_request_takes_name_school_and_room_from_the_roster_and_a_category(desk):
    desk.request("Jane T <teacher1@school.test>", "The printer in my room is jammed",
                 "It says paper jam in tray 2, and the wifi is slow too.")
    [ack] = desk.mail.wait_for_messages(TEACHER1, 1, timeout=30)
    [note] = desk.mail.wait_for_messages(TECH1, 1, timeout=30)
    assert desk.ticket(1) == ("García, María", "Lincoln Elementary", "12", "Printers")
    text, html = parts(ack)
    assert text.startswith("Hello María,\n")  # the roster's first name, not "Jane T"
    assert "We have you at Lincoln Elementary, room 12" in text
    assert "We have you at Lincoln Elementary, room 12" in html
    text, html = parts(note)
    assert "New ticket #1 from García, María <teacher1@school.test>" in text
    assert "School: Lincoln Elementary, room 12\nCategory: Printers\n" in text
    assert "<strong>School:</strong> Lincoln Elementary, room 12<br><strong>Category:" \
           "</strong> Printers" in html
    assert "#category NAME" in text
    # The directory's name for the teacher, whatever the mail's display name said.
    assert parsed(note)["Subject"] == \
        "[#1] New: The printer in my room is jammed (García, María)"


def test_the_roster_changed_on_disk_is_read_by_the_running_daemon(desk):
    assert desk.daemon.output().count("action=directory_read") == 1
    desk.roster.write_text("email,name,school,room\r\n"
                           "teacher1@school.test,María García,Washington Middle,210\r\n"
                           "teacher2@school.test,Bob Miller,East High,B-4\r\n"
                           "not-an-address,Nobody,East High,1\r\n", encoding="utf-8")
    desk.request("Bob <teacher2@school.test>", "No internet", "Since this morning.")
    desk.request("teacher1@school.test", "Help", "The WiFi in 210 drops every minute.")
    desk.processed(3)
    wait_for_outbox(desk.database_url, 3, to=TECH1)
    assert desk.ticket(2) == ("Bob Miller", "East High", "B-4", "Network")
    assert desk.ticket(3) == ("María García", "Washington Middle", "210", "Network")
    # Ticket 1 keeps what it was given when it was made.
    assert desk.ticket(1)[1:] == ("Lincoln Elementary", "12", "Printers")
    log = desk.daemon.output()
    assert log.count("action=directory_read") == 2
    assert "line 4: 'not-an-address' is not an email address" in log


def test_category_and_room_by_mail_from_a_technician(desk):
    [note, *_] = desk.mail.messages(TECH1)
    before = len(desk.mail.messages(TEACHER1))
    desk.send(mailclients.gmail(note, "Sam Tech <tech1@school.test>",
                                "#category network\n#room 14"), login=TECH1)
    desk.processed(4)
    wait_for_outbox(desk.database_url, 0)
    assert desk.ticket(1)[2:] == ("14", "Network")
    assert desk.events(1, "category") == [(TECH1, "Printers -> Network")]
    # A command alone relays nothing to the teacher.
    assert len(desk.mail.messages(TEACHER1)) == before


def test_an_unknown_category_gets_the_command_error_listing_the_known_ones(desk):
    [note, *_] = before = desk.mail.messages(TECH1)
    desk.send(mailclients.gmail(note, "Sam Tech <tech1@school.test>",
                                "#category Projectors\nIt was the projector after all."),
              login=TECH1)
    desk.processed(5)
    # The error goes to its writer alone: one more mail for tech1, none for the others.
    rows = wait_for_outbox(desk.database_url, 0)
    assert len([r for r in rows if TECH1 in r["recipients"]]) == len(before) + 1
    error = desk.mail.wait_for_messages(TECH1, len(before) + 1, timeout=10)[-1]
    text, html = parts(error)
    assert "unknown category 'Projectors' (known: Printers, Network)" in text
    assert "unknown category &#39;Projectors&#39; (known: Printers, Network)" in html
    assert desk.ticket(1)[3] == "Network"  # unchanged
    assert "It was the projector after all." not in "".join(
        parts(raw)[0] for raw in desk.mail.messages(TEACHER1))
