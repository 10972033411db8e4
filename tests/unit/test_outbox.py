"""Outgoing mail is built safely: no header injection, HTML escaped, threading headers."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from types import SimpleNamespace

from mailhelp import config as config_module
from mailhelp.delivery.outbox import Draft, header_block
from mailhelp.delivery.templating import render as render_template
from mailhelp.desk.notices import variables
from mailhelp.mail import composer
from mailhelp.mail.parse import Address

CONFIG = config_module.loads('[helpdesk]\nname = "Help <Desk>"\naddress = "help@school.test"\n')
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def ticket(subject: str, requester_name: str = "Jane") -> SimpleNamespace:
    person = SimpleNamespace(name=requester_name, address="teacher1@school.test")
    return SimpleNamespace(id=7, subject=subject, status="new", priority="normal",
                           requester=person, participants=[], linked_ticket_id=None,
                           held=None, school="", room="", category="")


def render(subject: str, text: str = "hello", name: str = "Jane") -> email.message.EmailMessage:
    t = ticket(subject, name)
    message = {"subject": " ".join(subject.split()), "text": text, "from": "teacher1@school.test",
               "from_name": name, "attachments": [], "dropped": []}
    draft = Draft(kind="ack", to=(Address(name, "teacher1@school.test"),),
                  variables=variables(CONFIG, t, message=message), in_reply_to="<a@x>",
                  references=("<r@x>",))
    rendered = render_template(draft.kind, draft.variables)
    # What the outbox stores (a header block) and the sender adds (the body).
    _, head = header_block(CONFIG, t, draft, NOW, rendered.subject, b"k" * 32)
    raw = composer.complete(head, rendered.text, rendered.html)
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_no_header_injection_through_subject_or_name():
    mail = render("Hi\r\nBcc: victim@evil.example", name="Eve\r\nBcc: x@evil.example")
    assert mail["Bcc"] is None
    assert "\n" not in mail["Subject"]
    assert [a.addr_spec for a in mail["To"].addresses] == ["teacher1@school.test"]


def test_html_part_escapes_what_people_wrote():
    mail = render("<script>alert(1)</script>", text="<img src=x onerror=alert(1)>")
    html = mail.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_loop_and_threading_headers():
    mail = render("Projector")
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail["X-Mailhelp-Loop"] == "help@school.test"
    assert mail["In-Reply-To"] == "<a@x>"
    assert mail["References"] == "<r@x> <a@x>"
    assert mail["Message-ID"].endswith("@school.test>") and ".mailhelp.t7@" in mail["Message-ID"]
    assert mail["From"].addresses[0].display_name == "Help <Desk>"


def test_what_waits_to_be_written_goes_with_a_rollback(tmp_path):
    # Events and mail wait in the session until the commit; a rollback (a savepoint's
    # too) must take them with it, or the next transaction would write them.
    from sqlalchemy import func, select

    from mailhelp.db.migrate import upgrade
    from mailhelp.db.models import Person, Ticket, TicketEvent
    from mailhelp.db.session import Database
    from mailhelp.desk.tickets import event

    db = Database(f"sqlite:///{tmp_path / 'rollback.db'}")
    upgrade(db)
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    with db.sessions() as session:
        with session.begin():
            ticket = Ticket(subject="s", status="new", priority="normal", participants=[],
                            requester=Person(address="a@school.test", created_at=now),
                            created_at=now, updated_at=now)
            session.add(ticket)
            session.flush()
            event(session, ticket, now, "a@school.test", "kept", "")
        with session.begin():
            savepoint = session.begin_nested()
            event(session, ticket, now, "a@school.test", "undone", "")
            savepoint.rollback()
        session.begin()
        event(session, ticket, now, "a@school.test", "undone too", "")
        session.rollback()
        with session.begin():
            pass
        actions = list(session.scalars(select(TicketEvent.action)))
        assert actions == ["kept"]
        assert session.scalar(select(func.count()).select_from(TicketEvent)) == 1
    db.dispose()
