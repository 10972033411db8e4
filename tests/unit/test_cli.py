"""The command line in a fresh process, without mail servers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailhelp.localmail import free_port
from tests.helpers import mailhelp, write_config

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def config(tmp_path, database_url) -> Path:
    path = write_config(tmp_path, database_url)
    assert mailhelp(path, "init").returncode == 0
    return path


@pytest.mark.parametrize(("extra", "message"), [
    ("[imap]\nhost = 1\n", "imap.host: expected a string"),
    ("[lifecycle]\nauto_close_after = \"soon\"\n", "lifecycle.auto_close_after:"),
    ("[surveys]\nenabled = true\n", "surveys: unknown section"),
])
def test_bad_config_is_one_line_naming_the_key_and_exit_2(tmp_path, extra, message):
    path = tmp_path / "mailhelp.toml"
    path.write_text('[helpdesk]\naddress = "help@school.test"\n' + extra)
    for command in (["check"], ["run", "--once"], ["tickets", "list"]):
        done = mailhelp(path, *command)
        assert done.returncode == 2
        lines = done.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert b"Traceback" not in done.stderr


def test_missing_config_file(tmp_path):
    done = mailhelp(tmp_path / "nope.toml", "tickets", "list")
    assert done.returncode == 2 and b"config file not found" in done.stderr


def test_commands_before_init_say_what_to_do(tmp_path, database_url):
    path = write_config(tmp_path, database_url)
    done = mailhelp(path, "tickets", "list")
    assert done.returncode == 1 and b"run 'mailhelp init' first" in done.stderr


def test_now_needs_once(config):
    done = mailhelp(config, "run", "--now", "2026-12-01T09:00:00+00:00")
    assert done.returncode == 2 and b"--now goes with --once" in done.stderr
    done = mailhelp(config, "run", "--once", "--now", "yesterday")
    assert done.returncode == 2 and b"not an ISO 8601 instant" in done.stderr


def test_init_twice_is_fine(config):
    done = mailhelp(config, "init")
    assert done.returncode == 0 and b"already current" in done.stdout


def test_ingest_then_list_and_show(config):
    done = mailhelp(config, "ingest", str(DATA / "teacher_projector.eml"),
                    str(DATA / "outlook_html_only.eml"))
    assert done.returncode == 0, done.stderr.decode()
    listed = json.loads(mailhelp(config, "tickets", "list", "--json").stdout)
    assert [t["requester"] for t in listed] == ["teacher1@school.test", "teacher2@school.test"]
    assert set(listed[0]) >= {"id", "subject", "status", "priority", "requester", "assignee",
                              "participants", "created_at", "updated_at", "first_response_at",
                              "resolved_at", "closed_at", "survey"}
    assert "messages" not in listed[0]
    assert listed[0]["created_at"].endswith("+00:00")
    text = mailhelp(config, "tickets", "list").stdout.decode().splitlines()
    # Piped: a header row naming the tab-separated columns, then one line per ticket.
    assert len(text) == 3 and text[0].startswith("id\tstatus")
    assert "Kein Zugang zum Notenbuch" in text[2]
    shown = json.loads(mailhelp(config, "tickets", "show", "2", "--json").stdout)
    [request] = [m for m in shown["messages"] if m["kind"] == "request"]
    assert request["from"] == "teacher2@school.test" and "Notenbuch" in request["text"]
    assert set(request) >= {"id", "direction", "kind", "from", "to", "cc", "subject",
                            "message_id", "date", "text", "attachments"}
    assert "Ticket #2" in mailhelp(config, "tickets", "show", "2").stdout.decode()
    missing = mailhelp(config, "tickets", "show", "99")
    assert missing.returncode == 1 and b"ticket 99 not found" in missing.stderr


def test_ingest_from_stdin_and_failed_retry(config):
    done = mailhelp(config, "ingest", stdin=b"\xd0\xcf\x11\xe0" + b"\0" * 32)
    assert done.returncode == 0 and b"failed" in done.stderr
    failed = json.loads(mailhelp(config, "failed", "list", "--json").stdout)
    assert len(failed) == 1 and "Outlook" in failed[0]["error"]
    retry = mailhelp(config, "failed", "retry", str(failed[0]["id"]))
    assert retry.returncode == 1 and b"failed" in retry.stdout
    assert mailhelp(config, "failed", "retry", "999").returncode == 1


def test_report(config):
    assert mailhelp(config, "ingest", str(DATA / "teacher_projector.eml")).returncode == 0
    text = mailhelp(config, "report")
    assert text.returncode == 0 and "tickets created       1" in text.stdout.decode()
    data = json.loads(mailhelp(config, "report", "--since", "7d", "--format", "json").stdout)
    assert data["tickets"]["created"] == 1 and data["satisfaction"]["surveys_sent"] == 0
    html = mailhelp(config, "report", "--format", "html").stdout.decode()
    assert html.startswith("<!DOCTYPE html>") and "Help desk report" in html
    assert mailhelp(config, "report", "--since", "soon").returncode == 2


def test_python_dash_m_and_help():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mailhelp", "--help"], capture_output=True)
    assert done.returncode == 0
    for command in ("init", "check", "run", "ingest", "tickets", "failed", "report", "serve",
                    "demo"):
        assert command.encode() in done.stdout


# What `mailhelp ingest` imports is paid on every message (an MTA pipe runs one process
# per message), so these stay out of it until a message or a command needs them.
NOT_FOR_A_PLAIN_NEW_TICKET = (
    "alembic", "uvicorn", "imapclient", "aiosmtplib", "charset_normalizer", "flufl.bounce",
    "authres", "lxml", "inscriptis", "mailhelp.web.site", "mailhelp.reports",
    "mailhelp.service.daemon",
    "mailhelp.service.imap", "mailhelp.db.migrate", "mailhelp.check", "mailhelp.demo",
    "mailhelp.web.views", "mailhelp.delivery.transport", "mailhelp.delivery.worker",
)
NOT_BEFORE_A_MESSAGE = ("jinja2",)

INGEST_AND_LOOK = textwrap.dedent("""
    import gc, json, sys
    from mailhelp import cli
    from mailhelp.service import pipeline

    seen = {}
    sweep = pipeline.Pipeline.sweep

    def look_then_sweep(self, *args, **kwargs):  # start-up is over when ingest sweeps
        seen["start-up"] = sorted(sys.modules)
        seen["collector"] = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
        return sweep(self, *args, **kwargs)

    pipeline.Pipeline.sweep = look_then_sweep
    status = cli.main(sys.argv[1:])
    seen["ingest"] = sorted(sys.modules)
    print(json.dumps(seen))
    sys.exit(status)
