"""The outbox worker against a real SMTP server (aiosmtpd) that answers as told: what
it sends, and what it writes in the outbox and on the ticket."""

from __future__ import annotations

import email
import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from mailhelp.db.models import Outbox, TicketEvent
from mailhelp.db.session import transaction
from mailhelp.localmail import free_port
from mailhelp.states import OutboxStatus
from tests.unit.smtp_answering import (
    NOW,
    desk_with_mail,
    flush,
    rows,
)


@pytest.fixture
def busy_setup(tmp_path, database_url, smtp_server):
    """45 requests from one teacher: 45 acknowledgements to one address, 45 notifications."""
    yield from desk_with_mail(tmp_path, database_url, smtp_server, requests=45)


def test_everything_due_is_sent_once(setup):
    handler, db, sender, clock = setup
    stats = flush(sender)
    assert (stats.sent, stats.deferred, stats.failed) == (2, 0, 0)
    assert sorted(r[1][0] for r in handler.received) == ["teacher1@school.test",
                                                         "tech1@school.test"]
    assert all(r.status == OutboxStatus.SENT and r.sent_at == NOW for r in rows(db).values())
    assert flush(sender).sent == 0


def test_temporary_refusal_is_retried_with_backoff(setup, caplog):
    handler, db, sender, clock = setup
    handler.rcpt_answer["teacher1@school.test"] = "451 4.3.0 try later"
    with caplog.at_level(logging.INFO, logger="mailhelp.delivery.worker"):
        stats = flush(sender)
    assert (stats.sent, stats.deferred) == (1, 1)
    ack = rows(db)["ack"]
    assert ack.status == OutboxStatus.QUEUED and ack.attempts == 1
    assert ack.next_attempt_at == NOW + timedelta(minutes=1) and "451" in ack.last_error
    assert (f"ticket=1 message={ack.message_id} outbox={ack.id} action=send_deferred "
            "attempt=1 retry_in=60s error=451 4.3.0 try later") in caplog.text
    assert flush(sender).sent == 0  # not due yet
    handler.rcpt_answer.clear()
    clock["now"] = NOW + timedelta(minutes=1)
    assert flush(sender).sent == 1
    assert rows(db)["ack"].status == OutboxStatus.SENT


def test_temporary_refusals_give_up_after_max_attempts(setup):
    handler, db, sender, clock = setup
    handler.rcpt_answer["teacher1@school.test"] = "451 busy"
    for minutes in (0, 1, 3):
        clock["now"] = NOW + timedelta(minutes=minutes)
        flush(sender)
    ack = rows(db)["ack"]
    assert ack.status == OutboxStatus.FAILED and ack.attempts == 3
    with transaction(db) as tx:
        [event_] = tx.scalars(select(TicketEvent).where(TicketEvent.action == "mail_failed"))
        assert event_.detail == "ack: gave up: 451 busy" and event_.ticket_id == 1


def test_permanent_refusal_fails_and_is_noted_on_the_ticket(setup):
    handler, db, sender, clock = setup
    handler.rcpt_answer["teacher1@school.test"] = "550 5.1.1 no such user"
    stats = flush(sender)
    assert (stats.sent, stats.failed) == (1, 1)
    assert rows(db)["ack"].status == OutboxStatus.FAILED
    with transaction(db) as tx:
        [event_] = tx.scalars(select(TicketEvent).where(TicketEvent.action == "mail_failed"))
        assert "550 5.1.1 no such user" in event_.detail and event_.ticket_id == 1


def test_data_refused_temporarily(setup):
    handler, db, sender, clock = setup
    handler.data_answer = "452 4.3.1 insufficient storage"
    stats = flush(sender)
    assert stats.sent == 0 and stats.deferred >= 1
    assert all(r.status == OutboxStatus.QUEUED for r in rows(db).values())


def test_server_down_defers_everything(setup):
    handler, db, sender, clock = setup
    sender.config = replace(sender.config, port=free_port())
    for transport in sender.transports:
        transport.config = sender.config
    stats = flush(sender)
    assert stats.sent == 0 and stats.deferred >= 1
    assert all(r.status == OutboxStatus.QUEUED for r in rows(db).values())
    assert all("cannot connect" in (r.last_error or "cannot connect") for r in rows(db).values())


def _ints(parameters) -> list[int]:
    values = parameters.values() if isinstance(parameters, dict) else parameters
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def test_rows_are_read_ahead_once_each_and_those_gone_meanwhile_are_skipped(busy_setup):
    # Each connection reads its next rows while it sends these, up to 20 at a time, each
    # row once. Two rows another sender took after this flush chose its mail are
    # neither sent nor read again. The statements are watched on the desk's own engine.
    handler, db, sender, clock = busy_setup
    with db.sessions() as session:
        acks = list(session.scalars(select(Outbox.id).where(Outbox.kind == "ack")
                                    .order_by(Outbox.id)))
    assert len(acks) == 45
    taken, loads = (acks[5], acks[25]), []

    def watch(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT outbox.id, outbox.to_address") and not taken_yet:
            taken_yet.append(True)  # another sender took two, just after this one chose
            with db.engine.connect() as other, other.begin():
                other.execute(Outbox.__table__.update().where(Outbox.id.in_(taken))
                              .values(status=OutboxStatus.SENT))
        elif statement.startswith("SELECT") and "outbox.raw" in statement:
            loads.append(_ints(parameters))

    taken_yet: list[bool] = []
    event.listen(db.engine, "after_cursor_execute", watch)
    try:
        assert flush(sender).sent == 88
    finally:
        event.remove(db.engine, "after_cursor_execute", watch)
    read = [row_id for ids in loads for row_id in ids]
    assert sorted(read) == sorted(set(read)) and len(read) == 90  # every row, once
    assert all(len(ids) <= 20 for ids in loads)
    to_teacher = [r for r in handler.received if r[1] == ["teacher1@school.test"]]
    sent = [a for a in acks if a not in taken]
    assert len(to_teacher) == len(sent)
    with db.sessions() as session:
        order = {m: i for i, m in session.execute(select(Outbox.id, Outbox.message_id))}
    assert [order[email.message_from_bytes(raw)["Message-ID"]]
            for _, _, raw in to_teacher] == sent
    assert flush(sender).sent == 0
