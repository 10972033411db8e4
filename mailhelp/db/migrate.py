"""Create or upgrade the schema with Alembic, from code (no alembic.ini needed).

An upgrade is one transaction, on SQLite as on PostgreSQL: a migration that fails
leaves the database at the revision it was. On SQLite, foreign keys are off while it
runs: batch mode rebuilds a table by copy, drop and rename, and dropping a table that
other rows refer to fails while they are on (``FOREIGN KEY constraint failed [DROP
TABLE raw_messages]`` in 0005). ``PRAGMA foreign_key_check`` after each migration
stands in for them; a row it finds fails the upgrade.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from ..errors import MailhelpError
from .session import Database

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


class MigrationFailed(MailhelpError):
    """A migration raised, or left rows whose foreign keys lead nowhere. The upgrade was
    one transaction and is rolled back: the database is at the revision it was."""

    def __init__(self, revision: str, reason: str) -> None:
        super().__init__(f"migration {revision} failed: {reason}")
        self.revision = revision
        self.reason = reason


class Progress:
    """The migrations an upgrade is to run, and those it has run: which one failed."""

    def __init__(self, pending: list[str]) -> None:
        self.pending = pending
        self.done: list[str] = []

    @property
    def running(self) -> str:
        if len(self.done) < len(self.pending):
            return self.pending[len(self.done)]
        return self.pending[-1] if self.pending else "?"


def alembic_config(db: Database) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def upgrade(db: Database) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; return (before, after).

    Raises MigrationFailed, naming the migration, with the database as it was.
    """
    config = alembic_config(db)
    before = current_revision(db)
    progress = Progress(pending_revisions(db, before))
    config.attributes["progress"] = progress
    try:
        command.upgrade(config, "head")
    except MigrationFailed:
        raise
    except Exception as error:
        # The user sees one line; -v shows where it came from.
        log.debug("action=migration_failed revision=%s", progress.running, exc_info=True)
        if not progress.pending:  # none to run: it failed to look (locked, say)
            raise MailhelpError(f"database: {_reason(error)}") from error
        raise MigrationFailed(progress.running, _reason(error)) from error
    return before, head_revision(db)


def init_schema(db: Database, say: Callable[[str], None] = print) -> None:
    """What ``mailhelp init`` does to the database: a SQLite file that needs migrating is
    first copied beside itself (``mailhelp.db.bak-0004``), then upgraded; both are said."""
    before, head = current_revision(db), head_revision(db)
    pending_revisions(db, before)  # one this mailhelp knows
    copy = None
    path = sqlite_path(db)
    if before is not None and before != head and path is not None:
        copy = backup_sqlite(path, before)
        say(f"database: copied {path} to {copy} before migrating from {before} to {head}")
    try:
        upgrade(db)
    except MigrationFailed as error:
        kept = f" (backup: {copy})" if copy else ""
        raise MailhelpError(f"database: {error}; the database is as it was{kept}") from error
    say(f"database: schema {head}" + (f" (upgraded from {before})" if before != head
                                      else " (already current)"))


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(db: Database) -> str:
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head() or ""


def pending_revisions(db: Database, before: str | None) -> list[str]:
    """The migrations from ``before`` to the newest, in the order they run."""
    script = ScriptDirectory.from_config(alembic_config(db))
    try:
        found = list(script.iterate_revisions("heads", before or "base"))
    except (CommandError, RevisionError):
        raise MailhelpError(f"database: schema {before} is not one this mailhelp knows (its "
                            f"newest is {script.get_current_head()}): a newer mailhelp made "
                            "it") from None
    return [revision.revision for revision in reversed(found)]


@contextmanager
def foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite's foreign keys off on this connection while migrations run, then on again.

    The pragma is a no-op inside a transaction, so it goes to the driver's connection
    (sqlite3 has no BEGIN of its own here: session.py) before the migration's BEGIN
    and after its COMMIT or ROLLBACK.
    """
    driver = connection.connection.driver_connection
    if connection.in_transaction() or driver.in_transaction:
        raise RuntimeError("foreign_keys_off: the connection is inside a transaction")
    driver.execute("PRAGMA foreign_keys=OFF")
    if driver.execute("PRAGMA foreign_keys").fetchone()[0] != 0:
        raise MailhelpError("database: SQLite would not switch foreign keys off to migrate")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")
        if driver.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
            # Still inside a transaction somehow: the pool must never hand this one out.
            connection.invalidate()


def check_foreign_keys(connection: Connection, revision: str, *, before: bool = False) -> None:
    """Raise MigrationFailed if a row refers to a row that is not there (SQLite)."""
    found = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if not found:
        return
    table, rowid, parent, _ = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    when = "before migrating, " if before else ""
    raise MigrationFailed(revision, f"{when}{table} row {rowid} refers to a {parent} row "
                                    f"that is not there{more}")


def sqlite_path(db: Database) -> str | None:
    """The file of a SQLite database; None for another database or one in memory."""
    if db.dialect != "sqlite":
        return None
    path = make_url(db.url).database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def backup_sqlite(path: str, revision: str) -> str:
    """Copy the database to ``<path>.bak-<revision>`` (mode 0600) with SQLite's online
    backup, which includes what is still in the -wal file. An earlier copy of that name
    is kept: the new one is ``.bak-<revision>.2`` (.3, ...)."""
    target, n = f"{path}.bak-{revision}", 1
    while True:
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                 0o600)
            break
        except FileExistsError:
            n += 1
            target = f"{path}.bak-{revision}.{n}"
        except OSError as error:
            raise MailhelpError(f"database: cannot make a copy at {target} before migrating: "
                                f"{error.strerror}") from None
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask
    finally:
        os.close(descriptor)
    source = sqlite3.connect(path)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    except sqlite3.Error as error:
        copy.close()
        os.unlink(target)
        raise MailhelpError(f"database: cannot copy it to {target} before migrating: "
                            f"{error}") from None
    finally:
        copy.close()
        source.close()
    return target


def _reason(error: BaseException) -> str:
    """The first line of what the driver said (PostgreSQL's DETAIL lines follow it)."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__
