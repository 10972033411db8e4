from __future__ import annotations

import pytest

from mailhelp.desk.threads import (
    PLUS_ADDRESS,
    REFERENCES,
    SUBJECT_TAG,
    find_ticket,
    is_help_address,
    ticket_subject,
)
from mailhelp.mail.parse import parse

HELP = "help@school.test"


def inbound(subject="Help", to="help@school.test", extra=""):
    return parse(f"From: a@x.test\nTo: {to}\nSubject: {subject}\n{extra}\nbody\n".encode())


def never(ids):
    return None


@pytest.mark.parametrize(("subject", "ticket"), [
    ("[#42] Projector", 42),
    ("RE: AW: Fwd: [#42] Projector", 42),
    ("Re: [Ticket #42] Projector", 42),
    ("Projector [Springfield Help #42 urgent]", 42),
    ("Re: Projector [#7]", 7),
    ("Projector #42", None),
    ("[42] Projector", None),
])
def test_subject_tag_forms(subject, ticket):
    match = find_ticket(inbound(subject), never, "#{id}", HELP)
    assert (match.ticket_id if match else None) == ticket
    if match:
        assert match.reason == SUBJECT_TAG and match.guessable


def test_custom_tag():
    match = find_ticket(inbound("Re: [HD-9] x"), never, "HD-{id}", HELP)
    assert match.ticket_id == 9


def test_references_come_first_and_are_not_guessable():
    message = inbound("[#1] x", extra="In-Reply-To: <b@x>\nReferences: <a@x> <b@x>\n")
    seen = {}

    def lookup(ids):
        seen["ids"] = list(ids)
        return 5, frozenset()

    match = find_ticket(message, lookup, "#{id}", HELP)
    assert match.ticket_id == 5 and match.reason == REFERENCES and not match.guessable
    assert seen["ids"] == ["<b@x>", "<a@x>"]


def test_plus_address():
    match = find_ticket(inbound(to="help+17@school.test"), never, "#{id}", HELP)
    assert match.ticket_id == 17 and match.reason == PLUS_ADDRESS


def test_no_match():
    assert find_ticket(inbound(), never, "#{id}", HELP) is None


@pytest.mark.parametrize(("subject", "expected"), [
    ("Re: [#1] Gradebook password", "Gradebook password"),
    ("AW: RE: Printer [Ticket #4]", "Printer"),
    ("Fwd: Printer", "Fwd: Printer"),
    ("[#3]", "(no subject)"),
    ("Projector in room 12", "Projector in room 12"),
])
def test_ticket_subject(subject, expected):
    assert ticket_subject(subject, "#{id}") == expected


def test_help_address_forms():
    assert is_help_address("HELP@school.test", HELP)
    assert is_help_address("help+3@school.test", HELP)
    assert not is_help_address("helpdesk@school.test", HELP)
