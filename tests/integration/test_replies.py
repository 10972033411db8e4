"""Replies read right, over real Dovecot and SMTP (issue 18): a technician's answer
written between the quoted questions reaches the teacher with them; a reply to an old
ticket that asks something new starts a ticket of its own; thanks on a pending ticket
leaves it pending and tells its assignee how to resolve it."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import create_engine, text

from tests import mailclients
from tests.helpers import mailhelp, write_config
from tests.integration.test_conversations import JANE, TECH1, Desk, parsed, plain

pytestmark = pytest.mark.integration

TEACHER = "teacher1@school.test"
TECH = "tech1@school.test"
QUESTIONS = ("Can the printer in room 12 print double-sided?",
             "Do I need to bring paper tomorrow?")


@pytest.fixture
def desk(tmp_path, database_url, mail) -> Desk:
    config = write_config(tmp_path, database_url, mail)
    assert mailhelp(config, "init").returncode == 0
    return Desk(mail, config, database_url)


def mutt(raw: bytes, sender: str, answers: dict[str, str], top: str = "") -> bytes:
    """A reply as mutt writes it: every line of the original quoted, each answer typed
    below the quoted line it answers."""
    original = parsed(raw)
    body = [top, ""] if top else []
    body.append(f"On Mon, Nov 23, 2026 at 08:12:45AM -0500, {original['From']} wrote:")
    for line in plain(raw).split("\n"):
        body.append(f"> {line}".rstrip())
        if line.strip() in answers:
            body += ["", answers[line.strip()], ""]
    body += ["", "--", "Sam Tech, ext. 204"]
    message = email.message.EmailMessage()
    message["From"] = sender
    message["To"] = mailclients.HELP
    message["Subject"] = f"Re: {original['Subject']}"
    message["Date"] = "Mon, 23 Nov 2026 09:01:00 -0500"
    message["Message-ID"] = f"<{mailclients._unique('mutt')}@school.test>"
    message["In-Reply-To"] = original["Message-ID"]
    message["References"] = f"{original.get('References', '')} {original['Message-ID']}".strip()
    message["User-Agent"] = "NeoMutt/20231103"
    message.set_content("\n".join(body) + "\n")
    return message.as_bytes(policy=email.policy.SMTP)


def with_subject(raw: bytes, subject: str) -> bytes:
    message = parsed(raw)
    del message["Subject"]
    message["Subject"] = subject
    return message.as_bytes(policy=email.policy.SMTP)


def events(database_url: str, ticket_id: int) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(
                "SELECT action, detail FROM ticket_events WHERE ticket_id = :t ORDER BY id"),
                {"t": ticket_id})]
    finally:
        engine.dispose()


def test_an_interleaved_answer_is_relayed_with_its_questions(desk):
    desk.send(mailclients.new_message(JANE, "Printing for tomorrow's class",
                                      "Hello,\n\n" + "\n\n".join(QUESTIONS) + "\n\nJane"))
    note = desk.inbox(TECH, 1)[-1]
    desk.send(mutt(note, TECH1, {
        QUESTIONS[0]: "Yes, single pages work; double-sided needs the new driver.",
        QUESTIONS[1]: "No need, I will be there before 8:00.",
    }, top="Hi Jane,"))
    relay = plain(desk.inbox(TEACHER, 2)[-1])
    assert relay.startswith(
        "Hi Jane,\n\n"
        f"> {QUESTIONS[0]}\n\n"
        "Yes, single pages work; double-sided needs the new driver.\n\n"
        f"> {QUESTIONS[1]}\n\n"
        "No need, I will be there before 8:00.\n\n"
        "--\nSam Tech, ext. 204")
    # Nothing of the notification around the questions reaches her.
    assert "New ticket" not in relay and "wrote:" not in relay and "#resolve" not in relay
    ticket = desk.ticket(1)
    assert ticket["status"] == "pending" and ticket["assignee"] == TECH
    assert ticket["messages"][-1]["kind"] == "relay"


def test_a_top_posted_answer_is_still_cut_as_before(desk):
    _, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "I'll come by at 10.\n\nSam"))
    relay = plain(desk.inbox(TEACHER, 2)[-1])
    assert relay.startswith("I'll come by at 10.\n\nSam") and ">" not in relay.split("--")[0]


def test_a_new_subject_on_a_resolved_ticket_starts_a_new_linked_ticket(desk, database_url):
    ack, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "#resolve\nNew lamp fitted."))
    assert desk.ticket(1)["status"] == "resolved"
    # Weeks later Jane answers the old acknowledgement to ask something new.
    desk.send(with_subject(mailclients.gmail(ack, JANE, "The document camera shows nothing."),
                           "Re: Document camera in 7b dead"))
    tickets = desk.tickets()
    assert len(tickets) == 2
    new = desk.ticket(2)
    assert new["linked_ticket"] == 1 and new["subject"] == "Document camera in 7b dead"
    assert new["status"] == "new"
    assert desk.ticket(1)["status"] == "resolved"  # the old one stays as it was
    assert ("followed_up", "#2: new subject on resolved #1") in events(database_url, 1)
    assert ("created", "continues #1") in events(database_url, 2)
    # Jane's acknowledgement and the staff notification of #2 name #1.
    new_ack = desk.inbox(TEACHER)[-1]
    assert parsed(new_ack)["Subject"].startswith("[#2]")
    assert "continues ticket #1" in plain(new_ack)
    notification = desk.inbox(TECH)[-1]
    assert parsed(notification)["Subject"].startswith("[#2] New: Document camera")
    assert "It continues ticket #1." in plain(notification)


def test_a_new_subject_on_an_open_ticket_is_shown_to_staff(desk, database_url):
    ack, _ = desk.open_ticket()
    desk.send(with_subject(mailclients.gmail(ack, JANE, "And the speakers hum."),
                           "Re: Speakers humming"))
    assert len(desk.tickets()) == 1 and desk.ticket(1)["status"] == "open"
    notification = plain(desk.inbox(TECH, 2)[-1])
    assert "New subject: Re: Speakers humming" in notification
    assert "And the speakers hum." in notification
    assert ("new_subject", "Re: Speakers humming") in events(database_url, 1)


def test_thanks_on_a_pending_ticket_keeps_it_pending_and_tells_the_assignee(desk):
    _, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "Try the other HDMI port, please."))
    relay = desk.inbox(TEACHER, 2)[-1]
    assert desk.ticket(1)["status"] == "pending"
    desk.send(mailclients.gmail(relay, JANE, "Works now, thank you!"))
    ticket = desk.ticket(1)
    assert ticket["status"] == "pending"
    assert ticket["messages"][-2]["kind"] == "reply"
    told = desk.inbox(TECH, 2)[-1]
    assert parsed(told)["Subject"] == "[#1] Re: Projector in room 12 (Jane Teacher says thanks)"
    assert "the ticket stays pending. Reply with #resolve to close it." in plain(told)
    assert desk.sent_to(TEACHER) == ["ack", "relay"]  # nothing more to the teacher
    # The way out it names works.
    desk.send(mailclients.gmail(told, TECH1, "#resolve"))
    assert desk.ticket(1)["status"] == "resolved"