""")


def test_ingest_imports_only_what_the_message_needs(config):
    done = subprocess.run(
        [sys.executable, "-c", INGEST_AND_LOOK, "--config", str(config), "ingest",
         str(DATA / "teacher_projector.eml")],
        capture_output=True, cwd=config.parent, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    started, ingested = set(seen["start-up"]), set(seen["ingest"])
    assert "mailhelp.desk.workflow" in started  # the look was taken after start-up
    assert "jinja2" in ingested  # the acknowledgement was rendered
    assert [m for m in NOT_BEFORE_A_MESSAGE if m in started] == []
    assert [m for m in NOT_FOR_A_PLAIN_NEW_TICKET if m in ingested] == []
    # Start-up ran without the cyclic collector, which was back on for the message with
    # the start-up's objects frozen out of its sight.
    assert seen["collector"]["enabled"] and seen["collector"]["frozen"] > 0


def test_a_journal_of_sent_mail_that_cannot_be_made_is_a_warning_naming_the_key(
        tmp_path, database_url):
    # On PostgreSQL the senders' journal of sent mail is kept in [storage]
    # attachments_dir: where it cannot be made, mail is still sent (marked in the
    # database instead), with a warning. SQLite keeps its journal beside its file.
    (tmp_path / "a-file").write_text("")
    path = write_config(tmp_path, database_url, extra=f"""
        [storage]
        attachments_dir = "{tmp_path / 'a-file' / 'att'}"
        [smtp]
        host = "127.0.0.1"
        port = {free_port()}
        security = "none"
        """)
    assert mailhelp(path, "init").returncode == 0
    done = mailhelp(path, "run", "--once")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.decode().splitlines()
                if "action=sent_journal_unavailable" in line]
    if database_url.startswith("postgresql"):
        [warning] = warnings
        assert (f"error=storage.attachments_dir: cannot open the journal of sent mail "
                f"{tmp_path / 'a-file' / 'att' / 'outbox-sent'}: [Errno 20] Not a "
                "directory") in warning
    else:
        assert warnings == []
