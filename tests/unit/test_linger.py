"""An ingest that stays on, warm, for the next messages of a burst ([ingest] linger).

Real processes (``python -m mailhelp ingest``, forking as an MTA's pipe would see it)
on a real database; the run directory is this test's own ($XDG_RUNTIME_DIR).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhelp import config as config_module
from mailhelp.service.linger import helper_key, runtime_dir, spot_for
from tests.helpers import mailhelp, write_config
from tests.unit.test_handoff import request


@pytest.fixture
def run_dir(monkeypatch) -> Iterator[Path]:
    # Short, not under tmp_path: a socket's path has room for 107 bytes, and pytest's
    # numbered folders grow with every run on a machine.
    base = Path(tempfile.mkdtemp(prefix="mh-run-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    yield base / "mailhelp"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def desk(tmp_path, database_url, run_dir):
    """A desk whose ingests may linger 3 s; any helper left is stopped afterwards."""
    config = lingering_desk(tmp_path, database_url)
    yield config
    stop_helpers(config)


def lingering_desk(tmp_path: Path, database_url: str) -> Path:
    config = write_config(tmp_path, database_url, extra=f"""
        [ingest]
        linger = "3s"
        [log]
        file = "{tmp_path / 'mailhelp.log'}"
        """)
    assert mailhelp(config, "init").returncode == 0
    return config


def stop_helpers(config: Path) -> None:
    for pid in helpers(config):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def helpers(config: Path) -> list[int]:
    """The pids of the helpers this desk's log says started."""
    return [int(line.split("pid=")[1].split()[0]) for line in log_lines(config)
            if "action=ingest_linger " in line]


def log_lines(config: Path) -> list[str]:
    path = config.parent / "mailhelp.log"
    return path.read_text().splitlines() if path.exists() else []


