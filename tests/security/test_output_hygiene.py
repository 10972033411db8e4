"""What mail says reaches a terminal and a log inert (issue 15).

``tickets show`` printed a body's ESC sequences raw (``ESC[2J`` cleared the screen,
an OSC 52 sequence wrote the clipboard of whoever looked), and a line break encoded in
a header could start a log line of the sender's own. Text output now escapes control
characters; JSON output stays exact; each log record is one line.
"""

from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace

import pytest

from mailhelp import config as config_module
from mailhelp.cli import _setup_logging
from mailhelp.db.migrate import upgrade
from mailhelp.db.session import Database
from mailhelp.mail.printable import OneLineFormatter, printable
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.helpers import mailhelp, write_config
from tests.security.desk import NOW

CLEAR, CLIPBOARD = "\x1b[2J", "\x1b]52;c;ZXZpbA==\x07"
# Every character a terminal or a log reader may act on, but newline and tab.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
HOSTILE = (
    "From: =?utf-8?q?Eve=C2=9B2J?= <eve\u2028x@evil.test>\n"
    "To: help@school.test\n"
    "Subject: =?utf-8?q?Printer_=C2=9D52;c;ZXZpbA=3D=3D=E2=80=AE_jam_a=0Aaction=3Dforged?=\n"
    "Message-ID: <hostile@evil.test>\nContent-Type: text/plain; charset=utf-8\n\n"
    f"Hello{CLEAR}\n{CLIPBOARD}\nsecond\rline\tend\u2028x\n").encode()


@pytest.fixture
def desk_file(tmp_path, database_url):
    """A config file and its database with the hostile message on ticket 1."""
    path = write_config(tmp_path, database_url)
    db = Database(database_url)
    upgrade(db)
    try:
        [result] = Pipeline(config_module.load(str(path)), db, lambda: NOW).accept(
            [Arrival(HOSTILE, "t")])
    finally:
        db.dispose()
    assert result.outcome.action == "new_ticket"
    return path


def test_tickets_show_and_list_print_controls_escaped(desk_file):
    shown = mailhelp(desk_file, "tickets", "show", "1")
    listed = mailhelp(desk_file, "tickets", "list")
    assert shown.returncode == listed.returncode == 0, shown.stderr + listed.stderr
    for output in (shown.stdout.decode(), listed.stdout.decode()):
        assert not ACTIVE.search(output)
    text = shown.stdout.decode()
    assert r"Hello\x1b[2J" in text and r"\x1b]52;c;ZXZpbA==\x07" in text
    assert "\tend" in text  # a tab is layout (a carriage return ends a line there)
    assert r"\x9d52;c;ZXZpbA==\u202e" in text  # C1 OSC and a bidi override, in the subject


def test_json_output_stays_exact(desk_file):
    shown = mailhelp(desk_file, "tickets", "show", "1", "--json")
    assert shown.returncode == 0
    assert b"\x1b" not in shown.stdout  # json.dumps writes \u001b
    ticket = json.loads(shown.stdout)
    assert ticket["messages"][0]["text"].startswith(f"Hello{CLEAR}\n{CLIPBOARD}\n")
    assert "\u202e" in ticket["subject"] and "\x9d" in ticket["subject"]


def test_printable_escapes_controls_and_keeps_layout_on_request():
    assert printable("a\x1b[2Jb\nc\td\x9b\u2028\u202e") == r"a\x1b[2Jb\nc\td\x9b\u2028\u202e"
    assert printable("a\x1b[2Jb\nc\td\r", lines=True) == "a\\x1b[2Jb\nc\td\\r"
    assert printable("Grüße, 日本") == "Grüße, 日本"
    # The fast path (text.isprintable() returned as it is) lets none of them through.
    from mailhelp.mail.printable import _CONTROLS
    for code in _CONTROLS:
        escaped = chr(code).encode("unicode_escape").decode()
        assert printable(f"a{chr(code)}b") == f"a{escaped}b"


def _formatted(message: str, args: tuple, exc_info=None) -> str:
    formatter = OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord("mailhelp.desk.workflow", logging.INFO, __file__, 1, message, args,
                               exc_info)
    return formatter.format(record)


@pytest.mark.parametrize("value", ["a\naction=forged", "a\rb", "a\u2028b", "a\x85b",
                                   "a\x1b[2Jb", "a\x0bb\x0cc\x1cd"])
def test_a_logged_value_cannot_start_a_line(value):
    line = _formatted("ticket=%s sender=%s", (1, value))
    assert len(line.splitlines()) == 1 and not ACTIVE.search(line)


def test_a_traceback_keeps_its_lines_each_indented():
    try:
        raise ValueError("bad\n2026-12-01 00:00:00,000 INFO mailhelp: action=forged")
    except ValueError:
        import sys

        text = _formatted("raw=%s action=failed", (1,), sys.exc_info())
    first, *rest = text.split("\n")
    assert first.endswith("raw=1 action=failed") and len(rest) >= 3
    assert all(line.startswith("    ") for line in rest)


def test_the_daemons_log_has_one_line_per_event(tmp_path, database_url):
    # The logging the command line sets up, and a message whose sender's address
    # holds a line separator (raw UTF-8 in the From: header, kept by the parser).
    log_file = tmp_path / "mailhelp.log"
    config = config_module.load(str(write_config(
        tmp_path, database_url, extra=f'[log]\nfile = "{log_file}"\n')))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        _setup_logging(config, SimpleNamespace(command="run", verbose=False))
        db = Database(database_url)
        upgrade(db)
        try:
            Pipeline(config, db, lambda: NOW).accept([Arrival(HOSTILE, "t")])
        finally:
            db.dispose()
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert any("action=new_ticket" in line and r"eve\u2028x@evil.test" in line
               for line in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line)
               for line in lines)


def test_failed_list_lines_escape_what_the_message_brought():
    from datetime import UTC, datetime

    from mailhelp.web.views import failed_line

    row = SimpleNamespace(id=7, received_at=datetime(2026, 11, 23, tzinfo=UTC),
                          message_id="<a\x9b2J@evil.test>", error="bad\x1b]52;c;eA==\x07")
    line = failed_line(row)
    assert not ACTIVE.search(line) and r"<a\x9b2J@evil.test>" in line
