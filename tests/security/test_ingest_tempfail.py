"""Finding 3's tail: a teacher's ``ingest`` met a locked database and exited 1, which an
MTA's pipe takes for a permanent failure: the teacher's mail bounced. A database that is
locked, refuses the connection or loses it is a temporary failure: exit status 75
(EX_TEMPFAIL), one line naming the message, and the MTA delivers it again later."""

from __future__ import annotations

import json
import socket
import sqlite3
from urllib.parse import quote

import pytest

from tests.conftest import PG_URL
from tests.helpers import mailhelp, write_config

EX_TEMPFAIL = 75
REQUEST = (b"From: Jane Teacher <teacher1@school.test>\nTo: help@school.test\n"
           b"Subject: Projector in room 12\nMessage-ID: <locked-1@school.test>\n"
           b"Date: Mon, 23 Nov 2026 08:00:00 +0000\n\nThe projector does not turn on.\n")


def assert_tempfail(done, reason: bytes) -> None:
    assert done.returncode == EX_TEMPFAIL, done.stderr.decode()
    assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
    assert b"<locked-1@school.test>" in done.stderr and reason in done.stderr
    assert b"the mail server will try again" in done.stderr


def requesters(config) -> list[str]:
    listed = mailhelp(config, "tickets", "list", "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    return [t["requester"] for t in json.loads(listed.stdout)]


def test_a_locked_sqlite_database_is_a_temporary_failure(tmp_path):
    database = tmp_path / "mailhelp.db"
    # timeout: how long SQLite waits for the write lock (10 s unless the URL says).
    config = write_config(tmp_path, f"sqlite:///{database}?timeout=0.3")
    assert mailhelp(config, "init").returncode == 0
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, never ending
    try:
        assert_tempfail(mailhelp(config, "ingest", stdin=REQUEST), b"database is locked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Delivered again once the lock is gone: taken, once.
    again = mailhelp(config, "ingest", stdin=REQUEST)
    assert again.returncode == 0, again.stderr.decode()
    assert requesters(config) == ["teacher1@school.test"]


def test_a_postgresql_server_that_refuses_the_connection_is_a_temporary_failure(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed when the block ends: nobody listens there
    config = write_config(tmp_path, f"postgresql+psycopg://mailhelp@127.0.0.1:{port}/help")
    assert_tempfail(mailhelp(config, "ingest", stdin=REQUEST), b"cannot connect")


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (MAILHELP_TEST_DATABASE)")
def test_a_locked_postgresql_table_is_a_temporary_failure(tmp_path, database_url):
    import psycopg

    waits = f"{database_url}{quote(' -clock_timeout=300', safe='')}"  # after options=...
    assert "options=" in database_url
    config = write_config(tmp_path, waits)
    assert mailhelp(config, "init").returncode == 0
    schema = database_url.rsplit("%3D", 1)[1]
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as holder:
        holder.execute(f"LOCK TABLE {schema}.raw_messages IN ACCESS EXCLUSIVE MODE")
        assert_tempfail(mailhelp(config, "ingest", stdin=REQUEST), b"lock timeout")
    again = mailhelp(config, "ingest", stdin=REQUEST)
    assert again.returncode == 0, again.stderr.decode()
    assert requesters(config) == ["teacher1@school.test"]
