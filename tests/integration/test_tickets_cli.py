"""The staff command line over a real desk (issue 19): teachers' mail comes in through
Dovecot and ``run --once``; every command is the CLI in its own process; the mail that
``tickets set`` causes reaches the servers. One desk for the module, read first and
changed last (the tests run in file order)."""

from __future__ import annotations

import csv
import email
import email.policy
import getpass
import io
import json
import os
import pty
import stat
import subprocess
import sys

import pytest

from tests import mailclients
from tests.helpers import mailhelp, write_config
from tests.integration.test_conversations import JANE, Desk, parsed

pytestmark = pytest.mark.integration

BOB = "Bob Miller <teacher2@school.test>"
TECH2 = "tech2@school.test"
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # every byte value, twice over
CATEGORIES = '[[categories]]\nname = "Printers"\nkeywords = ["printer", "toner"]\n'


def _with_photo(raw: bytes) -> bytes:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    message.add_attachment(PHOTO, maintype="image", subtype="png",
                           filename="../room 12/projector.png")
    return message.as_bytes(policy=email.policy.SMTP)


@pytest.fixture(scope="module")
def desk(tmp_path_factory, module_database_url, mail_servers_session) -> Desk:
    mail = mail_servers_session
    mail.clear_mailboxes()
    tmp_path = tmp_path_factory.mktemp("cli")
    config = write_config(tmp_path, module_database_url, mail, extra='[helpdesk]\n'
                          'timezone = "America/Chicago"\n')
    config.write_text(config.read_text() + CATEGORIES)
    assert mailhelp(config, "init").returncode == 0
    desk = Desk(mail, config, module_database_url)
    desk.send(_with_photo(mailclients.new_message(
        JANE, "Projector in room 12", "It shows a zebra pattern since Monday.\nJane")))
    desk.send(mailclients.new_message(BOB, "Printer jam", "Paper stuck in tray 2.\nBob"))
    desk.send(mailclients.new_message(JANE, "Wifi", "No signal in the gym.\nJane"))
    return desk


def cli(desk: Desk, *args: str) -> subprocess.CompletedProcess:
    done = mailhelp(desk.config, *args)
    assert done.returncode == 0, done.stderr.decode()
    return done


def rows(done: subprocess.CompletedProcess) -> list[list[str]]:
    return [line.split("\t") for line in done.stdout.decode().splitlines()]


def test_search_finds_a_word_only_in_a_message_body(desk):
    header, *found = rows(cli(desk, "tickets", "list", "--search", "zebra"))
    assert header[0] == "id" and [row[0] for row in found] == ["1"]
    assert "Projector" in found[0][-1]
    for odd, expected in (('"', []), ("AND(", []), ('zebra"', [1]), ("(ZEBRA*", [1]),
                          ("NEAR(zebra", [])):  # FTS syntax is plain words
        listed = json.loads(cli(desk, "tickets", "list", "--json", "--search", odd).stdout)
        assert [t["id"] for t in listed] == expected, odd


def test_filters_combine(desk):
    def listed(*args: str) -> list[int]:
        return [t["id"] for t in json.loads(cli(desk, "tickets", "list", "--json",
                                                *args).stdout)]

    assert listed("--status", "new") == [1, 2, 3]
    assert listed("--requester", "teacher1@school.test") == [1, 3]
    assert listed("--category", "Printers") == [2]
    assert listed("--requester", "teacher1@school.test", "--search", "gym") == [3]
    assert listed("--requester", "teacher2@school.test", "--search", "gym") == []
    assert listed("--status", "open", "--status", "new", "--since", "1d", "--limit", "2") \
        == [2, 3]
    assert listed("--assignee", "none", "--category", "Printers") == [2]
    assert listed("--since", "2000-01-01", "--status", "closed") == []
    bad = mailhelp(desk.config, "tickets", "list", "--since", "someday")
    assert bad.returncode == 2 and b"--since" in bad.stderr


