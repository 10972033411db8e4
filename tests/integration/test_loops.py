"""Mail loops against real servers: an autoresponder and a second help desk answer
every mail mailhelp sends them, for up to 100 rounds."""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from mailhelp.states import OutboxStatus
from tests.helpers import mailhelp, settled_outbox, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
ROUNDS = 100


class Responder:
    """Answers every message that reaches ``user``'s INBOX, as a machine would."""

    def __init__(self, mail, user: str, answer) -> None:
        self.mail, self.user, self.answer = mail, user, answer
        self.answered: set[str] = set()
        self.received = 0

    def respond(self, sent: int) -> int:
        """Answer what is new; ``sent``: how many mails the desk has sent to us so far,
        every one of them already in the INBOX (the relay answers once it delivered)."""
        new = []
        found = self.mail.messages(self.user)
        assert len(found) == sent, f"{len(found)} mails in the INBOX, {sent} sent"
        for raw in found:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            if message["Message-ID"] not in self.answered:
                self.answered.add(message["Message-ID"])
                new.append(message)
        self.received += len(new)
        with smtplib.SMTP(self.mail.smtp_host, self.mail.smtp_port, timeout=10) as smtp:
            for message in new:
                smtp.send_message(self.answer(message))
        return len(new)


def out_of_office(message: EmailMessage) -> EmailMessage:
    """An Exchange-style out-of-office reply, properly marked (RFC 3834)."""
    reply = EmailMessage()
    reply["From"] = "Jane Teacher <teacher1@school.test>"
    reply["To"] = HELP
    reply["Subject"] = f"Automatic reply: {message['Subject']}"
    reply["Message-ID"] = make_msgid(domain="school.test")
    reply["In-Reply-To"] = message["Message-ID"]
    reply["Auto-Submitted"] = "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    reply.set_content("I am away until Monday and will not read mail.")
    return reply


def careless_vacation(message: EmailMessage) -> EmailMessage:
    """A vacation script that marks nothing: only its subject gives it away."""
    reply = EmailMessage()
    reply["From"] = "Jane Teacher <teacher1@school.test>"
    reply["To"] = HELP
    reply["Subject"] = f"Out of Office: {message['Subject']}"
    reply["Message-ID"] = make_msgid(domain="school.test")
    reply.set_content("Back on Monday.")
    return reply


def other_help_desk(message: EmailMessage) -> EmailMessage:
    """Another help desk that opens a ticket for every mail and acknowledges it under a
    subject of its own, with no threading headers and no auto-reply marks (the worst)."""
    reply = EmailMessage()
    reply["From"] = "District Office Desk <teacher2@school.test>"
    reply["To"] = HELP
    reply["Subject"] = f"Ticket OTHER-{time.time_ns() % 100000} received"
    reply["Message-ID"] = make_msgid(domain="school.test")
    reply.set_content("Thank you, your request has been received and will be handled.")
    return reply


def start(mail, sender: str, subject: str) -> None:
    first = EmailMessage()
    first["From"] = sender
    first["To"] = HELP
    first["Subject"] = subject
    first["Message-ID"] = make_msgid(domain="school.test")
    first.set_content("Hello help desk.")
    with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=10) as smtp:
        smtp.send_message(first)


def run_rounds(mail, config, database_url: str, responder: Responder) -> int:
    """Let mailhelp and the responder answer each other until one of them stops."""
    for round_number in range(1, ROUNDS + 1):
        done = mailhelp(config, "run", "--once")
        assert done.returncode == 0, done.stderr.decode()
        # The pass is over: what it sent is in the responder's mailbox.
        rows = settled_outbox(database_url, to=responder.user)
        answered = responder.respond(sum(row["status"] == OutboxStatus.SENT for row in rows))
        if answered == 0:
            return round_number
        # The answers were accepted, so they wait in the help INBOX for the next pass.
        mail.wait_for_messages(HELP, answered, timeout=10)
    return ROUNDS


@pytest.fixture
def config(tmp_path, database_url, mail):
    path = write_config(tmp_path, database_url, mail)
    assert mailhelp(path, "init").returncode == 0
    return path


def tickets(config) -> int:
    import json

    return len(json.loads(mailhelp(config, "tickets", "list", "--json").stdout))


@pytest.mark.parametrize("answer", [out_of_office, careless_vacation])
def test_an_autoresponder_makes_no_ticket_and_no_loop(mail, config, database_url, answer):
    responder = Responder(mail, "teacher1@school.test", answer)
    start(mail, "Jane Teacher <teacher1@school.test>", "Projector in room 12")
    rounds = run_rounds(mail, config, database_url, responder)
    assert rounds <= 3, f"still answering each other after {rounds} rounds"
    assert tickets(config) == 1  # the request; no ticket from an auto-reply
    assert responder.received == 1  # the acknowledgement, and nothing after it


def test_two_help_desks_stop_within_the_rate_limit(mail, config, database_url):
    responder = Responder(mail, "teacher2@school.test", other_help_desk)
    start(mail, "District Office Desk <teacher2@school.test>", "Toner order for room 3")
    rounds = run_rounds(mail, config, database_url, responder)
    print(f"two help desks: {rounds} rounds, {responder.received} mails to the other desk, "
          f"{tickets(config)} tickets")
    limit = 5  # [limits] auto_mails_per_address, the default
    assert responder.received <= limit, f"{responder.received} mails to the other desk"
    assert rounds <= limit + 2
    # Every ticket beyond the limit was recorded, and staff still saw them.
    assert tickets(config) <= limit + 1
