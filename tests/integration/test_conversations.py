"""Conversations over real Dovecot and SMTP: replies find their ticket, staff answer
from their own mail client, commands, CC'd colleagues, the thank-you rule."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest

from mailhelp.states import OutboxStatus
from tests import mailclients
from tests.helpers import mailhelp, outbox, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
JANE = "Jane Teacher <teacher1@school.test>"
BOB = "Bob Miller <teacher2@school.test>"
TECH1 = "Sam Tech <tech1@school.test>"
TECH2 = "tech2@school.test"


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def plain(raw: bytes) -> str:
    return parsed(raw).get_body(("plain",)).get_content().replace("\r\n", "\n")


class Desk:
    """The help desk as the people around it see it: mailboxes and the CLI."""

    def __init__(self, mail, config: Path, database_url: str) -> None:
        self.mail = mail
        self.config = config
        self.database_url = database_url

    def send(self, raw: bytes) -> None:
        """Mail arrives in the help mailbox, and mailhelp runs once."""
        client = self.mail.imap(HELP)
        try:
            client.append("INBOX", raw)
        finally:
            client.logout()
        done = mailhelp(self.config, "run", "--once")
        assert done.returncode == 0, done.stderr.decode()
        assert b"0 failed" in done.stdout, done.stdout.decode() + done.stderr.decode()

    def inbox(self, user: str, count: int | None = None) -> list[bytes]:
        """``user``'s INBOX; with ``count``, asserted to hold exactly that many mails,
        as many as the desk's outbox sent to ``user``. Every pass is over when this is
        asked, so the outbox is final: nothing is queued, nothing more will come."""
        found = self.mail.messages(user)
        if count is not None:
            rows = outbox(self.database_url)
            assert all(row["status"] != OutboxStatus.QUEUED for row in rows), rows
            sent = [row for row in rows
                    if user in row["recipients"] and row["status"] == OutboxStatus.SENT]
            assert len(found) == len(sent) == count, (user, len(found), sent)
        return found

    def sent_to(self, user: str) -> list[str]:
        """The kinds of the mails the desk sent to ``user``, oldest first."""
        return [row["kind"] for row in outbox(self.database_url, to=user)
                if row["status"] == OutboxStatus.SENT]

    def last(self, user: str) -> bytes:
        return self.inbox(user)[-1]

    def ticket(self, number: int) -> dict:
        done = mailhelp(self.config, "tickets", "show", str(number), "--json")
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    def tickets(self) -> list[dict]:
        return json.loads(mailhelp(self.config, "tickets", "list", "--json").stdout)

    def open_ticket(self, sender: str = JANE, subject: str = "Projector in room 12",
                    cc: str = "") -> tuple[bytes, bytes]:
        """A teacher writes; returns (the ack they got, the notification tech1 got)."""
        address = email.utils.parseaddr(sender)[1]
        acks_before = len(self.inbox(address))
        notes_before = len(self.inbox("tech1@school.test"))
        self.send(mailclients.new_message(sender, subject,
                                          "The projector shows 'No signal'.\nJane", cc=cc))
        ack = self.inbox(address, acks_before + 1)[-1]
        note = self.inbox("tech1@school.test", notes_before + 1)[-1]
        return ack, note


@pytest.fixture
def desk(tmp_path, database_url, mail) -> Desk:
    config = write_config(tmp_path, database_url, mail)
    assert mailhelp(config, "init").returncode == 0
    return Desk(mail, config, database_url)


# Threading: each rule, each client shape ----------------------------------------------

@pytest.mark.parametrize("client", ["gmail", "apple_mail", "ios_mail"])
def test_requester_reply_threads_by_references(desk, client):
    ack, _ = desk.open_ticket()
    reply = getattr(mailclients, client)(ack, JANE, "It also flickers before it goes dark.")
    desk.send(reply)
    ticket = desk.ticket(1)
    assert len(desk.tickets()) == 1 and ticket["status"] == "open"
    [message] = [m for m in ticket["messages"] if m["kind"] == "reply"]
    assert message["thread_reason"] == "references"
    assert message["text"].startswith("It also flickers before it goes dark.")
    assert "we have received your request" not in message["text"]
    # Staff hear of it, with the new text only.
    note = desk.inbox("tech1@school.test", 2)[-1]
    assert "It also flickers" in plain(note) and "we have received" not in plain(note)
    assert parsed(note)["Reply-To"] == HELP


def test_outlook_reply_without_threading_headers_threads_by_the_subject_tag(desk):
    ack, _ = desk.open_ticket()
    reply = mailclients.outlook(ack, JANE, "Still no picture after the restart.")
    assert b"In-Reply-To" not in reply and b"References" not in reply
    desk.send(reply)
    [message] = [m for m in desk.ticket(1)["messages"] if m["kind"] == "reply"]
    assert message["thread_reason"] == "subject_tag"
    assert message["text"] == "Still no picture after the restart."


def test_tag_moved_to_the_end_and_stacked_prefixes(desk):
    desk.open_ticket()
    desk.send(mailclients.new_message(JANE, "AW: RE: Fwd: Projector in room 12 [#1]",
                                      "Any news?"))
    assert len(desk.tickets()) == 1
    assert desk.ticket(1)["messages"][-1]["kind"] == "notification"


def test_plus_address_threads(desk):
    desk.open_ticket()
    desk.send(mailclients.new_message(JANE, "one more thing", "The remote is missing too.",
                                      to="help+1@school.test"))
    assert len(desk.tickets()) == 1
    [reply] = [m for m in desk.ticket(1)["messages"] if m["kind"] == "reply"]
    assert reply["thread_reason"] == "plus_address"


def test_references_to_another_ticket_win_over_the_subject(desk):
    ack1, _ = desk.open_ticket(subject="Projector in room 12")
    desk.open_ticket(subject="Printer in the library")
    reply = mailclients.gmail(ack1, JANE, "Sorry, wrong subject line.").replace(
        b"Re: [#1] Projector in room 12", b"Re: [#2] Printer in the library")
    desk.send(reply)
    assert [m["kind"] for m in desk.ticket(1)["messages"]].count("reply") == 1
    assert [m["kind"] for m in desk.ticket(2)["messages"]].count("reply") == 0


def test_a_stranger_using_a_ticket_number_gets_a_new_ticket_and_nothing_of_the_old(desk):
    desk.open_ticket(subject="Gradebook password for Jane")
    desk.send(mailclients.new_message(BOB, "Re: [#1] Gradebook password for Jane",
                                      "Please send me the password too."))
    assert [t["requester"] for t in desk.tickets()] == ["teacher1@school.test",
                                                          "teacher2@school.test"]
    assert all(m["from"] != "teacher2@school.test" for m in desk.ticket(1)["messages"]
               if m["direction"] == "in")
    [bobs] = desk.inbox("teacher2@school.test", 1)
    assert parsed(bobs)["Subject"] == "[#2] Gradebook password for Jane"
    assert "No signal" not in plain(bobs) and "#1" not in plain(bobs)


# Staff replies ----------------------------------------------------------------------

def test_staff_reply_is_relayed_without_the_quoted_notification(desk):
    ack, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "Hi Jane, I'll come by at 10.\n\nSam"))
    [_, relay] = desk.inbox("teacher1@school.test", 2)
    message = parsed(relay)
    assert message["From"].addresses[0].addr_spec == HELP
    assert message["From"].addresses[0].display_name == "Sam Tech via Springfield SD Help Desk"
    assert plain(relay).startswith("Hi Jane, I'll come by at 10.\n\nSam")
    assert "New ticket" not in plain(relay) and "No signal" not in plain(relay)
    # It threads under Jane's own conversation: her request and the acknowledgement.
    assert message["In-Reply-To"] == parsed(ack)["Message-ID"]
    assert parsed(ack)["In-Reply-To"] in message["References"]
    ticket = desk.ticket(1)
    assert ticket["status"] == "pending" and ticket["assignee"] == "tech1@school.test"
    assert ticket["first_response_at"] is not None


def test_staff_attachment_is_relayed(desk):
    _, note = desk.open_ticket()
    reply = email.message_from_bytes(mailclients.apple_mail(note, TECH1, "Manual attached."),
                                     policy=email.policy.default)
    reply.add_attachment(b"%PDF-1.4 manual", maintype="application", subtype="pdf",
                         filename="projector-manual.pdf")
    desk.send(reply.as_bytes(policy=email.policy.SMTP))
    relay = parsed(desk.inbox("teacher1@school.test", 2)[-1])
    [attachment] = list(relay.iter_attachments())
    assert attachment.get_filename() == "projector-manual.pdf"
    assert attachment.get_content() == b"%PDF-1.4 manual"


def test_cc_colleague_becomes_participant_and_receives_staff_replies(desk):
    _, note = desk.open_ticket(cc=f"{BOB}, {TECH2}, help+9@school.test")
    assert desk.ticket(1)["participants"] == ["teacher2@school.test"]
    desk.send(mailclients.gmail(note, TECH1, "Fixed the cable."))
    relay = parsed(desk.inbox("teacher2@school.test", 1)[-1])
    assert relay["Cc"].addresses[0].addr_spec == "teacher2@school.test"
    assert "Fixed the cable." in relay.get_body(("plain",)).get_content()
    # The participant may answer on the ticket, and stays a participant.
    desk.send(mailclients.gmail(desk.last("teacher2@school.test"), BOB,
                                "Works in room 14 too, thanks."))
    ticket = desk.ticket(1)
    assert ticket["participants"] == ["teacher2@school.test"]
    assert ticket["messages"][-2]["from"] == "teacher2@school.test"


# Commands ---------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "field", "value"), [
    ("#pending", "status", "pending"),
    ("#open", "status", "open"),
    ("#close", "status", "closed"),
    ("#resolve", "status", "resolved"),
    ("#priority urgent", "priority", "urgent"),
    ("#assign tech2@school.test", "assignee", "tech2@school.test"),
    ("#cc teacher2@school.test", "participants", ["teacher2@school.test"]),
])
def test_each_command(desk, command, field, value):
    _, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, command))
    assert desk.ticket(1)[field] == value
    relayed = [plain(m) for m in desk.inbox("teacher1@school.test")[1:]]
    assert all(command not in text for text in relayed)


def test_uncc_removes_a_participant(desk):
    _, note = desk.open_ticket(cc=BOB)
    desk.send(mailclients.gmail(note, TECH1, "#uncc teacher2@school.test\nDone here."))
    assert desk.ticket(1)["participants"] == []
    assert "relay" in desk.sent_to("teacher1@school.test")  # the reply went out...
    assert "relay" not in desk.sent_to("teacher2@school.test")  # ...without Bob
    bobs = desk.inbox("teacher2@school.test", len(desk.sent_to("teacher2@school.test")))
    assert all("Done here" not in plain(m) for m in bobs)


def test_note_stays_internal(desk):
    _, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "#note\nThe lamp is at end of life; ordered."))
    ticket = desk.ticket(1)
    assert ticket["messages"][-1]["kind"] == "note"
    assert "ordered" in ticket["messages"][-1]["text"]
    assert desk.sent_to("teacher1@school.test") == ["ack"]
    desk.inbox("teacher1@school.test", 1)  # only the acknowledgement


def test_unknown_command_relays_nothing_and_tells_the_staff_member(desk):
    _, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "#resolve\n#asign tech2@school.test\nDone."))
    error = desk.inbox("tech1@school.test", 2)[-1]
    assert "Not sent" in parsed(error)["Subject"]
    assert "#asign tech2@school.test: unknown command" in plain(error)
    assert "#assign ADDRESS" in plain(error)
    ticket = desk.ticket(1)
    assert ticket["status"] == "new" and ticket["assignee"] is None
    assert desk.sent_to("teacher1@school.test") == ["ack"]
    desk.inbox("teacher1@school.test", 1)


def test_assign_to_someone_not_staff_changes_nothing(desk):
    _, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "#priority high\n#assign teacher2@school.test"))
    error = desk.inbox("tech1@school.test", 2)[-1]
    assert "teacher2@school.test is not a staff address" in plain(error)
    assert desk.ticket(1)["priority"] == "normal"


# Status mail and the thank-you rule ----------------------------------------------------

def test_resolve_sends_a_notice_and_a_thank_you_does_not_reopen(desk):
    _, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "#resolve"))
    notice = desk.inbox("teacher1@school.test", 2)[-1]
    assert parsed(notice)["Subject"] == "[#1] Resolved: Projector in room 12"
    assert "reply to this message" in plain(notice)
    desk.send(mailclients.ios_mail(notice, JANE, "Thanks so much!"))
    assert desk.ticket(1)["status"] == "resolved"
    desk.send(mailclients.ios_mail(notice, JANE, "It is broken again since this morning."))
    assert desk.ticket(1)["status"] == "open"


def test_reply_to_a_long_closed_ticket_starts_a_new_one(desk, database_url):
    from sqlalchemy import create_engine, text

    ack, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "#close"))
    engine = create_engine(database_url)
    with engine.begin() as connection:  # closed a month ago
        connection.execute(text("UPDATE tickets SET closed_at = closed_at - INTERVAL '30 days'"
                                if engine.dialect.name == "postgresql" else
                                "UPDATE tickets SET closed_at = datetime(closed_at, '-30 days')"))
    engine.dispose()
    desk.send(mailclients.gmail(ack, JANE, "The projector is dead again."))
    tickets = desk.tickets()
    assert len(tickets) == 2 and tickets[1]["linked_ticket"] == 1
    new_ack = desk.inbox("teacher1@school.test", 2)[-1]
    assert parsed(new_ack)["Subject"].startswith("[#2]")
    assert "continues ticket #1" in plain(new_ack)


# The whole conversation ---------------------------------------------------------------

def test_a_whole_conversation_lands_in_one_thread(desk):
    ack, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "Hi Jane, please try the HDMI 2 input.\n\nSam"))
    relay1 = desk.inbox("teacher1@school.test", 2)[-1]
    desk.send(mailclients.outlook(relay1, JANE, "HDMI 2 shows a picture, but it flickers."))
    note2 = desk.inbox("tech1@school.test", 2)[-1]
    desk.send(mailclients.apple_mail(note2, TECH1,
                                     "#resolve\nI replaced the cable; it should be stable now."))
    inbox = desk.inbox("teacher1@school.test", 4)
    assert len(inbox) == 4
    messages = [parsed(m) for m in inbox]
    subjects = [m["Subject"] for m in messages]
    assert subjects == ["[#1] Projector in room 12"] * 3 + ["[#1] Resolved: Projector in room 12"]
    texts = [plain(m) for m in inbox]
    assert texts[1].startswith("Hi Jane, please try the HDMI 2 input.\n\nSam")
    assert texts[2].startswith("I replaced the cable; it should be stable now.")
    for text in texts[1:3]:
        assert "#resolve" not in text and "New ticket" not in text and "replied to" not in text
    # One thread by the headers: every mail answers the one before it in Jane's view.
    root = messages[0]["In-Reply-To"]
    for earlier, later in zip(messages, messages[1:], strict=False):
        assert later["In-Reply-To"] in (earlier["Message-ID"], *_ids_of(inbox, desk))
        assert root in later["References"]
    assert desk.ticket(1)["status"] == "resolved"


def _ids_of(inbox: list[bytes], desk: Desk) -> list[str]:
    """Message-IDs of Jane's own mails on the ticket (replies answer those too)."""
    return [m["message_id"] for m in desk.ticket(1)["messages"]
            if m["from"] == "teacher1@school.test"]
