"""Finding 8 (last part) and what held up: who may join a ticket (issue 15)."""

from __future__ import annotations

import email
import email.policy

from mailhelp.db.models import Message, Outbox, Participant, Ticket
from tests.helpers import mail_of
from tests.security.desk import (
    SERVER_PASS,
    TRUSTED,
    mail,
)


def message_id_of(row: Outbox) -> str:
    return email.message_from_bytes(mail_of(row), policy=email.policy.default)["Message-ID"]


def reply_to(message_id: str, sender: str, subject: str = "Re: Printer jam",
             cc: str = "") -> bytes:
    headers = f"In-Reply-To: {message_id}\nReferences: {message_id}\n"
    if cc:
        headers += f"Cc: {cc}\n"
    return mail(sender=sender, subject=subject, headers=headers, body="Me too!")


def test_a_known_message_id_from_a_stranger_starts_a_new_ticket(make_desk):
    # A BCC recipient, or anyone who learnt one Message-ID of the ticket.
    desk = make_desk()
    desk.send(mail(headers="Bcc: bystander@outside.test\n"))
    [request] = desk.rows(Message, Message.kind == "request")
    result = desk.send(reply_to(request.message_id, "bystander@outside.test"))
    assert result.outcome.action == "new_ticket" and result.outcome.ticket_id == 2
    assert desk.rows(Message, Message.ticket_id == 1, Message.kind == "reply") == []
    # Nothing of ticket 1 reaches them: their only mail is their own ticket's ack.
    assert [(r.kind, r.ticket_id) for r in desk.rows(Outbox)
            if "bystander@outside.test" in r.recipients] == [("ack", 2)]
    assert desk.rows(Ticket)[0].status == "new"


def test_a_recipient_of_that_exact_message_may_answer_it(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail(headers="Cc: colleague@school.test\n"))
    # The colleague was made a participant and removed again (#uncc) ...
    desk.send(mail(sender="tech1@school.test", subject="Re: [#1] Printer jam",
                   body="#uncc colleague@school.test", headers=SERVER_PASS))
    assert desk.rows(Participant) == []
    # ... but was a recipient of the request, and answers it: that joins.
    [request] = desk.rows(Message, Message.kind == "request")
    result = desk.send(reply_to(request.message_id, "colleague@school.test"))
    assert result.outcome.action == "reply" and result.outcome.ticket_id == 1


def test_the_requester_and_staff_join_by_message_id(make_desk):
    desk = make_desk('[authentication]\nunauthenticated_staff = "trust"\n')
    desk.send(mail())
    [ack] = desk.rows(Outbox, Outbox.kind == "ack")
    result = desk.send(reply_to(message_id_of(ack), "teacher1@school.test"))
    assert result.outcome.ticket_id == 1 and result.outcome.action == "reply"
    [note] = desk.rows(Outbox, Outbox.kind == "notification", Outbox.ticket_id == 1)[:1]
    result = desk.send(reply_to(message_id_of(note), "tech2@school.test"))
    assert result.outcome.ticket_id == 1 and result.outcome.action == "staff_reply"


def test_a_guessed_tag_or_plus_address_from_a_stranger_starts_a_new_ticket(make_desk):
    # Held up before issue 15 and must keep holding.
    desk = make_desk()
    desk.send(mail())
    tagged = desk.send(mail(sender="stranger@outside.test", subject="Re: [#1] Printer jam"))
    plus = desk.send(mail(sender="stranger@outside.test", subject="Hi",
                          to="help+1@school.test"))
    delivered = desk.send(mail(sender="stranger@outside.test", subject="Hey",
                               headers="Delivered-To: help+1@school.test\n"))
    assert [r.outcome.ticket_id for r in (tagged, plus, delivered)] == [2, 3, 4]
    assert len(desk.rows(Message, Message.ticket_id == 1, Message.direction == "in")) == 1


def test_look_alike_addresses_are_strangers(make_desk):
    desk = make_desk()
    desk.send(mail())
    for sender in ("teacher1@school.test.attacker.test", "teacher1@schooI.test",
                   "\"teacher1@school.test\" <x@attacker.test>"):
        result = desk.send(mail(sender=sender, subject="Re: [#1] Printer jam"))
        assert result.outcome.ticket_id != 1, sender
