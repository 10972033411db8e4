"""The pieces of ``mailhelp tickets``: filters (alone and combined), --since, the
terminal table and the piped form, CSV that parses back, the command lines ``tickets
set`` makes, and files written out of the store."""

from __future__ import annotations

import argparse
import csv
import io
import os
import stat
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from mailhelp.cli_tickets import (
    COLUMNS,
    EXPORT_COLUMNS,
    export_csv,
    print_tabbed,
    print_table,
    write_csv,
)
from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Attachment, Message, Person, Ticket
from mailhelp.db.session import Database, transaction
from mailhelp.db.storage import AttachmentStore
from mailhelp.errors import MailhelpError, UsageError
from mailhelp.ticket_files import files_of, write_out
from mailhelp.ticket_filters import Filters, listing_query, since_instant
from mailhelp.ticket_set import command_lines

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)  # Monday 14:00 in Chicago
CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture(scope="module")
def db(module_database_url):
    """One desk of six tickets for the read-only tests."""
    database = Database(module_database_url)
    upgrade(database)
    with transaction(database) as tx:
        fill(tx)
    yield database
    database.dispose()


def fill(tx: Session) -> None:
    people = {name: Person(address=f"{name}@school.test", name=name.title(), created_at=NOW)
              for name in ("ann", "bob", "tech1", "tech2")}
    tx.add_all(people.values())
    tx.flush()
    rows = [  # subject, status, requester, assignee, school, category, days ago, body
        ("Projector flickers", "new", "ann", None, "Lincoln", "Projectors", 1, "zebra lines"),
        ("Printer jam", "open", "ann", "tech1", "Lincoln", "Printers", 3, "tray 2"),
        ("Printer\ttoner, \"empty\"", "pending", "bob", "tech1", "Adams", "Printers", 10,
         "toner low"),
        ("Grades login", "resolved", "bob", "tech2", "Adams", "", 40, "password reset"),
        ("Wifi in gym", "open", "bob", None, "Lincoln", "Network", 2, "no signal in gym"),
        ("Laptop ▒ cracked screen — urgent " + "x" * 80, "new", "ann", "tech2", "Lincoln",
         "", 0.5, "dropped it"),
    ]
    for n, (subject, status, requester, assignee, school, category, ago, body) in \
            enumerate(rows, 1):
        when = NOW - timedelta(days=ago)
        ticket = Ticket(id=n, subject=subject, status=status, requester_id=people[requester].id,
                        assignee_id=people[assignee].id if assignee else None, school=school,
                        category=category, created_at=when, updated_at=when + timedelta(hours=1))
        tx.add(ticket)
        tx.flush()
        tx.add(Message(ticket_id=n, direction="in", kind="request", message_id=f"<{n}@s.test>",
                       from_address=people[requester].address, subject=subject, text=body,
                       created_at=when))
    # Bob's "Printer jam again", merged into #2 (desk/merge.py): its request moved there,
    # and it is closed. Listed, it would be the same request twice.
    when = NOW - timedelta(days=2)
    tx.add(Ticket(id=7, subject="Printer jam again", status="closed", merged_into_id=2,
                  requester_id=people["bob"].id, school="Lincoln", category="Printers",
                  created_at=when, updated_at=when + timedelta(hours=1)))
    tx.flush()
    tx.add(Message(ticket_id=2, direction="in", kind="request", message_id="<7@s.test>",
                   from_address=people["bob"].address, subject="Printer jam again",
                   text="crumpled paper in tray 2", created_at=when))


def ids(db: Database, **given) -> list[int]:
    with db.sessions() as session:
        found = [t.id for t in session.scalars(listing_query(Filters(**given), db.dialect))]
        rows = session.execute(listing_query(Filters(**given), db.dialect, columns=True))
        assert [row.id for row in rows] == found  # the listing's rows are the same tickets
    return found