def ended(config: Path, timeout: float = 15) -> list[str]:
    """The helpers' last lines, once every helper started has written one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ends = [line for line in log_lines(config) if "action=ingest_linger_end" in line]
        if len(ends) >= len(helpers(config)):
            return ends
        time.sleep(0.1)
    raise AssertionError("a helper did not end:\n" + "\n".join(log_lines(config)))


def ingest(config: Path, message: bytes):
    started = time.monotonic()
    done = mailhelp(config, "ingest", stdin=message)
    assert done.returncode == 0, done.stderr.decode()
    return done, time.monotonic() - started


def tickets(config: Path) -> list[dict]:
    return json.loads(mailhelp(config, "tickets", "list", "--json").stdout)


def test_the_second_ingest_of_a_burst_stays_on_and_takes_the_next(desk, run_dir):
    ingest(desk, request(1))
    assert helpers(desk) == []  # a lone message: nobody stays
    _, seconds = ingest(desk, request(2))
    [pid] = helpers(desk)
    # It exited (its pipes closed) while the helper it left lives on.
    assert seconds < 3
    os.kill(pid, 0)
    [sock] = run_dir.glob("*.sock")
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    reply = (b"From: Teacher 1 <teacher1@school.test>\nTo: help@school.test\n"
             b"Subject: Re: [#1] Projector in room 1\nMessage-ID: <re-1@school.test>\n"
             b"In-Reply-To: <req-1@school.test>\n\nStill dark.\n")
    for message in (request(3), reply):
        done, _ = ingest(desk, message)
        assert done.stderr == b""
    # Committed before each ingest exited: the ticket and the threaded reply are there.
    listed = tickets(desk)
    assert sorted(t["requester"] for t in listed) == [
        "teacher1@school.test", "teacher2@school.test", "teacher3@school.test"]
    shown = json.loads(mailhelp(desk, "tickets", "show", "1", "--json").stdout)
    assert [m["kind"] for m in shown["messages"] if m["direction"] == "in"] == [
        "request", "reply"]
    # Idle for [ingest] linger, it leaves, taking its socket with it.
    [end] = ended(desk)
    assert f"pid={pid} served=2" in end
    assert list(run_dir.glob("*.sock")) == []


def test_a_changed_config_is_not_served_by_a_helper_of_the_old_one(desk):
    ingest(desk, request(1))
    ingest(desk, request(2))
    [old] = helpers(desk)
    desk.write_text(desk.read_text() + "# edited\n")
    ingest(desk, request(3))  # a new key: done here, and the old helper is left alone
    with contextlib.suppress(ProcessLookupError):  # (or it has idled out by now)
        os.kill(old, signal.SIGTERM)
    ends = ended(desk)
    assert any(f"pid={old} served=0" in line for line in ends)
    assert len(tickets(desk)) == 3


@pytest.mark.parametrize("change", ["no log file", "linger 0s"])
def test_no_ingest_stays_on_without_a_log_or_with_linger_off(tmp_path, database_url,
                                                             run_dir, change):
    extra = '[ingest]\nlinger = "0s"\n' if change == "linger 0s" else ""
    if change == "linger 0s":
        extra += f'[log]\nfile = "{tmp_path / "mailhelp.log"}"\n'
    config = write_config(tmp_path, database_url, extra=extra)
    assert mailhelp(config, "init").returncode == 0
    for n in (1, 2, 3):
        ingest(config, request(n))
    assert not run_dir.exists()  # not even looked for
    assert len(tickets(config)) == 3


def test_a_run_directory_others_may_enter_is_not_used(desk, run_dir):
    run_dir.mkdir(mode=0o755)
    run_dir.chmod(0o755)
    for n in (1, 2, 3):
        ingest(desk, request(n))
    assert helpers(desk) == []
    assert list(run_dir.iterdir()) == []
    assert any("action=ingest_linger_off" in line and "0700" in line
               for line in log_lines(desk))


def test_the_key_follows_the_config_and_the_environment(tmp_path, monkeypatch):
    database = tmp_path / "desk.db"
    database.write_bytes(b"")
    path = tmp_path / "mailhelp.toml"
    path.write_text(f'[helpdesk]\naddress = "help@school.test"\n[database]\n'
                    f'url = "sqlite:///{database}"\n[log]\nfile = "{tmp_path / "log"}"\n')
    config = config_module.load(path)
    key = helper_key(config)
    database.write_bytes(b"written to, as every message does")
    assert helper_key(config) == key  # the same database file
    # What an MTA sets for each message is not part of it (else no two would meet).
    monkeypatch.setenv("SENDER", "teacher1@school.test")
    monkeypatch.setenv("CLIENT_ADDRESS", "192.0.2.7")
    assert helper_key(config) == key
    for variable in ("MAILHELP_SOMETHING", "PGHOST", "LC_ALL"):
        monkeypatch.setenv(variable, "else")
        assert helper_key(config) != key, variable
        monkeypatch.delenv(variable)
    path.write_text(path.read_text() + '[smtp]\nhost = "mx"\npassword_env = "SMTP_SECRET"\n')
    edited = config_module.load(path)
    key = helper_key(edited)
    assert key != helper_key(config)
    monkeypatch.setenv("SMTP_SECRET", "changed")  # a variable the config names
    assert helper_key(edited) != key


def test_a_database_file_made_anew_while_a_helper_waits_is_the_one_written(tmp_path,
                                                                          run_dir):
    database = tmp_path / "replaced.db"  # SQLite whichever database the suite runs on
    desk = lingering_desk(tmp_path, f"sqlite:///{database}")
    try:
        for n in (1, 2, 3):  # the 3rd served by the helper: it has used the first file
            ingest(desk, request(n))
        [pid] = helpers(desk)
        database.unlink()
        assert mailhelp(desk, "init").returncode == 0
        ingest(desk, request(4))
        assert [t["requester"] for t in tickets(desk)] == ["teacher4@school.test"]
    finally:
        stop_helpers(desk)
    assert any(f"pid={pid} served=2" in line for line in ended(desk))


def test_a_helper_that_cannot_take_a_message_leaves(desk, database_url, run_dir):
    if not database_url.startswith("sqlite"):
        desk.write_text(desk.read_text().replace(database_url, f"sqlite:///{desk.parent}/x.db"))
        assert mailhelp(desk, "init").returncode == 0
    ingest(desk, request(1))
    ingest(desk, request(2))
    [pid] = helpers(desk)
    database = Path(config_module.load(desk).database.url[len("sqlite:///"):])
    for leftover in database.parent.glob(database.name + "*"):
        leftover.unlink()
    database.write_bytes(b"not a database " * 1000)
    done = mailhelp(desk, "ingest", stdin=request(3))
    # It may have been stored: the MTA delivers it again (a copy is known by its id).
    assert done.returncode == 75, done.stderr.decode()
    assert any(f"pid={pid} served=0" in line for line in ended(desk))
    assert list(run_dir.glob("*.sock")) == []  # the next ingest works alone, and says why
    again = mailhelp(desk, "ingest", stdin=request(3))
    assert again.returncode != 0 and b"Traceback" not in again.stderr


def test_no_spot_with_a_daemon_socket_set(tmp_path, run_dir):
    config = config_module.loads(
        f'[helpdesk]\naddress = "help@school.test"\n[ingest]\nsocket = "{tmp_path}/s"\n'
        f'[log]\nfile = "{tmp_path / "log"}"\n')
    assert spot_for(config) is None
    assert runtime_dir() == str(run_dir)


def test_check_says_whether_a_burst_is_taken_by_an_ingest_that_stays_on(tmp_path, run_dir):
    from mailhelp.check import _lingering

    text = f'[helpdesk]\naddress = "help@school.test"\n[log]\nfile = "{tmp_path / "log"}"\n'
    result = _lingering(config_module.loads(text))
    assert result.ok and not result.warning and str(run_dir) in result.detail
    off = text.replace("[log]", "[ingest]\nlinger = '0s'\n[log]")
    result = _lingering(config_module.loads(off))
    assert "works alone" in result.detail and not result.warning
    result = _lingering(config_module.loads('[helpdesk]\naddress = "help@school.test"\n'))
    assert result.warning and "needs [log] file" in result.detail
