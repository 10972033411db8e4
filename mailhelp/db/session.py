"""Engines and transactions. ``with transaction(db) as tx:`` is the only way to write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError, MailhelpError

WRITE = "mailhelp_write"


class Database:
    """An engine and its session factory, set up for the dialect at hand."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite"):
                self.engine = _sqlite_engine(url)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, ImportError) as error:
            raise ConfigError(f"database.url: {error}") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def schema_ready(self) -> bool:
        try:
            return inspect(self.engine).has_table("tickets")
        except OperationalError as error:
            raise MailhelpError(f"database: cannot connect: {error.orig}") from error

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
    with db.sessions() as session, session.begin():
        # Marks the connection as a writer: on SQLite it takes the write lock up front.
        session.connection(execution_options={WRITE: True})
        yield session


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        # Take BEGIN away from sqlite3 so that ours (IMMEDIATE) is the only one.
        dbapi_connection.isolation_level = None
        for pragma in ("journal_mode=WAL", "busy_timeout=10000", "foreign_keys=ON",
                       "synchronous=NORMAL"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        # A deferred BEGIN loses updates or fails with "database is locked" when the
        # daemon and a CLI command write at once; IMMEDIATE takes the lock up front.
        # Reads stay deferred, so they never queue behind a writer (WAL lets them run).
        write = connection.get_execution_options().get(WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
