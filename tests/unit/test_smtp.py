"""The outbox sender against a real SMTP server (aiosmtpd) that answers as told."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Outbox, TicketEvent
from mailhelp.db.session import Database, WriteTurn, transaction
from mailhelp.delivery.smtp import OutboxSender, SentJournal
from mailhelp.errors import ConfigError
from mailhelp.localmail import free_port
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.helpers import desk_config

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


class Answering:
    """An aiosmtpd handler: records what it accepts, answers RCPT with a set code."""

    def __init__(self) -> None:
        self.rcpt_answer: dict[str, str] = {}
        self.data_answer = "250 OK"
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, options):
        answer = self.rcpt_answer.get(address, "250 OK")
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server, session, envelope):
        if self.data_answer.startswith("250"):
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return self.data_answer


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    handler = Answering()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def setup(tmp_path, database_url, smtp_server):
    yield from _setup(tmp_path, database_url, smtp_server)


@pytest.fixture
def sqlite_setup(tmp_path, smtp_server):
    """The journal of sent mail is SQLite's (PostgreSQL has no single write lock)."""
    yield from _setup(tmp_path, f"sqlite:///{tmp_path / 'journal.db'}", smtp_server)


@pytest.fixture
def busy_setup(tmp_path, database_url, smtp_server):
    """45 requests from one teacher: 45 acknowledgements to one address, 45 notifications."""
    yield from _setup(tmp_path, database_url, smtp_server, requests=45)


def _setup(tmp_path, database_url, smtp_server, requests: int = 1):
    handler, port = smtp_server
    config = desk_config(tmp_path, database_url, f"""
        [smtp]
        host = "127.0.0.1"
        port = {port}
        security = "none"
        retry_delay = "1m"
        max_attempts = 3
        [limits]
        auto_mails_per_address = {max(5, requests)}
        """)
    db = Database(database_url)
    upgrade(db)
    clock = {"now": NOW}
    pipeline = Pipeline(config, db, lambda: clock["now"])
    pipeline.accept([Arrival(b"From: teacher1@school.test\nTo: help@school.test\nSubject: Wifi\n"
                             b"Message-ID: <w%d@x>\n\nNo wifi in room 3.\n" % n, "t")
                     for n in range(requests)])
    sender = OutboxSender(config.smtp, db, lambda: clock["now"], config.storage.attachments_dir)
    yield handler, db, sender, clock
    db.dispose()


def flush(sender):
    async def run():
        try:
            return await sender.flush()
        finally:
            await sender.close()
    return asyncio.run(run())


def rows(db) -> dict[str, Outbox]:
    with db.sessions() as session:
        return {r.kind: r for r in session.scalars(select(Outbox))}


def notes_of(sender) -> list[int]:
    """The outbox rows the sender's journal is given, as it is given them."""
    noted = []
    note = sender.journal.note
    sender.journal.note = lambda row_ids, at: (noted.extend(row_ids), note(row_ids, at))
    return noted


def assert_all_sent_and_carried(db, sender) -> None:
    assert all(r.status == "sent" and r.sent_at == NOW and r.attempts == 1
               for r in rows(db).values())
    sender.journal.open()
    assert sender.journal.count == 0  # nothing left in the journal


def test_everything_due_is_sent_once(setup):
    handler, db, sender, clock = setup
    stats = flush(sender)
    assert (stats.sent, stats.deferred, stats.failed) == (2, 0, 0)
    assert sorted(r[1][0] for r in handler.received) == ["teacher1@school.test",
                                                         "tech1@school.test"]
    assert all(r.status == "sent" and r.sent_at == NOW for r in rows(db).values())
    assert flush(sender).sent == 0


def test_temporary_refusal_is_retried_with_backoff(setup):
    handler, db, sender, clock = setup
    handler.rcpt_answer["teacher1@school.test"] = "451 4.3.0 try later"
    stats = flush(sender)
    assert (stats.sent, stats.deferred) == (1, 1)
    ack = rows(db)["ack"]
    assert ack.status == "queued" and ack.attempts == 1
    assert ack.next_attempt_at == NOW + timedelta(minutes=1) and "451" in ack.last_error
    assert flush(sender).sent == 0  # not due yet
    handler.rcpt_answer.clear()
    clock["now"] = NOW + timedelta(minutes=1)
    assert flush(sender).sent == 1
    assert rows(db)["ack"].status == "sent"