@pytest.mark.parametrize(("given", "expected"), [
    ({}, [1, 2, 3, 4, 5, 6]),
    ({"statuses": ("open",)}, [2, 5]),
    ({"statuses": ("open", "new")}, [1, 2, 5, 6]),
    ({"assignee": "tech1@school.test"}, [2, 3]),
    ({"assignee": "none"}, [1, 5]),
    ({"requester": "bob@school.test"}, [3, 4, 5]),
    ({"school": "Adams"}, [3, 4]),
    ({"category": "Printers"}, [2, 3]),
    ({"search": "toner"}, [3]),
    ({"since": NOW - timedelta(days=5)}, [1, 2, 5, 6]),
    ({"limit": 2}, [5, 6]),
    # Combined: each narrows the others.
    ({"statuses": ("open", "pending"), "school": "Lincoln"}, [2, 5]),
    ({"statuses": ("open", "pending", "new"), "assignee": "tech1@school.test",
      "category": "Printers", "since": NOW - timedelta(days=5)}, [2]),
    ({"requester": "bob@school.test", "search": "gym signal", "statuses": ("open",)}, [5]),
    ({"requester": "ann@school.test", "search": "toner"}, []),
    ({"school": "Lincoln", "limit": 2, "statuses": ("open", "new")}, [5, 6]),
    # A merged ticket (#7, into #2) only under its pseudo-status, never as closed; its
    # words are found on the survivor, where its request went.
    ({"statuses": ("merged",)}, [7]),
    ({"statuses": ("closed",)}, []),
    ({"statuses": ("merged", "new")}, [1, 6, 7]),
    ({"statuses": ("merged",), "limit": 1}, [7]),
    ({"statuses": ("merged",), "requester": "bob@school.test", "school": "Lincoln"}, [7]),
    ({"search": "crumpled"}, [2]),
    ({"search": "again"}, [2]),
    ({"search": "again", "statuses": ("merged",)}, [7]),
    ({"search": "crumpled", "statuses": ("merged",)}, []),
])
def test_filters_alone_and_combined(db, given, expected):
    assert ids(db, **given) == expected


def test_since_takes_a_duration_a_date_on_the_desks_clock_or_an_instant():
    assert since_instant("30d", NOW, CHICAGO) == NOW - timedelta(days=30)
    assert since_instant("2026-11-01", NOW, CHICAGO) == datetime(2026, 11, 1, 5, 0, tzinfo=UTC)
    assert since_instant("2026-11-01T08:00", NOW, CHICAGO) == datetime(
        2026, 11, 1, 14, 0, tzinfo=UTC)  # CST again that day
    for bad in ("yesterday", "2026-13-01", "30x"):
        with pytest.raises(UsageError, match="--since"):
            since_instant(bad, NOW, CHICAGO)


def test_limit_below_one_is_bad_usage():
    args = argparse.Namespace(status=None, assignee=None, requester=None, school=None,
                              category=None, search=None, since=None, limit=0)
    with pytest.raises(UsageError, match="--limit"):
        Filters.from_args(args, NOW, CHICAGO)


def tickets(db: Database, session) -> list:
    return list(session.execute(listing_query(Filters(), db.dialect, columns=True)))


@pytest.mark.parametrize("width", [150, 120, 90])
def test_the_terminal_table_is_aligned_under_a_header_and_cut_to_the_width(db, width):
    out = io.StringIO()
    with db.sessions() as session:
        assert print_table(tickets(db, session), CHICAGO, out, width) == 6
    lines = out.getvalue().splitlines()
    assert len(lines) == 7 and all(len(line) <= width for line in lines)
    assert lines[0].split()[:5] == list(COLUMNS)[:5]
    assert "…" in lines[-1]  # the long subject, cut
    starts = [lines[0].index(name) for name in ("status", "opened", "updated")]
    for line in lines[1:]:  # every column starts where its header does
        assert [line[s - 1] for s in starts] == [" "] * 3
        assert all(line[s] != " " for s in starts)
    # Times on the desk's clock: ticket 1 was opened at 14:00 Chicago time the day before.
    assert "2026-12-06 14:00" in lines[1] and "\t" not in out.getvalue()
    if width >= 150:  # wide enough for every column whole
        assert lines[0].split() == list(COLUMNS)
        assert "Projector flickers" in lines[1] and "Lincoln" in lines[1]


def test_piped_is_a_header_then_tab_separated_values_nothing_cut(db):
    out = io.StringIO()
    with db.sessions() as session:
        print_tabbed(tickets(db, session), CHICAGO, out)
    lines = out.getvalue().splitlines()
    assert lines[0].split("\t") == list(COLUMNS)
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == len(COLUMNS) for row in rows)  # a tab in a subject is escaped
    assert rows[0][3] == "2026-12-06T14:00:00-06:00"
    assert rows[5][-1].endswith("x" * 80) and rows[2][-1] == 'Printer\\ttoner, "empty"'
    assert [row[6] for row in rows[:2]] == ["-", "tech1@school.test"]


