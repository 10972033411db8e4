"""Upgrades keep every row: from each revision, with a desk's rows in it, to the newest.

The rows (tests/upgrade_data.py) are written into the tables as each revision has them,
then ``upgrade`` (what ``mailhelp init`` runs) brings the schema to head. A database of
6f98814 is one at 0004: its migrations 0001-0004 are today's (test_the_0004_of_6f98814).
Both databases: SQLite, and PostgreSQL with MAILHELP_TEST_DATABASE.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import textwrap

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mailhelp.db import migrate
from mailhelp.db.migrate import MIGRATIONS, alembic_config, backup_sqlite, init_schema, upgrade
from mailhelp.db.models import Base, RawMessage, RawMessageBody, Ticket
from mailhelp.db.session import Database, transaction
from mailhelp.errors import MailhelpError
from mailhelp.search import include_name
from tests.conftest import PG_URL
from tests.helpers import ROOT, mailhelp, write_config
from tests.upgrade_data import RAW, ROWS, Ref, changes, dangling, fill, snapshot, uncovered

REVISIONS = [script.revision for script in
             reversed(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions()))]
HEAD = REVISIONS[-1]
STATUSES = {"queued", "sent", "failed", "suppressed", "bounced"}


def desk_at(database_url: str, revision: str) -> tuple[Database, dict[Ref, object]]:
    """A database at ``revision`` with the desk's rows in it."""
    db = Database(database_url)
    command.upgrade(alembic_config(db), revision)
    with db.engine.begin() as connection:
        keys = fill(connection)
    return db, keys


def rows(db: Database):
    with db.engine.connect() as connection:
        return snapshot(connection)


@pytest.mark.parametrize("revision", REVISIONS)
def test_every_row_survives_the_upgrade_from(revision, database_url):
    db, keys = desk_at(database_url, revision)
    before = rows(db)
    assert uncovered(before) == [], "give these a value in tests/upgrade_data.py ROWS"

    assert upgrade(db) == (revision, HEAD)

    after = rows(db)
    assert changes(before, after) == []
    with db.engine.connect() as connection:
        assert dangling(connection) == []
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        assert compare_metadata(context, Base.metadata) == []  # 0010's search aside
    # The bytes, wherever this revision kept them, are the bytes that came in.
    bodies = {row["raw_id"]: row["raw"] for row in after["raw_message_bodies"].values()}
    assert bodies == {keys[Ref("raw_messages", name)]: raw for name, raw in RAW.items()}
    assert {row["status"] for row in after["outbox"].values()} == STATUSES
    assert [row["value"] for row in after["keys"].values() if row["name"] == "signing"]
    # Today's code reads the old rows and writes new ones beside them.
    with transaction(db) as tx:
        ticket = tx.get(Ticket, keys[Ref("tickets", "projector")])
        assert ticket.requester.name == "Jörg Weiß"
        assert [p.person.address for p in ticket.participants] == ["teacher2@school.test"]
        assert [m.kind for m in ticket.messages] == ["request", "ack", "staff_reply", "reply"]
        assert [a.filename for a in ticket.messages[0].attachments] == ["no signal.png"]
        raw = RawMessage(source="ingest", message_id="<new@test>", sha256="", size=1,
                         state="new", received_at=ticket.created_at)
        tx.add(raw)
        tx.flush()
        tx.add(RawMessageBody(raw_id=raw.id, raw=b"x"))
    assert raw.id == max(row["id"] for row in before["raw_messages"].values()) + 1
    db.dispose()


def test_a_downgrade_keeps_the_rows_and_puts_the_bytes_back(database_url):
    db, keys = desk_at(database_url, HEAD)
    before = rows(db)
    command.downgrade(alembic_config(db), "0004")  # through 0007, which rebuilds tickets
    after = rows(db)
    db.dispose()
    assert {name: len(r) for name, r in after.items()} == {
        name: len(r) for name, r in before.items() if name in after}
    assert {row["id"]: row["raw"] for row in after["raw_messages"].values()} == {
        keys[Ref("raw_messages", name)]: raw for name, raw in RAW.items()}


FAILING = '''
"""A migration that leaves a row whose ticket is not there."""

from alembic import op

revision = "9999"
down_revision = "{head}"


def upgrade() -> None:
    op.execute("INSERT INTO participants (ticket_id, person_id, added_at) "
               "VALUES (424242, 424242, '2026-12-01 00:00:00')")
'''


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch, database_url):
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "9999_fails.py").write_text(FAILING.format(head=HEAD))
    monkeypatch.setattr(migrate, "MIGRATIONS", migrations)
    db, _ = desk_at(database_url, "0004")
    before = rows(db)

    said: list[str] = []
    with pytest.raises(MailhelpError) as failed:
        init_schema(db, say=said.append)  # 0005 to HEAD run, then 9999 fails

    # One transaction: what 0005 to HEAD did is undone with it.
    assert db.schema_revision() == "0004"
    assert rows(db) == before
    message = str(failed.value)
    assert message.startswith("database: migration 9999 failed: ")
    assert "\n" not in message and message.endswith(
        f"the database is as it was (backup: {db_path(db)}.bak-0004)"
        if db.dialect == "sqlite" else "the database is as it was")
    assert "participants" in message
    db.dispose()


def db_path(db: Database) -> str:
    return db.url.removeprefix("sqlite:///")