def test_temporary_refusals_give_up_after_max_attempts(setup):
    handler, db, sender, clock = setup
    handler.rcpt_answer["teacher1@school.test"] = "451 busy"
    for minutes in (0, 1, 3):
        clock["now"] = NOW + timedelta(minutes=minutes)
        flush(sender)
    ack = rows(db)["ack"]
    assert ack.status == "failed" and ack.attempts == 3


def test_permanent_refusal_fails_and_is_noted_on_the_ticket(setup):
    handler, db, sender, clock = setup
    handler.rcpt_answer["teacher1@school.test"] = "550 5.1.1 no such user"
    stats = flush(sender)
    assert (stats.sent, stats.failed) == (1, 1)
    assert rows(db)["ack"].status == "failed"
    with transaction(db) as tx:
        [event] = tx.scalars(select(TicketEvent).where(TicketEvent.action == "mail_failed"))
        assert "550 5.1.1 no such user" in event.detail and event.ticket_id == 1


def test_data_refused_temporarily(setup):
    handler, db, sender, clock = setup
    handler.data_answer = "452 4.3.1 insufficient storage"
    stats = flush(sender)
    assert stats.sent == 0 and stats.deferred >= 1
    assert all(r.status == "queued" for r in rows(db).values())


def test_server_down_defers_everything(tmp_path, setup):
    handler, db, sender, clock = setup
    from dataclasses import replace

    sender.config = replace(sender.config, port=free_port())
    for transport in sender.transports:
        transport.config = sender.config
    stats = flush(sender)
    assert stats.sent == 0 and stats.deferred >= 1
    assert all(r.status == "queued" for r in rows(db).values())
    assert all("cannot connect" in (r.last_error or "cannot connect") for r in rows(db).values())


def test_with_a_write_turn_marks_go_to_the_journal_then_into_the_outbox(sqlite_setup):
    # The daemon's sender on SQLite: each mail noted in <file>-sent the moment the server
    # took it, and carried into the outbox before the flush is over.
    handler, db, sender, clock = sqlite_setup
    db.write_turn = WriteTurn(multiprocessing.get_context("fork"))
    noted = notes_of(sender)
    assert flush(sender).sent == 2
    assert len(noted) == 2
    assert_all_sent_and_carried(db, sender)


def test_on_postgresql_marks_are_noted_in_the_journal_and_carried_by_the_end(setup):
    # PostgreSQL: every mark is a note in <attachments_dir>/outbox-sent, whether or not
    # a daemon writes beside the sender. SQLite with no daemon: straight into the outbox.
    handler, db, sender, clock = setup
    noted = notes_of(sender)
    assert flush(sender).sent == 2
    if db.dialect == "postgresql":
        assert len(noted) == 2
        assert sender.journal.path.endswith(os.path.join("att", "outbox-sent"))
    else:
        assert noted == []
    assert_all_sent_and_carried(db, sender)


def test_a_mail_another_sender_noted_is_left_to_it(setup):
    # Another process's sender (the daemon's, beside a run --once) noted the mail after
    # this flush began and has not carried it yet: this one must not send it again.
    handler, db, sender, clock = setup
    ack = rows(db)["ack"]
    assert sender.journal.count == 0
    other = sqlite3.connect(sender.journal.path)
    with other:
        other.execute("INSERT INTO sent VALUES (?, ?)", (ack.id, NOW.isoformat()))
    other.close()
    assert flush(sender).sent == 1
    assert [r[1] for r in handler.received] == [["tech1@school.test"]]
    # Carried by whichever sender carries next (this one at the end of its flush, when
    # it has notes of its own to carry; the next flush at its start): never sent again.
    assert flush(sender).sent == 0
    assert rows(db)["ack"].status == "sent"
    assert len(handler.received) == 1


