"""The limits over real Dovecot and SMTP: a teacher's separate requests are all
acknowledged and staff hear of each; mail that repeats itself past the limit is held,
shown as held in the CLI, and noted once for staff."""

from __future__ import annotations

import email
import email.policy
import json

import pytest

from mailhelp.states import OutboxStatus
from tests import mailclients
from tests.helpers import STAFF, mailhelp, settled_outbox, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
BOB = "Bob Miller <teacher2@school.test>"
REQUESTS = [
    ("Projector in 12", "The projector in room 12 shows no picture."),
    ("Library printer", "The printer in the library jams on every page."),
    ("Grade book password", "I forgot my password for the grade book."),
    ("Smartboard pen", "The smartboard pen in 4a is missing."),
    ("Wifi in the gym", "Wifi drops every few minutes in the gym."),
    ("Second monitor", "Could I get a second monitor for the office?"),
    ("Document camera", "The document camera in 7b is dead."),
    ("GeoGebra", "Please install GeoGebra on the laptops of cart 3."),
]


def deliver(mail, config, raw: bytes) -> None:
    """Mail arrives in the help mailbox, and the desk runs once (as from cron)."""
    client = mail.imap(HELP)
    try:
        client.append("INBOX", raw)
    finally:
        client.logout()
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()


def subjects(raws: list[bytes]) -> list[str]:
    return [email.message_from_bytes(r, policy=email.policy.default)["Subject"] for r in raws]


@pytest.fixture
def config(tmp_path, database_url, mail):
    path = write_config(tmp_path, database_url, mail)
    assert mailhelp(path, "init").returncode == 0
    return path


def test_eight_separate_requests_get_eight_acknowledgements(mail, config, database_url):
    for subject, text in REQUESTS:
        deliver(mail, config, mailclients.new_message(BOB, subject, f"{text}\nBob"))
    rows = settled_outbox(database_url)
    assert [r["status"] for r in rows if r["kind"] == "ack"] == [OutboxStatus.SENT] * 8
    acks = mail.messages("teacher2@school.test")
    assert len(acks) == 8
    for (subject, _), got in zip(REQUESTS, subjects(acks), strict=True):
        assert subject in got
    # Every staff member heard of every request.
    for address in STAFF:
        notifications = mail.messages(address)
        assert len(notifications) == 8, address
        assert [r["status"] for r in rows if address in r["recipients"]] == [OutboxStatus.SENT] * 8


def test_a_repeating_sender_is_held_and_shown_as_held(mail, config, database_url, tmp_path):
    config.write_text(config.read_text() + "[limits]\nauto_mails_per_address = 2\n")
    same = "Thank you, your request has been received and will be handled."
    for n in range(4):
        deliver(mail, config, mailclients.new_message(
            "Other Desk <teacher2@school.test>", f"Ticket OTHER-{n} received", same))
    rows = settled_outbox(database_url)
    acks = [r["status"] for r in rows if r["kind"] == "ack"]
    assert acks == [OutboxStatus.SENT] * 2 + [OutboxStatus.SUPPRESSED] * 2
    assert len(mail.messages("teacher2@school.test")) == 2

    shown = mailhelp(config, "tickets", "show", "3")
    assert shown.returncode == 0, shown.stderr.decode()
    [line] = [line for line in shown.stdout.decode().splitlines() if "  ack  to " in line]
    assert "[SUPPRESSED: rate limit: 2 automatic mails to teacher2@school.test" in line
    ticket = json.loads(mailhelp(config, "tickets", "show", "3", "--json").stdout)
    [ack] = [m for m in ticket["messages"] if m["kind"] == "ack"]
    assert ack["outbox_status"] == "suppressed"
    assert "repeats an earlier message" in ack["outbox_reason"]
    first = json.loads(mailhelp(config, "tickets", "show", "1", "--json").stdout)
    assert [m["outbox_status"] for m in first["messages"] if m["kind"] == "ack"] == ["sent"]

    # Staff: each request's notification, and one note for each ticket with held mail.
    for address in STAFF:
        got = subjects(mail.messages(address))
        assert len(got) == 4 + 2, got
        assert sorted(s for s in got if "Not sent" in s) == [
            "[#3] Not sent: the ack to teacher2@school.test",
            "[#4] Not sent: the ack to teacher2@school.test"]
    done = mailhelp(config, "status", "--json")
    assert done.returncode in (0, 1), done.stderr.decode()
    assert '"recent": 2' in done.stdout.decode() and "outbox_suppressed" in done.stdout.decode()
