"""Engines and transactions. ``with transaction(db) as tx:`` is the only way to write."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from ..errors import ConfigError, MailhelpError
from ..private import private_sqlite

log = logging.getLogger(__name__)

WRITE = "mailhelp_write"
TURN_TIMEOUT = 10.0  # seconds; as long as SQLite's own busy timeout
BUSY_TIMEOUT = 10.0  # seconds SQLite waits for the write lock; ?timeout=N in the URL


class DatabaseUnavailable(MailhelpError):
    """The database could not be reached or was locked: nothing is wrong with the
    work, and the same work later may well succeed."""


def temporary(error: BaseException) -> bool:
    """Whether ``error`` says the database is away or busy for now (locked, a lost or
    refused connection, no pooled connection free), not that the work is wrong."""
    if isinstance(error, DatabaseUnavailable | OperationalError | PoolTimeout):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Database:
    """An engine and its session factory, set up for the dialect at hand."""

    def __init__(self, url: str, pooled: bool = True) -> None:
        """``pooled=False``: every connection closed when put back (one that must hold
        none between its moments of work: a lingering ingest)."""
        self.url = url
        pool = {} if pooled else {"poolclass": NullPool}
        try:
            if url.startswith("sqlite"):
                self.engine = _sqlite_engine(url, **pool)
            else:
                self.engine = create_engine(url, pool_pre_ping=True, **pool)
        except (ArgumentError, ImportError) as error:
            raise ConfigError(f"database.url: {error}") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_turn: WriteTurn | None = None

    def turn(self):
        """Held around a write transaction: this process's turn to write (see WriteTurn)."""
        return self.write_turn.take() if self.write_turn is not None else nullcontext()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def schema_ready(self) -> bool:
        try:
            return inspect(self.engine).has_table("tickets")
        except OperationalError as error:
            raise DatabaseUnavailable(f"database: cannot connect: {error.orig}") from error
        except DBAPIError as error:  # e.g. SQLite's "file is not a database"
            raise MailhelpError(f"database: cannot read it: {error.orig}") from error

    def schema_revision(self) -> str | None:
        """The migration the database is at (read directly: importing Alembic is slow)."""
        try:
            with self.engine.connect() as connection:
                return connection.exec_driver_sql(
                    "SELECT version_num FROM alembic_version").scalar()
        except OperationalError:
            return None
        except DBAPIError:
            return None

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def transaction(db: Database) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with db.turn(), db.sessions() as session, session.begin():
        # Marks the connection as a writer: on SQLite it takes the write lock up front.
        session.connection(execution_options={WRITE: True})
        yield session


class WriteTurn:
    """Turns at SQLite's one write lock between the daemon and its sender process.

    SQLite admits one writer at a time; one that finds the lock taken polls for it,
    sleeping 1 to 100 ms between tries. The daemon, busy with a backlog, writes one
    transaction after another a millisecond apart and the sender, polling, almost never
    gets in: mail piled up until the daemon was done. So both take this lock around
    their writes, which wakes a waiter the moment it is free, and the daemon (the
    process that made it) lets a waiting sender go first. The lock only orders them;
    SQLite's stays the guard: a turn not had within TURN_TIMEOUT (the other process
    died holding it) is gone without, and the daemon makes a new one for a new sender.
    """

    def __init__(self, context) -> None:
        self.daemon = os.getpid()
        self.lock = context.Lock()
        self.waiting = context.Event()

    def try_take(self) -> bool:
        """The turn if it is free now (then ``release`` it), else False at once."""
        return self.lock.acquire(block=False)

    def release(self) -> None:
        self.lock.release()

    @contextmanager
    def take(self) -> Iterator[None]:
        if os.getpid() == self.daemon:
            # A sender is waiting: it has the lock as soon as its wait is over.
            deadline = time.monotonic() + 0.01
            while self.waiting.is_set() and time.monotonic() < deadline:
                time.sleep(0)
        else:
            self.waiting.set()
        try:
            had = self.lock.acquire(timeout=TURN_TIMEOUT)
        finally:
            if os.getpid() != self.daemon:
                self.waiting.clear()
        if not had:
            log.warning("action=write_turn_timeout pid=%s waited=%ss", os.getpid(),
                        TURN_TIMEOUT)
        try:
            yield
        finally:
            if had:
                self.lock.release()


MMAP_SIZE = 1 << 30  # bytes of the database file read through a memory map


def _sqlite_engine(url: str, **options) -> Engine:
    parsed = make_url(url)
    path = parsed.database or ""
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Before SQLite makes it (with the umask's 0644): its -wal and -shm files take
        # the database file's mode, so they are private too.
        private_sqlite(path)
    try:
        busy = round(float(parsed.query.get("timeout", BUSY_TIMEOUT)) * 1000)
    except (TypeError, ValueError):
        raise ConfigError(f"database.url: timeout={parsed.query['timeout']!r} is not a "
                          "number of seconds") from None
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        # Take BEGIN away from sqlite3 so that ours (IMMEDIATE) is the only one.
        dbapi_connection.isolation_level = None
        # mmap_size: reads map the file instead of copying each page through read()
        # (a year's report on 100,000 tickets: 0.49 -> 0.30 s in its two queries).
        for pragma in ("journal_mode=WAL", f"busy_timeout={busy}", "foreign_keys=ON",
                       "synchronous=NORMAL", f"mmap_size={MMAP_SIZE}"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        # A deferred BEGIN loses updates or fails with "database is locked" when the
        # daemon and a CLI command write at once; IMMEDIATE takes the lock up front.
        # Reads stay deferred, so they never queue behind a writer (WAL lets them run).
        write = connection.get_execution_options().get(WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