def test_piped_output_is_tab_separated_and_a_terminal_gets_aligned_columns(desk):
    piped = rows(cli(desk, "tickets", "list"))
    assert piped[0] == ["id", "status", "priority", "opened", "updated", "requester",
                        "assignee", "school", "category", "subject"]
    assert [row[0] for row in piped[1:]] == ["1", "2", "3"]
    assert piped[2][3].endswith("-06:00")  # ISO 8601 on the desk's clock (Chicago)
    primary, secondary = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "mailhelp", "--config", str(desk.config), "tickets",
             "list"], stdout=secondary, stderr=subprocess.PIPE, timeout=60,
            env={**os.environ, "COLUMNS": "100", "LINES": "40"})
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
    assert process.returncode == 0, process.stderr.decode()
    lines = output.decode().replace("\r\n", "\n").splitlines()
    assert lines[0].split()[:5] == ["id", "status", "priority", "opened", "updated"]
    assert len(lines) == 4 and "\t" not in output.decode()
    assert all(len(line) <= 100 for line in lines)
    column = lines[0].index("opened")
    assert all(line[column - 2:column] == "  " and line[column:column + 2] == "20"
               for line in lines[1:])


def test_show_is_a_conversation_and_json_keeps_the_design_fields(desk):
    text = cli(desk, "tickets", "show", "1").stdout.decode()
    assert text.startswith("Ticket #1: Projector in room 12")
    assert "Requester: Jane Teacher <teacher1@school.test>" in text
    assert "request  Jane Teacher <teacher1@school.test>" in text
    assert "zebra pattern" in text and " CST" in text
    data = json.loads(cli(desk, "tickets", "show", "1", "--json").stdout)
    assert set(data) >= {"id", "subject", "status", "priority", "requester", "assignee",
                         "participants", "created_at", "updated_at", "first_response_at",
                         "resolved_at", "closed_at", "survey", "messages", "school",
                         "category"}
    [request] = [m for m in data["messages"] if m["kind"] == "request"]
    [photo] = request["attachments"]
    # Its directories were made part of the name when it came in: a name, not a path.
    assert photo["filename"] == "_room 12_projector.png"
    assert f"[file {photo['id']}] _room 12_projector.png (image/png, 1,032 bytes)" in text
    assert set(photo) >= {"filename", "content_type", "size", "id"}


