"""A Batch holds back rows and caches for one transaction, and forgets what a rollback
undid; its listeners belong to its own session."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Message, Person, Ticket, TicketEvent
from mailhelp.db.session import Database, transaction
from mailhelp.desk import batch as batch_module
from mailhelp.desk.batch import Batch
from mailhelp.desk.tickets import event as ticket_event
from mailhelp.desk.tickets import person, ticket_number
from mailhelp.mail.parse import Address

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path, database_url):
    database = Database(database_url)
    upgrade(database)
    yield database
    database.dispose()


def new_ticket(tx: Session) -> Ticket:
    ticket = Ticket(id=ticket_number(tx), subject="s", status="new", priority="normal",
                    participants=[], requester=person(tx, Address("", "a@school.test"), NOW),
                    created_at=NOW, updated_at=NOW)
    tx.add(ticket)
    tx.flush()
    return ticket


def incoming(ticket: Ticket, message_id: str) -> dict:
    return {"ticket_id": ticket.id, "direction": "in", "kind": "reply",
            "message_id": message_id, "from_address": "a@school.test", "created_at": NOW}


def test_no_listener_is_registered_on_every_session():
    for name in ("before_commit", "after_soft_rollback", "after_transaction_end"):
        for listener in (batch_module._before_commit, batch_module._after_soft_rollback,
                         batch_module._after_transaction_end):
            assert not event.contains(Session, name, listener)


def test_held_rows_are_written_together_at_the_commit(db):
    statements = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: statements.append(statement))
    with transaction(db) as tx:
        batch = Batch(tx)
        ticket = new_ticket(tx)
        for n in range(5):
            batch.hold_incoming(incoming(ticket, f"<{n}@school.test>"))
            ticket_event(tx, ticket, NOW, "a@school.test", "noted", str(n))
        assert "<3@school.test>" in batch.pending_message_ids()
        del statements[:]
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 2  # the five messages, the five events
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 5
        assert session.scalar(select(func.count()).select_from(TicketEvent)) == 5


def test_a_savepoint_rolled_back_forgets_its_rows_numbers_and_people(db):
    with transaction(db) as tx:
        batch = Batch(tx)
        ticket = new_ticket(tx)
        batch.look_ahead_people(["a@school.test", "b@school.test"])
        batch.hold_incoming(incoming(ticket, "<kept@school.test>"))
        with batch.savepoint(ticket) as savepoint:
            ticket.subject = "changed in the savepoint"
            person(tx, Address("", "b@school.test"), NOW)  # made in the savepoint
            assert ticket_number(tx) == 2
            batch.hold_incoming(incoming(ticket, "<undone@school.test>"))
            ticket_event(tx, ticket, NOW, "a@school.test", "undone", "")
            savepoint.rollback()
        assert batch.pending_message_ids() == set()  # what came before was written
        assert ticket.subject == "s"  # expired, read again
        assert ticket_number(tx) == 2  # handed out again
        assert batch.people is None
        again = person(tx, Address("", "b@school.test"), NOW)  # asked again, made again
        assert again.id is not None
    with db.sessions() as session:
        assert list(session.scalars(select(Message.message_id))) == ["<kept@school.test>"]
        assert list(session.scalars(select(TicketEvent.action))) == []
        assert session.scalar(select(func.count()).select_from(Person)) == 2


def test_a_savepoint_kept_writes_its_rows_and_an_error_undoes_it(db):
    with transaction(db) as tx:
        batch = Batch(tx)
        ticket = new_ticket(tx)
        with batch.savepoint() as savepoint:
            batch.hold_incoming(incoming(ticket, "<kept@school.test>"))
        assert not savepoint.undone
        with pytest.raises(ValueError), batch.savepoint():
            batch.hold_incoming(incoming(ticket, "<undone@school.test>"))
            raise ValueError("a staff command failed badly")
    with db.sessions() as session:
        assert list(session.scalars(select(Message.message_id))) == ["<kept@school.test>"]


def test_a_batch_ends_with_its_transaction(db):
    with db.sessions() as session:
        with session.begin():
            first = Batch.of(session)
            assert Batch.of(session) is first
        assert Batch.current(session) is None
        with session.begin():
            assert Batch.of(session) is not first
