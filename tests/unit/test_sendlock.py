"""Two senders of one desk never send one outbox row twice (delivery/sendlock.py): two
OutboxSenders flushing one outbox at the same moment, counted at a real SMTP server
(aiosmtpd); a holder killed with SIGKILL lets the next sender through; a flush that
stopped waiting for the lock leaves none behind."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mailhelp.delivery.journal import SentJournal
from mailhelp.delivery.sendlock import SendLock
from mailhelp.delivery.worker import OutboxSender
from mailhelp.states import OutboxStatus
from tests.helpers import ROOT
from tests.unit.smtp_answering import NOW, desk_with_mail, rows

REQUESTS = 60  # an acknowledgement and a staff notification each: 120 rows

HOLD = """
import asyncio, sys, time
from mailhelp.db.session import Database
from mailhelp.delivery.sendlock import SendLock
held = asyncio.run(SendLock(Database(sys.argv[1])).take())
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def many(tmp_path, database_url, smtp_server):
    yield from desk_with_mail(tmp_path, database_url, smtp_server, requests=REQUESTS)


def all_rows(db):
    from sqlalchemy import select

    from mailhelp.db.models import Outbox

    with db.sessions() as session:
        return list(session.scalars(select(Outbox)))


def received_ids(handler) -> Counter:
    """How many times the server took each Message-ID."""
    return Counter(email.message_from_bytes(content)["Message-ID"]
                   for _, _, content in handler.received)


def flush_in_thread(sender: OutboxSender, start: threading.Barrier | None, results: list,
                    timeout: float = 60) -> threading.Thread:
    def run() -> None:
        async def go():
            try:
                return await asyncio.wait_for(sender.flush(), timeout)
            finally:
                await sender.close()
        if start is not None:
            start.wait()
        try:
            results.append(asyncio.run(go()))
        except BaseException as error:  # the test thread asserts on it
            results.append(error)

    thread = threading.Thread(target=run, daemon=True)  # one that hangs fails, not blocks
    thread.start()
    return thread


def journal_dir(sender: OutboxSender) -> str:
    """[storage] attachments_dir, where PostgreSQL's journal is (SQLite's: beside it)."""
    return os.path.dirname(sender.journal.path)


def second_sender(db, sender: OutboxSender) -> OutboxSender:
    return OutboxSender(sender.config, db, sender.clock, journal_dir(sender))


def test_two_senders_at_once_send_every_row_exactly_once(many):
    handler, db, first, clock = many
    second = second_sender(db, first)
    expected = {row.message_id for row in all_rows(db)}
    assert len(expected) == 2 * REQUESTS
    start, results = threading.Barrier(2), []
    threads = [flush_in_thread(sender, start, results) for sender in (first, second)]
    for thread in threads:
        thread.join(90)
    assert not [r for r in results if isinstance(r, BaseException)], results
    counts = received_ids(handler)
    assert set(counts) == expected
    assert [mid for mid, n in counts.items() if n != 1] == []
    assert sum(stats.sent for stats in results) == 2 * REQUESTS
    assert {row.status for row in all_rows(db)} == {OutboxStatus.SENT}


@contextmanager
def holder(database_url: str) -> Iterator[subprocess.Popen]:
    """A process that has taken the desk's sender lock and keeps it until killed."""
    with subprocess.Popen([sys.executable, "-c", HOLD, database_url], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        try:
            line = child.stdout.readline()
            assert line == b"held\n", (line, child.stderr.read() if child.poll() else b"")
            yield child
        finally:
            child.kill()


def test_a_holder_killed_with_sigkill_does_not_block_the_next_sender(setup, database_url):
    handler, db, sender, clock = setup
    with holder(database_url) as child:
        results: list = []
        waiting = flush_in_thread(sender, None, results)  # waits for the child's lock
        os.kill(child.pid, signal.SIGKILL)
    waiting.join(60)
    assert not waiting.is_alive() and len(results) == 1
    assert not isinstance(results[0], BaseException), results
    assert results[0].sent == 2
    assert sorted(received_ids(handler).values()) == [1, 1]
    assert {row.status for row in rows(db).values()} == {OutboxStatus.SENT}


def test_a_flush_that_gave_up_waiting_leaves_no_lock_behind(setup, database_url):
    handler, db, sender, clock = setup
    with holder(database_url):
        async def impatient():
            try:
                await asyncio.wait_for(sender.flush(), 0.5)
            finally:
                await sender.close()
        with pytest.raises(TimeoutError):
            asyncio.run(impatient())
        # It waited for the lock, and so sent nothing.
        assert {row.status for row in rows(db).values()} == {OutboxStatus.QUEUED}
    # Its waiting thread may take the lock now: it lets go of it at once.
    results: list = []
    later = flush_in_thread(second_sender(db, sender), None, results)
    later.join(60)
    assert not later.is_alive() and not isinstance(results[0], BaseException), results
    assert results[0].sent == 2
    assert sorted(received_ids(handler).values()) == [1, 1]


def test_a_sender_whose_journal_notes_another_carried_still_ends_its_flush(setup):
    # The journal of sent mail is the desk's, shared by its senders: notes the sender saw
    # when it opened it were carried into the outbox by another before its flush (its
    # count of them stale). The flush carried "them" again and again, forever.
    handler, db, sender, clock = setup
    other = SentJournal.for_database(db, journal_dir(sender))
    other.note([row.id for row in rows(db).values()], NOW)  # another sender sent both...
    late = second_sender(db, sender)  # (this one sees two notes)
    other.carry()  # ...and carried its notes into the outbox
    other.close()
    results: list = []
    flushing = flush_in_thread(late, None, results, timeout=20)
    flushing.join(30)
    assert not flushing.is_alive() and not isinstance(results[0], BaseException), results
    assert results[0].sent == 0 and handler.received == []
    assert {row.status for row in rows(db).values()} == {OutboxStatus.SENT}


def test_each_desk_has_its_own_lock_and_the_file_is_private(database_url, tmp_path):
    # Two desks (two SQLite files, or two schemas of one PostgreSQL database) never wait
    # for each other.
    from mailhelp.db.session import Database
    from tests.conftest import database_at

    (tmp_path / "other").mkdir()
    with database_at(tmp_path / "other") as other_url:
        one, other = Database(database_url), Database(other_url)
        try:
            async def both():
                held = [await asyncio.wait_for(SendLock(db).take(), 10) for db in (one, other)]
                for each in held:
                    each.release()
            asyncio.run(both())
            if database_url.startswith("sqlite"):
                lock_file = f"{one.engine.url.database}-send.lock"
                assert os.stat(lock_file).st_mode & 0o777 == 0o600
        finally:
            one.dispose()
            other.dispose()