def test_export_csv_parses_back_and_json_is_the_listing(desk):
    exported = cli(desk, "tickets", "export", "--format", "csv", "--status", "new").stdout
    parsed_rows = list(csv.DictReader(io.StringIO(exported.decode())))
    listed = json.loads(cli(desk, "tickets", "list", "--json").stdout)
    assert [int(r["id"]) for r in parsed_rows] == [t["id"] for t in listed]
    for row, ticket in zip(parsed_rows, listed, strict=True):
        assert row["subject"] == ticket["subject"] and row["requester"] == ticket["requester"]
        assert row["created_at"] == ticket["created_at"] and row["category"] == ticket[
            "category"]
    assert json.loads(cli(desk, "tickets", "export", "--format", "json").stdout) == listed
    target = desk.config.parent / "tickets.csv"
    cli(desk, "tickets", "export", "--format", "csv", "-o", str(target))
    assert target.read_bytes().replace(b"\r\n", b"\n") == exported.replace(b"\r\n", b"\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_attachment_is_written_under_its_own_name_with_its_bytes(desk):
    [photo] = [a for m in desk.ticket(1)["messages"] for a in m["attachments"]]
    done = cli(desk, "tickets", "attachment", "1")
    written = desk.config.parent / photo["filename"].rsplit("/", 1)[-1]
    assert written.read_bytes() == PHOTO and str(written.name) in done.stdout.decode()
    assert "/" not in written.name and not written.name.startswith(".")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    again = mailhelp(desk.config, "tickets", "attachment", "1", str(photo["id"]))
    assert again.returncode == 1 and b"not overwritten" in again.stderr
    copy = desk.config.parent / "copy.png"
    cli(desk, "tickets", "attachment", "1", str(photo["id"]), "-o", str(copy))
    assert copy.read_bytes() == PHOTO
    missing = mailhelp(desk.config, "tickets", "attachment", "2")
    assert missing.returncode == 1 and b"has no files" in missing.stderr


def test_set_assigns_with_the_assignment_mail_and_resolves_with_the_notice(desk):
    before = len(desk.inbox(TECH2))
    done = cli(desk, "tickets", "set", "1", "--assign", TECH2, "--priority", "high",
               "--category", "printers")
    assert "assigned to tech2@school.test" in done.stdout.decode()
    ticket = desk.ticket(1)
    assert (ticket["assignee"], ticket["priority"], ticket["category"]) == (
        TECH2, "high", "Printers")
    assignment = parsed(desk.inbox(TECH2, before + 1)[-1])
    assert "[#1]" in assignment["Subject"]
    assert [p.get_content() for p in assignment.iter_attachments()] == [PHOTO]

    jane_before = len(desk.inbox("teacher1@school.test"))
    cli(desk, "tickets", "set", "1", "--status", "resolved")
    assert desk.ticket(1)["status"] == "resolved"
    notice = parsed(desk.inbox("teacher1@school.test", jane_before + 1)[-1])
    assert "[#1]" in notice["Subject"] and notice["To"].addresses[0].addr_spec == (
        "teacher1@school.test")
    assert desk.sent_to("teacher1@school.test")[-1] == "status"
    history = _events(desk, 1)
    assert (f"cli:{getpass.getuser()}", "assigned", TECH2) in history
    assert (f"cli:{getpass.getuser()}", "status", "new -> resolved") in history


def test_set_is_all_or_nothing(desk):
    bad = mailhelp(desk.config, "tickets", "set", "2", "--priority", "urgent", "--assign",
                   "teacher2@school.test")
    assert bad.returncode == 1 and b"not a staff address" in bad.stderr
    assert desk.ticket(2)["priority"] == "normal" and desk.ticket(2)["assignee"] is None
    unknown = mailhelp(desk.config, "tickets", "set", "2", "--category", "Plumbing")
    assert unknown.returncode == 1 and b"Printers" in unknown.stderr
    usage = mailhelp(desk.config, "tickets", "set", "2")
    assert usage.returncode == 2
    assert mailhelp(desk.config, "tickets", "set", "99", "--priority", "low").returncode == 1


def test_set_corrects_school_and_room(desk):
    done = cli(desk, "tickets", "set", "3", "--school", "Lincoln Elementary", "--room", "Gym")
    assert done.stdout.decode() == "ticket 3: school Lincoln Elementary; room Gym\n"
    ticket = desk.ticket(3)
    assert (ticket["school"], ticket["room"], ticket["status"]) == (
        "Lincoln Elementary", "Gym", "new")
    listed = json.loads(cli(desk, "tickets", "list", "--json", "--school",
                            "Lincoln Elementary").stdout)
    assert [t["id"] for t in listed] == [3]
    who = f"cli:{getpass.getuser()}"
    assert [e for e in _events(desk, 3) if e[1] in ("school", "room")] == [
        (who, "school", "- -> Lincoln Elementary"), (who, "room", "- -> Gym")]
    cli(desk, "tickets", "set", "3", "--room", "")
    assert (desk.ticket(3)["school"], desk.ticket(3)["room"]) == ("Lincoln Elementary", "")
    # A second line would be a command of its own: refused, nothing changed.
    bad = mailhelp(desk.config, "tickets", "set", "3", "--room", "12\n#close")
    assert (bad.returncode, bad.stderr) == (2, b"mailhelp: --room: give one line\n")
    assert desk.ticket(3)["status"] == "new"


def _events(desk: Desk, ticket_id: int) -> list[tuple[str, str, str]]:
    from sqlalchemy import create_engine, select

    from mailhelp.db.models import TicketEvent

    engine = create_engine(desk.database_url)
    try:
        with engine.connect() as connection:
            return [(r.actor, r.action, r.detail) for r in connection.execute(
                select(TicketEvent).where(TicketEvent.ticket_id == ticket_id))]
    finally:
        engine.dispose()


