"""Finding 7: the database, its WAL and SHM, the journal of sent mail and the log were
0644 under umask 022, and another user of the server copied every message from them.
Each is made 0600 now, whatever the umask, and one found open to others is narrowed."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Ticket
from mailhelp.db.session import Database
from mailhelp.delivery.journal import SentJournal
from tests.helpers import ROOT, mailhelp, write_config


@pytest.fixture(autouse=True)
def usual_umask():
    """The umask most systems give (files 0644), in this process and those it starts."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_sqlite_database_and_its_wal_and_shm_are_private(tmp_path):
    path = tmp_path / "mailhelp.db"
    db = Database(f"sqlite:///{path}")
    try:
        upgrade(db)
        with db.sessions() as session:  # a connection that stays open keeps -wal and -shm
            session.scalar(select(Ticket.id))
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}
    finally:
        db.dispose()


def test_an_existing_database_open_to_others_is_narrowed_with_a_warning(tmp_path, caplog):
    path = str(tmp_path / "old.db")
    # As an older mailhelp left it: 0644, with its -wal and -shm (a connection holds them).
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    old.commit()
    try:
        assert mode(path) == mode(f"{path}-wal") == mode(f"{path}-shm") == 0o644
        with caplog.at_level(logging.WARNING, logger="mailhelp.private"):
            db = Database(f"sqlite:///{path}")
        db.dispose()
        assert mode(path) == mode(f"{path}-wal") == mode(f"{path}-shm") == 0o600
        assert "action=private_file_narrowed" in caplog.text and path in caplog.text
    finally:
        old.close()


def test_the_journal_of_sent_mail_is_private(tmp_path, database_url):
    # On SQLite "<database>-sent"; on PostgreSQL "outbox-sent" in the attachments folder.
    db = Database(database_url)
    try:
        upgrade(db)
        journal = SentJournal.for_database(db, str(tmp_path / "attachments"))
        journal.note([1, 2], datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
        files = [journal.path, f"{journal.path}-wal", f"{journal.path}-shm"]
        assert {f: mode(f) for f in files} == {f: 0o600 for f in files}
        journal.connection.close()
    finally:
        db.dispose()


def test_the_log_file_is_private_and_an_open_one_is_narrowed(tmp_path, database_url):
    log_file = tmp_path / "mailhelp.log"
    config = write_config(tmp_path, database_url, extra=f"""
        [log]
        file = "{log_file}"
        """)
    done = mailhelp(config, "init")
    assert done.returncode == 0, done.stderr.decode()
    assert mode(log_file) == 0o600
    log_file.chmod(0o644)
    assert mailhelp(config, "init").returncode == 0
    assert mode(log_file) == 0o600
    assert "action=private_file_narrowed" in log_file.read_text()


def test_a_log_file_that_cannot_be_written_is_one_line_naming_the_key(tmp_path, database_url):
    config = write_config(tmp_path, database_url, extra=f"""
        [log]
        file = "{tmp_path / 'no-such-folder' / 'mailhelp.log'}"
        """)
    done = mailhelp(config, "init")
    assert done.returncode == 2
    assert done.stderr.decode().startswith("mailhelp: log.file: cannot write")
    assert b"Traceback" not in done.stderr


def test_the_systemd_unit_sets_a_private_umask():
    unit = (ROOT / "deploy" / "mailhelp.service").read_text()
    assert "\nUMask=0077\n" in unit
