"""The tech team works the desk by mail (issue 18, part 1): an #assign sends the new
assignee the ticket, #take assigns the writer, #note reaches the other staff and never
the teacher, answers are copied to staff on request, and a teacher's reply reaches
every technician while the assignee's out-of-office is fresh."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from tests import mailclients
from tests.helpers import mailhelp, write_config
from tests.integration.test_conversations import HELP, JANE, TECH1, TECH2, Desk, parsed, plain

pytestmark = pytest.mark.integration

TEACHER = "teacher1@school.test"
TECH1_ADDRESS = "tech1@school.test"


def _desk(tmp_path, database_url, mail, extra: str = "") -> Desk:
    config = write_config(tmp_path, database_url, mail, extra=extra)
    assert mailhelp(config, "init").returncode == 0
    return Desk(mail, config, database_url)


@pytest.fixture
def desk(tmp_path, database_url, mail) -> Desk:
    return _desk(tmp_path, database_url, mail)


def _request_with_photo() -> bytes:
    message = email.message_from_bytes(
        mailclients.new_message(JANE, "Projector in room 12",
                                "The projector shows 'No signal'.\nJane"),
        policy=email.policy.default)
    message.add_attachment(b"\x89PNG fake photo", maintype="image", subtype="png",
                           filename="projector.png")
    return message.as_bytes(policy=email.policy.SMTP)


def _notification(desk: Desk, tech: str, count: int = 1) -> bytes:
    return desk.inbox(tech, count)[-1]


def test_assign_sends_the_assignee_the_ticket_with_its_attachment(desk):
    desk.send(_request_with_photo())
    note = _notification(desk, TECH1_ADDRESS)
    before = len(desk.inbox(TECH2))
    desk.send(mailclients.gmail(note, TECH1, "#assign tech2@school.test"))
    assert desk.ticket(1)["assignee"] == TECH2
    assignment = parsed(desk.inbox(TECH2, before + 1)[-1])
    assert "Assigned to you" in assignment["Subject"]
    text = plain(assignment.as_bytes())
    assert "No signal" in text and "#resolve" in text and "Reply to this message" in text
    [photo] = list(assignment.iter_attachments())
    assert photo.get_filename() == "projector.png"
    assert photo.get_content() == b"\x89PNG fake photo"
    # It threads with the ticket's staff mail, and the teacher hears nothing of it.
    # tech2's own chain (staffthread.py): the request, then tech2's notification of it.
    theirs = parsed(desk.inbox(TECH2)[before - 1])
    assert assignment["In-Reply-To"] == theirs["Message-ID"]
    assert assignment["References"].split() == [parsed(note)["In-Reply-To"],
                                                theirs["Message-ID"]]
    assert desk.sent_to(TEACHER) == ["ack"]
    # Answering the assignment mail answers the teacher.
    desk.send(mailclients.gmail(desk.last(TECH2), TECH2, "I'll be there at 10."))
    assert "I'll be there at 10." in plain(desk.inbox(TEACHER, 2)[-1])


def test_take_assigns_the_writer_and_sends_no_mail(desk):
    _, note = desk.open_ticket()
    sent_before = len(desk.sent_to(TECH1_ADDRESS)) + len(desk.sent_to(TECH2))
    desk.send(mailclients.gmail(note, TECH1, "#take"))
    ticket = desk.ticket(1)
    assert ticket["assignee"] == TECH1_ADDRESS
    assert len(desk.sent_to(TECH1_ADDRESS)) + len(desk.sent_to(TECH2)) == sent_before
    assert desk.sent_to(TEACHER) == ["ack"]


def test_note_reaches_the_other_staff_and_never_the_teacher(desk):
    _, note = desk.open_ticket()
    before = len(desk.inbox(TECH2))
    desk.send(mailclients.gmail(note, TECH1, "#note\nAlex, can you take the cart 3 chargers?"))
    internal = parsed(desk.inbox(TECH2, before + 1)[-1])
    assert "Alex, can you take the cart 3 chargers?" in plain(internal.as_bytes())
    theirs = parsed(desk.inbox(TECH2)[before - 1])
    assert internal["In-Reply-To"] == theirs["Message-ID"]
    assert internal["References"].split() == [parsed(note)["In-Reply-To"],
                                              theirs["Message-ID"]]
    assert desk.sent_to(TEACHER) == ["ack"]
    assert all("cart 3" not in plain(m) for m in desk.inbox(TEACHER, 1))
    # The writer gets no copy of their own note.
    assert "cart 3" not in plain(desk.last(TECH1_ADDRESS))


def test_copy_answers_all_copies_an_answer_to_the_other_staff(tmp_path, database_url, mail):
    desk = _desk(tmp_path, database_url, mail, '[staff]\ncopy_answers = "all"\n')
    _, note = desk.open_ticket()
    before = len(desk.inbox(TECH2))
    desk.send(mailclients.gmail(note, TECH1, "Hi Jane, I'll come by at 10.\n\nSam"))
    copy = plain(desk.inbox(TECH2, before + 1)[-1])
    assert "answered" in copy and "I'll come by at 10." in copy
    assert "I'll come by at 10." in plain(desk.inbox(TEACHER, 2)[-1])


def test_copy_answers_defaults_to_none(desk):
    _, note = desk.open_ticket()
    before = len(desk.sent_to(TECH2))
    desk.send(mailclients.gmail(note, TECH1, "Hi Jane, I'll come by at 10."))
    desk.inbox(TEACHER, 2)
    assert len(desk.sent_to(TECH2)) == before


def _out_of_office(message: EmailMessage, sender: str) -> bytes:
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = HELP
    reply["Subject"] = f"Automatic reply: {message['Subject']}"
    reply["Message-ID"] = make_msgid(domain="school.test")
    reply["In-Reply-To"] = message["Message-ID"]
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content("I am away until Monday and will not read mail.")
    return reply.as_bytes(policy=email.policy.SMTP)


def test_teacher_reply_goes_to_the_assignee_and_to_everyone_while_they_are_away(desk):
    ack, note = desk.open_ticket()
    desk.send(mailclients.gmail(note, TECH1, "#take"))
    tech2_before = len(desk.sent_to(TECH2))
    desk.send(mailclients.gmail(ack, JANE, "It still says No signal."))
    assert len(desk.sent_to(TECH2)) == tech2_before  # the assignee is told, only
    assert "still says" in plain(desk.inbox(TECH1_ADDRESS, 2)[-1])
    # tech1's out-of-office answers that notification: from now on everyone hears.
    desk.send(_out_of_office(parsed(desk.last(TECH1_ADDRESS)), TECH1))
    kept = desk.ticket(1)["messages"][-1]
    assert kept["kind"] == "note" and kept["from"] == TECH1_ADDRESS
    desk.send(mailclients.gmail(ack, JANE, "Now the lamp blinks red."))
    assert "lamp blinks red" in plain(desk.inbox(TECH2, tech2_before + 1)[-1])
