"""staffthread.py: each staff address's References chain for a ticket's staff mail, read
from the messages written and the mail the batch still holds."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, select

from mailhelp.db.models import Message, Ticket
from mailhelp.desk.batch import Batch
from mailhelp.desk.staffthread import KEPT, staff_thread, staff_threads
from tests.security.desk import mail

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TECH1, TECH2 = "tech1@school.test", "tech2@school.test"


def _ticket(make_desk):
    """A desk with ticket 1: its request, and a new-ticket notification to each tech."""
    desk = make_desk()
    desk.send(mail(message_id="<request@x.test>"))
    return desk


def _add(session, message_id: str, to: str, kind: str = "notification") -> None:
    session.add(Message(ticket_id=1, direction="out", kind=kind, message_id=message_id,
                        from_address="help@school.test", to=[to], created_at=NOW))


def _notified(session, address: str) -> str:
    return next(m.message_id for m in session.scalars(
        select(Message).where(Message.kind == "notification")) if address in m.to)


def test_each_address_has_its_own_chain_under_the_request(make_desk):
    desk = _ticket(make_desk)
    with desk.db.sessions() as session:
        ticket = session.get(Ticket, 1)
        first = {tech: _notified(session, tech) for tech in (TECH1, TECH2)}
        _add(session, "<relay@x.test>", "teacher1@school.test", kind="relay")
        _add(session, "<second@x.test>", TECH1)
        session.flush()
        # A note to tech2 queued in this transaction and not written yet.
        Batch.of(session).hold_mail({"ticket_id": 1, "kind": "notification",
                                     "message_id": "<note@x.test>", "to": [TECH2]}, {})
        threads = staff_threads(session, ticket, [TECH1, TECH2, "lead@school.test"])
        Batch.of(session).waiting.mail.clear()
        session.rollback()
    assert threads[TECH1] == ("<second@x.test>",
                              ("<request@x.test>", first[TECH1], "<second@x.test>"))
    assert threads[TECH2] == ("<note@x.test>",
                              ("<request@x.test>", first[TECH2], "<note@x.test>"))
    assert threads["lead@school.test"] == ("<request@x.test>", ("<request@x.test>",))


def test_a_long_chain_keeps_the_request_and_the_latest(make_desk):
    desk = _ticket(make_desk)
    with desk.db.sessions() as session:
        for n in range(30):
            _add(session, f"<n{n}@x.test>", TECH1)
        session.flush()
        in_reply_to, references = staff_thread(session, session.get(Ticket, 1), TECH1)
        session.rollback()
    assert in_reply_to == "<n29@x.test>" and len(references) == KEPT
    assert references[0] == "<request@x.test>" and references[-1] == "<n29@x.test>"
    assert references[1] == f"<n{30 - KEPT + 1}@x.test>"


def test_a_new_tickets_notification_asks_the_database_nothing(make_desk):
    desk = _ticket(make_desk)
    statements = []

    def count(*args) -> None:
        statements.append(args[2])

    with desk.db.sessions() as session:
        ticket = session.get(Ticket, 1)
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            threads = staff_threads(session, ticket, [TECH1],
                                    new_ticket_request="<request@x.test>")
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert threads == {TECH1: ("<request@x.test>", ("<request@x.test>",))}
    assert statements == []


def test_replies_in_one_batch_chain_on_one_another(make_desk):
    """Two replies on one ticket applied in one transaction (the daemon's batches): the
    staff mail is read once, and the second notification follows the first, which the
    batch wrote or still holds."""
    from mailhelp.service.pipeline import Arrival

    desk = _ticket(make_desk)
    replies = [mail(body=text, headers="In-Reply-To: <request@x.test>\n",
                    message_id=f"<reply{n}@x.test>")
               for n, text in enumerate(("It jams on page 2.", "Now on every page."))]
    desk.pipeline.accept([Arrival(raw, "t") for raw in replies])
    to_tech1 = [m for m in desk.rows(Message, Message.kind == "notification") if TECH1 in m.to]
    assert len(to_tech1) == 3
    new, first, second = to_tech1
    assert new.in_reply_to == "<request@x.test>" and new.references == ["<request@x.test>"]
    assert first.in_reply_to == new.message_id
    assert second.in_reply_to == first.message_id
    assert second.references == ["<request@x.test>", new.message_id, first.message_id]
