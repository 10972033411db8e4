"""The "sent" marks of the mails the server took: each SMTP connection's latest, made
together, from a thread, in the outbox or in the journal of sent mail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from ..db.session import WRITE, Database
from .journal import SentJournal
from .outbox_sql import mark_sent

log = logging.getLogger(__name__)


class SentMarks:
    """Marks accepted mails sent: each connection's latest, together, in one commit.

    A connection waits for its mail's mark before it sends the next, so a crash repeats
    at most one mail per connection. The commit runs in a thread: while it waits, the
    other connections go on talking to the server, and their marks go into the next
    commit. Where the marks are notes in a SentJournal, on PostgreSQL the notes are
    carried into the outbox from another thread, after the connections have heard that
    their mails are marked: a carry is a round trip and an UPDATE of many rows, which
    no connection need wait for.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime],
                 journal: SentJournal | None = None) -> None:
        self.db = db
        self.clock = clock
        self.journal = journal
        self.pending: list[tuple[int, asyncio.Future]] = []
        self.committing: asyncio.Task | None = None
        self.carrying: asyncio.Task | None = None
        # One connection for all the marks of a flush: a checkout from the pool costs a
        # round trip of its own (the liveness ping) on PostgreSQL.
        self.connection = None

    async def sent(self, row_id: int) -> None:
        done = asyncio.get_running_loop().create_future()
        self.pending.append((row_id, done))
        if self.committing is None or self.committing.done():
            self.committing = asyncio.create_task(self._commit_pending())
        await done

    async def _commit_pending(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await asyncio.to_thread(self._commit, [row_id for row_id, _ in batch])
            except Exception as error:  # each waiting connection hears of it
                for _, done in batch:
                    done.set_exception(error)
            else:
                for _, done in batch:
                    done.set_result(None)
                if self.journal is not None and self.db.dialect != "sqlite" and (
                        self.carrying is None or self.carrying.done()):
                    self.carrying = asyncio.create_task(self._carry_due())

    async def _carry_due(self) -> None:
        try:
            await asyncio.to_thread(self.journal.carry_due)
        except Exception as error:  # the notes stay, and are carried next time
            log.warning("action=sent_journal_carry_failed error=%s", error)

    async def settle(self) -> None:
        """Wait for a carry under way (before the journal is carried or closed)."""
        if self.carrying is not None:
            await self.carrying
            self.carrying = None

    def _commit(self, row_ids: list[int]) -> None:
        if self.journal is not None and self.journal.takes_marks():
            self.journal.note(row_ids, self.clock())
            if self.db.dialect == "sqlite":
                # Carried here, between the daemon's transactions: local and quick, it
                # was slower beside the sending (as on PostgreSQL) than here.
                self.journal.carry_due()
            return
        if self.connection is None:
            self.connection = self.db.engine.connect()
            if self.connection.dialect.name == "postgresql":
                # A mark is one UPDATE, atomic by itself: no BEGIN and COMMIT round trips.
                # Nor need it wait for the disk: only a crash of the database server could
                # lose it, and then the mail is sent twice, never lost.
                self.connection.execution_options(isolation_level="AUTOCOMMIT")
                self.connection.exec_driver_sql("SET synchronous_commit TO OFF")
                self.connection.commit()
        connection = self.connection
        try:
            self._mark(connection, row_ids)
        except Exception:
            self.close()
            raise

    def _mark(self, connection, row_ids: list[int]) -> None:
        with self.db.turn(), connection.execution_options(**{WRITE: True}).begin():
            mark_sent(connection, row_ids, self.clock())

    def close(self) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            try:  # the pool resets the isolation level itself
                if connection.dialect.name == "postgresql":
                    connection.rollback()
                    connection.exec_driver_sql("RESET synchronous_commit")
                    connection.commit()
            except Exception:  # a broken connection: the pool must not hand it out again
                connection.invalidate()
            finally:
                connection.close()
