"""Finding 6: the desk is no reflector for phishing (issue 15)."""

from __future__ import annotations

from mailhelp.db.models import Outbox, Participant, Ticket
from tests.helpers import mail_of
from tests.security.desk import (
    SERVER_FAIL,
    SERVER_PASS,
    TRUSTED,
    mail,
)

PHISHING_NAME = '"Your mailbox is full - log in at https://evil.example/owa"'


def test_own_domain_forgery_is_held_and_gets_no_automatic_mail(make_desk):
    desk = make_desk(TRUSTED)
    result = desk.send(mail(sender=f"{PHISHING_NAME} <teacher1@school.test>",
                            subject="Your mailbox is full - log in at https://evil.example/owa",
                            headers=SERVER_FAIL.replace("\n", "\nCc: evil@attacker.test\n", 1)))
    assert result.outcome.action == "new_ticket"
    [ticket] = desk.rows(Ticket)
    assert ticket.held and "dmarc=fail" in ticket.held
    assert desk.rows(Outbox, Outbox.kind == "ack") == []
    assert desk.rows(Participant) == []  # its Cc: line is the forger's word too
    # Staff hear of it, with how to release it.
    notes = desk.rows(Outbox, Outbox.kind == "notification")
    assert notes and all(b"#release" in mail_of(row) for row in notes)
    assert all(r.startswith("tech") for row in desk.rows(Outbox) for r in row.recipients)


def test_release_sends_the_acknowledgement(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail(headers=SERVER_FAIL))
    desk.send(mail(sender="tech1@school.test", subject="Re: [#1] Printer jam",
                   body="#release", headers=SERVER_PASS))
    [ticket] = desk.rows(Ticket)
    assert ticket.held is None
    [ack] = desk.rows(Outbox, Outbox.kind == "ack")
    assert ack.recipients == ["teacher1@school.test"] and ack.status == "queued"


def test_release_on_a_ticket_that_is_not_held_is_a_command_error(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail(headers=SERVER_PASS))
    result = desk.send(mail(sender="tech1@school.test", subject="Re: [#1] Printer jam",
                            body="#release", headers=SERVER_PASS))
    assert "not held" in result.outcome.detail


def test_verified_and_unjudged_district_mail_is_a_normal_ticket(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail(headers=SERVER_PASS))
    desk.send(mail(sender="teacher2@school.test", subject="Beamer"))  # no verdict at all
    assert [t.held for t in desk.rows(Ticket)] == [None, None]
    assert len(desk.rows(Outbox, Outbox.kind == "ack")) == 2


def test_a_forged_reply_in_a_teachers_name_is_only_a_note(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail(headers=SERVER_PASS))
    desk.send(mail(subject="Re: [#1] Printer jam", body="Never mind, close it.",
                   headers=SERVER_FAIL))
    [ticket] = desk.rows(Ticket)
    assert ticket.status == "new"


def test_automatic_mail_never_repeats_a_display_name(make_desk):
    desk = make_desk()
    desk.send(mail(sender=f"{PHISHING_NAME} <parent@outside.test>", subject="Help"))
    [ack] = desk.rows(Outbox, Outbox.kind == "ack")
    assert b"evil.example" not in mail_of(ack) and b"mailbox is full" not in mail_of(ack)
    desk.send(mail(sender="Jane Q. Teacher <teacher1@school.test>", subject="Other"))
    ack = desk.rows(Outbox, Outbox.kind == "ack")[-1]
    assert b"Hello Jane," in mail_of(ack) and b"Jane Q. Teacher" not in mail_of(ack)


def test_a_forged_subject_comes_back_without_its_links(make_desk):
    # With nothing to verify against (the default), a request is answered: its links
    # are not.
    desk = make_desk()
    desk.send(mail(sender="teacher1@school.test",
                   subject="Your mailbox is full - log in at https://evil.example/owa"))
    [ack] = desk.rows(Outbox, Outbox.kind == "ack")
    assert b"evil.example" not in mail_of(ack) and b"[link]" in mail_of(ack)
    # Staff see the subject as it came.
    [note] = desk.rows(Outbox, Outbox.kind == "notification")[:1]
    assert b"evil.example" in mail_of(note)


def test_the_outsider_answer_repeats_nothing_of_theirs(make_desk):
    desk = make_desk('[helpdesk]\nrequester_domains = ["school.test"]\n')
    desk.send(mail(sender=f"{PHISHING_NAME} <victim@gmail.test>",
                   subject="Password expires today - https://evil.example"))
    [answer] = desk.rows(Outbox, Outbox.kind == "outsider")
    assert b"evil.example" not in mail_of(answer) and b"expires" not in mail_of(answer)