def sqlite_only() -> None:
    if PG_URL:
        pytest.skip("SQLite's own (the SQLite pass runs it)")


def test_init_upgrades_a_populated_sqlite_file_of_6f98814(tmp_path):
    sqlite_only()
    url = f"sqlite:///{tmp_path / 'mailhelp.db'}"
    db, keys = desk_at(url, "0004")
    before = rows(db)
    db.dispose()
    config = write_config(tmp_path, url)

    done = mailhelp(config, "init")

    assert done.returncode == 0, done.stderr.decode()
    backup = tmp_path / "mailhelp.db.bak-0004"
    assert done.stdout.decode().splitlines() == [
        f"database: copied {tmp_path / 'mailhelp.db'} to {backup} before migrating from 0004 "
        f"to {HEAD}", f"database: schema {HEAD} (upgraded from 0004)"]
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    kept = Database(f"sqlite:///{backup}")
    assert kept.schema_revision() == "0004" and rows(kept) == before
    kept.dispose()
    db = Database(url)
    assert changes(before, rows(db)) == []
    db.dispose()
    listed = json.loads(mailhelp(config, "tickets", "list", "--json").stdout)
    assert sorted(t["id"] for t in listed) == sorted(
        v for k, v in keys.items() if k.table == "tickets")
    # A reply to the old ticket joins it.
    reply = textwrap.dedent("""\
        From: =?utf-8?q?J=C3=B6rg_Wei=C3=9F?= <teacher1@school.test>
        To: help@school.test
        Subject: Re: Beamer
        Message-ID: <after-upgrade@mail.school.test>
        In-Reply-To: <staff@school.test>
        References: <request@school.test> <staff@school.test>
        Date: Fri, 4 Dec 2026 10:00:00 +0100

        Leider wieder kaputt.
        """).encode()
    done = mailhelp(config, "ingest", stdin=reply)
    assert done.returncode == 0, done.stderr.decode()
    shown = json.loads(mailhelp(config, "tickets", "show", str(keys[Ref("tickets", "projector")]),
                                "--json").stdout)
    assert "<after-upgrade@mail.school.test>" in [m["message_id"] for m in shown["messages"]]
    again = mailhelp(config, "init").stdout.decode()
    assert again == f"database: schema {HEAD} (already current)\n"


def test_init_that_fails_says_one_line_and_keeps_the_file_as_it_was(tmp_path):
    sqlite_only()
    url = f"sqlite:///{tmp_path / 'mailhelp.db'}"
    db, _ = desk_at(url, "0004")
    db.dispose()
    connection = sqlite3.connect(tmp_path / "mailhelp.db")  # foreign keys off
    connection.execute("UPDATE messages SET ticket_id = 4242 WHERE message_id = "
                       "'<thanks@school.test>'")
    connection.commit()
    connection.close()
    before = rows(db)
    config = write_config(tmp_path, url)

    done = mailhelp(config, "init")

    assert done.returncode == 1
    backup = tmp_path / "mailhelp.db.bak-0004"
    assert done.stderr.decode().splitlines() == [
        "mailhelp: database: migration 0005 failed: before migrating, messages row 4 refers "
        f"to a tickets row that is not there; the database is as it was (backup: {backup})"]
    assert db.schema_revision() == "0004" and rows(db) == before
    again = mailhelp(config, "init")  # the first copy is kept, the second beside it
    assert again.returncode == 1 and (tmp_path / "mailhelp.db.bak-0004.2").exists()
    db.dispose()


def test_the_copy_has_what_is_still_in_the_wal_and_is_private(tmp_path):
    sqlite_only()
    path = tmp_path / "mailhelp.db"
    db = Database(f"sqlite:///{path}")
    command.upgrade(alembic_config(db), "0004")
    with db.engine.connect() as connection:  # open throughout: nothing checkpoints the -wal
        connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        fill(connection)
        connection.commit()
        shutil.copyfile(path, tmp_path / "alone.db")  # the file without its -wal
        copy = backup_sqlite(str(path), "0004")

        assert copy == f"{path}.bak-0004"
        assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
        written = sum(table == "tickets" for table, _, _ in ROWS)
        assert tickets(tmp_path / "alone.db") == 0 and tickets(copy) == written
    db.dispose()


def tickets(path) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT count(*) FROM tickets").fetchone()[0]
    except sqlite3.OperationalError:  # no such table: made in the -wal too
        return 0
    finally:
        connection.close()


def test_the_0004_of_6f98814_is_todays():
    """A database of 6f98814 is one today's migrations build at 0004, so the tests above
    that start at 0004 start from it."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in sorted((MIGRATIONS / "versions").glob("000[1-4]_*.py")):
        old = subprocess.run(["git", "show", f"6f98814:{path.relative_to(ROOT)}"], cwd=ROOT,
                             capture_output=True)
        if old.returncode:
            pytest.skip(f"6f98814 not in this clone: {old.stderr.decode().strip()}")
        assert old.stdout == path.read_bytes(), path.name


def test_a_schema_from_a_newer_mailhelp_is_one_line_and_left_alone(database_url):
    db, _ = desk_at(database_url, HEAD)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(MailhelpError, match=f"^database: schema 0999 is not one this mailhelp "
                                            f"knows \\(its newest is {HEAD}\\)"):
        init_schema(db, say=pytest.fail)
    assert db.schema_revision() == "0999"
    db.dispose()