def test_the_csv_export_parses_back_to_the_tickets(db):
    out = io.StringIO()
    with db.sessions() as session:
        write_csv(session.scalars(listing_query(Filters(), db.dialect, people=True)),
                  CHICAGO, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [int(r["id"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2]["subject"] == 'Printer\ttoner, "empty"'  # exact, quoted by csv
    assert rows[2]["school"] == "Adams" and rows[2]["assignee"] == "tech1@school.test"
    assert rows[0]["assignee"] == "" and rows[0]["created_at"] == "2026-12-06T14:00:00-06:00"


def test_a_merged_ticket_is_exported_only_when_asked_for_and_names_its_survivor(db):
    with db.sessions() as session:
        merged = Filters(statuses=("merged",))
        out = io.StringIO()
        write_csv(session.scalars(listing_query(merged, db.dialect, people=True)), CHICAGO, out)
        plain = io.StringIO()
        export_csv(session, listing_query(merged, db.dialect, exported=True), CHICAGO, plain)
        everything = io.StringIO()
        export_csv(session, listing_query(Filters(), db.dialect, exported=True), CHICAGO,
                   everything)
    assert plain.getvalue() == out.getvalue()
    [row] = csv.DictReader(io.StringIO(out.getvalue()))
    assert (row["id"], row["status"], row["merged_into"]) == ("7", "closed", "2")
    assert [r["id"] for r in csv.DictReader(io.StringIO(everything.getvalue()))] == [
        "1", "2", "3", "4", "5", "6"]


@pytest.mark.parametrize(("options", "lines"), [
    ({"status": "resolved"}, ["#resolve"]),
    ({"status": "open", "priority": "high"}, ["#open", "#priority high"]),
    ({"assign": "tech2@school.test", "category": "Printers"},
     ["#assign tech2@school.test", "#category Printers"]),
    ({"category": ""}, ["#category"]),
    ({"school": "Lincoln Elementary", "room": "B 12"}, ["#school Lincoln Elementary",
                                                        "#room B 12"]),
    ({"school": "", "status": "open"}, ["#open", "#school"]),
    ({"room": ""}, ["#room"]),
])
def test_set_options_become_the_desks_command_lines(options, lines):
    assert command_lines(_set_args(**options)) == lines


def _set_args(**options) -> argparse.Namespace:
    return argparse.Namespace(**{"status": None, "assign": None, "priority": None,
                                 "category": None, "school": None, "room": None, **options})


@pytest.mark.parametrize(("options", "message"), [
    ({}, "give --status, --assign, --priority, --category, --school or --room"),
    ({"status": "new"}, "--status"),
    ({"assign": "not an address"}, "--assign not an address: #assign needs an email"),
    # A second line would be a command of its own (#close), run unasked.
    ({"room": "12\n#close"}, "--room: give one line"),
    ({"school": "Adams\r\n#assign tech2@school.test"}, "--school: give one line"),
    ({"school": "x" * 400}, r"--school x+\.\.\.: #school: the name is too long"),
])
def test_set_with_nothing_or_nonsense_is_bad_usage(options, message):
    with pytest.raises(UsageError, match=message):
        command_lines(_set_args(**options))


def test_files_are_written_under_their_own_safe_name_0600_never_over_a_file(
        db, tmp_path, monkeypatch):
    store = AttachmentStore(tmp_path / "store")
    payloads = {"../../etc/passwd": b"root:x:0:0\n", "report.pdf": b"%PDF-1.4 \x00\xff"}
    with transaction(db) as tx:
        made = [Attachment(message_id=1, filename=name, content_type="application/octet-stream",
                           size=len(payload), sha256=store.put(payload))
                for name, payload in payloads.items()]
        tx.add_all(made)
    monkeypatch.chdir(tmp_path)
    with db.sessions() as session:
        files = files_of(session, 1, None)
        written = write_out(store, files, None)
        assert [w.path for w in written] == ["passwd", "report.pdf"]
        for item, payload in zip(written, payloads.values(), strict=True):
            assert (tmp_path / item.path).read_bytes() == payload
            assert stat.S_IMODE(os.stat(tmp_path / item.path).st_mode) == 0o600
        with pytest.raises(MailhelpError, match="exists; not overwritten"):
            write_out(store, files_of(session, 1, files[1].id), None)
        with pytest.raises(UsageError, match="give the ID of one"):
            write_out(store, files, "out.bin")
        (tmp_path / "out.bin").write_bytes(b"old")
        write_out(store, files_of(session, 1, files[1].id), "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == payloads["report.pdf"]
        assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == 0o600
        with pytest.raises(MailhelpError, match="has no file 999"):
            files_of(session, 1, 999)
        with pytest.raises(MailhelpError, match="has no files"):
            files_of(session, 2, None)
        with pytest.raises(MailhelpError, match=r"^ticket 7 has no files \(merged into #2: "
                                                r"its files are there\)$"):
            files_of(session, 7, None)
    with transaction(db) as tx:  # the module's desk as it was, for the other tests
        for attachment in made:
            tx.delete(tx.get(Attachment, attachment.id))
