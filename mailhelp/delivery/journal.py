"""The journal of sent mail: a small SQLite file of the senders' own in which a mail is
noted sent the moment the server took it, carried into the outbox later and in bulk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from datetime import datetime

from ..db.session import WRITE, Database
from ..errors import ConfigError
from ..private import private_sqlite
from .outbox_sql import carry_notes

log = logging.getLogger(__name__)


class SentJournal:
    """Mails noted sent the moment the server took them, where a mark in the outbox
    itself costs too much: a small SQLite file of the sender's own.

    On SQLite (``<file>-sent``, beside the database) a mark would wait: SQLite admits
    one writer at a time, and during a backlog the daemon is writing nearly all the
    time; a note here waits for no one. There the journal is used while the daemon's
    sender runs beside it (a write turn is set), and the notes are carried into the
    outbox when the write lock is free.

    On PostgreSQL (``outbox-sent`` in ``[storage] attachments_dir``, the one directory
    every process of a desk must share already) a mark is an UPDATE of a wide row with
    six indexes and a round trip, which the server pays for during a backlog, when its
    CPU is wanted most; notes are carried CARRY_AFTER at a time, in one transaction.
    (benchmarks/RESULTS.md has the figures that keep this journal.)

    Notes are also carried when the outbox is empty and before anything is sent (notes
    a crash left behind included); until then the outbox shows those mails queued, and
    every sender leaves them be (it asks the journal before it sends).
    """

    CARRY_AFTER = 50  # notes, carried together

    def __init__(self, db: Database, path: str, key: str) -> None:
        self.db = db
        self.path = path
        self.key = key  # the config key that decides where the journal is
        self.lock = threading.Lock()  # the journal's connection
        self.carrying = threading.Lock()  # one carry at a time
        self.count = 0
        self.connection: sqlite3.Connection | None = None
        self.open()

    def open(self) -> None:
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            private_sqlite(self.path)  # what was sent to whom: this user's alone
            self.connection = sqlite3.connect(self.path, isolation_level=None,
                                              check_same_thread=False, timeout=10)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
                self.connection.execute(f"PRAGMA {pragma}")
            self.connection.execute("CREATE TABLE IF NOT EXISTS sent "
                                    "(outbox_id INTEGER PRIMARY KEY, sent_at TEXT NOT NULL)")
            self.count = self.connection.execute("SELECT count(*) FROM sent").fetchone()[0]
        except (OSError, sqlite3.Error) as error:
            # The caller decides what then: SQLite's stops mailhelp, PostgreSQL's is done
            # without (for_database).
            raise ConfigError(f"{self.key}: cannot open the journal of sent mail "
                              f"{self.path}: {error}") from None

    @classmethod
    def for_database(cls, db: Database, directory: str = "") -> SentJournal | None:
        """The journal for this database; ``directory``: [storage] attachments_dir."""
        if db.dialect == "sqlite":
            path = db.engine.url.database
            return cls(db, f"{path}-sent", "database.url") \
                if path and path != ":memory:" else None
        if not directory:
            return None
        try:
            return cls(db, os.path.join(directory, "outbox-sent"), "storage.attachments_dir")
        except ConfigError as error:
            # Mail still goes out, marked in the database as it was before the journal
            # (slower); only a sender that can write there beside this one could then
            # send a mail twice. `mailhelp check` warns about the folder.
            log.warning("action=sent_journal_unavailable error=%s (each mail is marked "
                        "sent in the database instead)", error)
            return None

    def takes_marks(self) -> bool:
        """On SQLite only while a daemon writes beside the sender; otherwise always."""
        return self.db.dialect != "sqlite" or self.db.write_turn is not None

    def note(self, row_ids: list[int], sent_at: datetime) -> None:
        """These mails went out (the server took them); ``carry_due`` carries them later."""
        with self.lock, self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?)",
                                        [(row_id, sent_at.isoformat()) for row_id in row_ids])
            self.count += len(row_ids)

    def carry_due(self) -> None:
        """Carry the notes if enough of them wait and the outbox can be written now; a
        carry already under way, or SQLite's write lock in the daemon's hands, is not
        waited for (the notes are carried next time). Notes are taken only while a
        write turn is set on SQLite (``takes_marks``)."""
        if self.count < self.CARRY_AFTER:
            return
        if self.db.dialect != "sqlite":
            self._carry(wait=False)  # no one write lock to wait for
        elif self.db.write_turn.try_take():
            try:
                self._carry(wait=False)
            finally:
                self.db.write_turn.release()

    def noted(self, row_ids: list[int]) -> set[int]:
        with self.lock:
            found = set()
            for start in range(0, len(row_ids), 500):
                chunk = row_ids[start:start + 500]
                found.update(row[0] for row in self.connection.execute(
                    f"SELECT outbox_id FROM sent WHERE outbox_id IN ({','.join('?' * len(chunk))})",
                    chunk))
            return found

    def carry(self) -> None:
        """The notes into the outbox (waiting for the write turn, if there are any)."""
        if not self.count:
            return
        with self.db.turn():
            self._carry()

    def _carry(self, wait: bool = True) -> None:
        if not self.carrying.acquire(blocking=wait):
            return
        try:
            with self.lock:
                notes = self.connection.execute("SELECT outbox_id, sent_at FROM sent").fetchall()
            if not notes:
                # Another sender of the desk carried them (its count is this one's no
                # more): without this, a flush that finds nothing due carried forever.
                self.count = 0
                return
            with self.db.engine.connect() as connection, \
                    connection.execution_options(**{WRITE: True}).begin():
                carry_notes(connection, [(row_id, datetime.fromisoformat(at))
                                         for row_id, at in notes])
            with self.lock, self.connection:
                self.connection.execute("BEGIN IMMEDIATE")
                self.connection.executemany("DELETE FROM sent WHERE outbox_id = ?",
                                            [(row_id,) for row_id, _ in notes])
                self.count = self.connection.execute("SELECT count(*) FROM sent").fetchone()[0]
        finally:
            self.carrying.release()

    def close(self) -> None:
        """Closed until the sender's next flush (a sender is closed between uses)."""
        with self.lock:
            self.connection.close()
            self.connection = None
