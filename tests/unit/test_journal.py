"""The journal of sent mail: marks noted beside the outbox, carried into it, and never
a mail sent twice for it."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time

import pytest
from sqlalchemy import event

from mailhelp.db.models import Outbox
from mailhelp.db.session import WriteTurn, transaction
from mailhelp.delivery.journal import SentJournal
from mailhelp.errors import ConfigError
from mailhelp.states import OutboxStatus
from tests.unit.smtp_answering import (
    NOW,
    desk_with_mail,
    flush,
    rows,
)


@pytest.fixture
def sqlite_setup(tmp_path, smtp_server):
    """The journal of sent mail is SQLite's (PostgreSQL has no single write lock)."""
    yield from desk_with_mail(tmp_path, f"sqlite:///{tmp_path / 'journal.db'}", smtp_server)


@pytest.fixture
def busy_setup(tmp_path, database_url, smtp_server):
    """45 requests from one teacher: 45 acknowledgements to one address, 45 notifications."""
    yield from desk_with_mail(tmp_path, database_url, smtp_server, requests=45)


def notes_of(sender) -> list[int]:
    """The outbox rows the sender's journal is given, as it is given them."""
    noted = []
    note = sender.journal.note
    sender.journal.note = lambda row_ids, at: (noted.extend(row_ids), note(row_ids, at))
    return noted


def assert_all_sent_and_carried(db, sender) -> None:
    assert all(r.status == OutboxStatus.SENT and r.sent_at == NOW and r.attempts == 1
               for r in rows(db).values())
    sender.journal.open()
    assert sender.journal.count == 0  # nothing left in the journal


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
    assert rows(db)["ack"].status == OutboxStatus.SENT
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
    assert rows(db)["ack"].status == OutboxStatus.SENT
    with transaction(db) as tx:
        tx.get(Outbox, ack.id).status = OutboxStatus.QUEUED
    sender.journal.connection.execute("INSERT INTO sent VALUES (?, ?)",
                                      (ack.id, NOW.isoformat()))
    sender.journal.count = 1
    stats = flush(sender)
    assert stats.sent == 1
    assert [r[1] for r in handler.received] == [["tech1@school.test"]]
    assert rows(db)["ack"].status == OutboxStatus.SENT


def test_connections_do_not_wait_for_the_notes_to_be_carried(busy_setup):
    # On PostgreSQL, carrying notes into the outbox (a round trip, an UPDATE of fifty
    # rows) happens beside the sending: a carry that cannot finish until every mail is
    # at the server does not keep them from getting there. The first carry is held
    # back on the desk's own engine, as the statement is about to run.
    handler, db, sender, clock = busy_setup
    if db.dialect == "sqlite":
        pytest.skip("SQLite's notes are carried between sends (local and quick, and "
                    "faster so); the PostgreSQL pass runs this")
    waits: list[int] = []

    def slow_carry(connection, cursor, statement, parameters, context, executemany):
        if not (executemany and statement.startswith("UPDATE outbox")):
            return
        if not waits:  # the first carry: until every mail is at the server, or 5 s
            deadline = time.monotonic() + 5
            while len(handler.received) < 90 and time.monotonic() < deadline:
                time.sleep(0.01)
        waits.append(len(handler.received))

    event.listen(db.engine, "before_cursor_execute", slow_carry)
    try:
        noted = notes_of(sender)
        assert flush(sender).sent == 90
    finally:
        event.remove(db.engine, "before_cursor_execute", slow_carry)
    assert len(noted) == 90
    assert waits and waits[0] == 90  # the first carry waited for every mail, and got it
    assert_all_sent_and_carried(db, sender)