def test_a_journal_that_cannot_be_opened_names_the_config_key(setup, tmp_path):
    handler, db, sender, clock = setup
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"^storage\.attachments_dir: cannot open the journal"):
        SentJournal(db, str(tmp_path / "a-file" / "outbox-sent"), "storage.attachments_dir")


def test_notes_a_crash_left_in_the_journal_are_not_sent_again(sqlite_setup):
    # Killed between the note and its carrying: the mail went out; the next flush marks
    # it sent and sends only the rest.
    handler, db, sender, clock = sqlite_setup
    ack = rows(db)["ack"]
    sender.journal.note([ack.id], NOW)
    sender.journal.carry()
    assert rows(db)["ack"].status == "sent"
    with transaction(db) as tx:
        tx.get(Outbox, ack.id).status = "queued"
    sender.journal.connection.execute("INSERT INTO sent VALUES (?, ?)",
                                      (ack.id, NOW.isoformat()))
    sender.journal.count = 1
    stats = flush(sender)
    assert stats.sent == 1
    assert [r[1] for r in handler.received] == [["tech1@school.test"]]
    assert rows(db)["ack"].status == "sent"



def test_rows_are_read_ahead_once_each_and_those_gone_meanwhile_are_skipped(busy_setup,
                                                                          monkeypatch):
    # Each connection reads its next rows while it sends these, up to 20 at a time, each
    # row once. Two rows another sender took after this flush chose its mail are
    # neither sent nor read again.
    handler, db, sender, clock = busy_setup
    with db.sessions() as session:
        acks = list(session.scalars(select(Outbox.id).where(Outbox.kind == "ack")
                                    .order_by(Outbox.id)))
    assert len(acks) == 45
    due, load, loads = sender._due, sender._load, []

    def due_then_taken():
        chosen = due()
        with transaction(db) as tx:
            for row_id in (acks[5], acks[25]):
                tx.get(Outbox, row_id).status = "sent"
        return chosen

    def recorded_load(connection, row_ids):
        loads.append(row_ids)
        return load(connection, row_ids)

    monkeypatch.setattr(sender, "_due", due_then_taken)
    monkeypatch.setattr(sender, "_load", recorded_load)
    assert flush(sender).sent == 88
    read = [row_id for ids in loads for row_id in ids]
    assert sorted(read) == sorted(set(read)) and len(read) == 90  # every row, once
    assert all(len(ids) <= 20 for ids in loads)
    to_teacher = [r for r in handler.received if r[1] == ["teacher1@school.test"]]
    sent = [a for a in acks if a not in (acks[5], acks[25])]
    assert len(to_teacher) == len(sent)
    with db.sessions() as session:
        order = {m: i for i, m in session.execute(select(Outbox.id, Outbox.message_id))}
    assert [order[_message_id(raw)] for _, _, raw in to_teacher] == sent
    assert flush(sender).sent == 0


def _message_id(raw: bytes) -> str:
    import email

    return email.message_from_bytes(raw)["Message-ID"]


def test_connections_do_not_wait_for_the_notes_to_be_carried(busy_setup, monkeypatch):
    # On PostgreSQL, carrying notes into the outbox (a round trip, an UPDATE of fifty
    # rows) happens beside the sending: a carry that cannot finish until every mail is
    # at the server does not keep them from getting there.
    handler, db, sender, clock = busy_setup
    if db.dialect == "sqlite":
        pytest.skip("SQLite's notes are carried between sends (local and quick, and "
                    "faster so); the PostgreSQL pass runs this")
    monkeypatch.setattr(SentJournal, "CARRY_AFTER", 1)
    carry, waits = sender.journal._carry, []

    def slow_carry(*args, **kwargs):
        if not waits:  # the first carry: until every mail is at the server, or 5 s
            deadline = time.monotonic() + 5
            while len(handler.received) < 90 and time.monotonic() < deadline:
                time.sleep(0.01)
        waits.append(len(handler.received))
        return carry(*args, **kwargs)

    monkeypatch.setattr(sender.journal, "_carry", slow_carry)
    noted = notes_of(sender)
    assert flush(sender).sent == 90
    assert len(noted) == 90
    assert waits and waits[0] == 90  # the first carry waited for every mail, and got it
    assert_all_sent_and_carried(db, sender)
