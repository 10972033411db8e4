"""``mailhelp ingest`` -> the daemon over a Unix socket: the exchange, turns, failures
(handoff.py, the client, and handoff_server.py, the daemon's end).

The daemon's end runs in this process with a real pipeline on a real database; the
daemon itself, with its mail servers, is in tests/integration/test_handoff.py.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import RawMessage, Ticket
from mailhelp.db.session import Database
from mailhelp.errors import ConfigError
from mailhelp.service.handoff import HandOffFailed, NoDaemon, hand_off
from mailhelp.service.handoff_server import IngestServer, Turns
from mailhelp.service.pipeline import Pipeline
from tests.helpers import desk_config, mailhelp, write_config

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
MAX = 4_000_000  # bytes the test daemon takes in one message


def request(n: int, body: str = "The projector does not turn on.") -> bytes:
    return (f"From: Teacher {n} <teacher{n}@school.test>\nTo: help@school.test\n"
            f"Subject: Projector in room {n}\nMessage-ID: <req-{n}@school.test>\n"
            f"Date: Mon, 23 Nov 2026 08:00:00 +0000\n\n{body}\n").encode()


@pytest.fixture
def pipeline(tmp_path, database_url):
    db = Database(database_url)
    upgrade(db)
    yield Pipeline(desk_config(tmp_path, database_url), db, lambda: NOW)
    db.dispose()


@pytest.fixture
def server(tmp_path, pipeline):
    turn = Turns()
    listening = IngestServer(str(tmp_path / "ingest.sock"), 0o600, pipeline, turn, MAX)
    listening.start()
    yield listening
    listening.stop()


def tickets(pipeline) -> int:
    with pipeline.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(Ticket))


def test_handed_in_messages_are_processed_and_answered_in_order(server, pipeline):
    answers = hand_off(server.path, [request(1), request(2), b"\xd0\xcf\x11\xe0" + b"\0" * 32])
    assert [a["state"] for a in answers] == ["processed", "processed", "failed"]
    assert [a["ticket"] for a in answers[:2]] == [1, 2]
    assert "Outlook" in answers[2]["error"]
    assert tickets(pipeline) == 2
    # Handed in twice (the MTA retried after a lost answer): recorded once.
    [again] = hand_off(server.path, [request(1)])
    assert again["state"] == "duplicate" and tickets(pipeline) == 2


def test_a_big_message_arrives_whole(server, pipeline):
    big = request(3, "x" * 3_000_000)
    [answer] = hand_off(server.path, [big])
    with pipeline.db.sessions() as session:
        assert session.get(RawMessage, answer["raw_id"]).size == len(big)


def test_many_ingests_at_once_each_get_their_ticket(server, pipeline):
    answers: dict[int, list[dict]] = {}

    def ingest(n: int) -> None:
        answers[n] = hand_off(server.path, [request(n)])

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(1, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a[0]["state"] for a in answers.values()) == ["processed"] * 12
    assert sorted(a[0]["ticket"] for a in answers.values()) == list(range(1, 13))
    assert tickets(pipeline) == 12


def test_the_socket_has_the_configured_mode(server):
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_no_daemon_is_told_apart_from_a_daemon_that_did_not_answer(tmp_path):
    path = str(tmp_path / "ingest.sock")
    with pytest.raises(NoDaemon, match="no daemon listens"):
        hand_off(path, [request(1)])
    # A daemon that takes the message and closes without answering (it died).
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()

    def take_and_drop() -> None:
        connection, _ = listener.accept()
        connection.recv(10)
        connection.close()

    threading.Thread(target=take_and_drop, daemon=True).start()
    with pytest.raises(HandOffFailed, match="did not answer|answered 0 of 1"):
        hand_off(path, [request(1)])
    listener.close()
    # The socket file is left behind: nothing listens, so nothing was handed over.
    with pytest.raises(NoDaemon):
        hand_off(path, [request(1)])


def test_a_malformed_exchange_is_dropped_without_harm(server, pipeline):
    for garbage in (b"not a length\n", b"12\nshort", b"-5\nabc", b"9" * 40,
                    b"%d\n" % (MAX + 1) + b"x" * 1000):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(server.path)
        client.sendall(garbage)
        client.shutdown(socket.SHUT_WR)
        assert client.recv(100) == b""  # no answer: the sender hears it failed
        client.close()
    [answer] = hand_off(server.path, [request(5)])
    assert answer["state"] == "processed" and tickets(pipeline) == 1


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path, pipeline, server):
    with pytest.raises(ConfigError, match="another mailhelp daemon listens"):
        IngestServer(server.path, 0o600, pipeline, Turns(), MAX).start()
    stale = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(stale)
    dead.close()  # the file stays, nobody listens: a daemon that was killed
    second = IngestServer(stale, 0o600, pipeline, Turns(), MAX)
    second.start()
    try:
        assert hand_off(stale, [request(6)])[0]["state"] == "processed"
    finally:
        second.stop()
    assert not os.path.exists(stale)
    (tmp_path / "plain").write_text("not a socket")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        IngestServer(str(tmp_path / "plain"), 0o600, pipeline, Turns(), MAX).start()
    with pytest.raises(ConfigError, match="too long for a Unix socket"):
        IngestServer("/tmp/" + "x" * 120, 0o600, pipeline, Turns(), MAX).start()


def test_turns_are_taken_first_come_first_served():
    turn = Turns()
    order = []
    with turn():
        waiters = []
        for n in range(5):
            waiter = threading.Thread(target=lambda n=n: _take(turn, order, n))
            waiter.start()
            waiters.append(waiter)
            time.sleep(0.02)  # each asks after the one before
        order.append("holder")
    for waiter in waiters:
        waiter.join(5)
    assert order == ["holder", 0, 1, 2, 3, 4]


def _take(turn: Turns, order: list, n: int) -> None:
    with turn():
        order.append(n)


def test_ingest_without_a_daemon_does_the_work_itself(tmp_path, database_url):
    config = write_config(tmp_path, database_url, extra=f"""
        [ingest]
        socket = "{tmp_path / 'nobody.sock'}"
        """)
    assert mailhelp(config, "init").returncode == 0
    done = mailhelp(config, "ingest", stdin=request(1))
    assert done.returncode == 0, done.stderr.decode()
    listed = json.loads(mailhelp(config, "tickets", "list", "--json").stdout)
    assert [t["requester"] for t in listed] == ["teacher1@school.test"]


HAND_OFF_AND_LOOK = """
import json, sys
from mailhelp import cli
status = cli.main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
sys.exit(status)
"""


def test_ingest_through_the_socket_loads_no_database_code(tmp_path, server, pipeline,
                                                          database_url):
    config = write_config(tmp_path, database_url, extra=f"""
        [ingest]
        socket = "{server.path}"
        """)
    done = subprocess.run([sys.executable, "-c", HAND_OFF_AND_LOOK, "--config", str(config),
                           "ingest"], input=request(7), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    loaded = set(json.loads(done.stdout))
    assert "mailhelp.service.handoff" in loaded
    assert {"sqlalchemy", "mailhelp.service.pipeline", "mailhelp.mail.parse",
            "jinja2"} & loaded == set()
    assert tickets(pipeline) == 1


def test_ingest_exits_tempfail_when_the_daemon_does_not_answer(tmp_path, database_url):
    path = tmp_path / "mute.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def take_and_drop() -> None:
        connection, _ = listener.accept()
        connection.close()

    threading.Thread(target=take_and_drop, daemon=True).start()
    config = write_config(tmp_path, database_url, extra=f"""
        [ingest]
        socket = "{path}"
        """)
    done = mailhelp(config, "ingest", stdin=request(8))
    listener.close()
    assert done.returncode == 75, done.stderr.decode()
    assert b"the mail server will try again" in done.stderr
    assert done.stderr.count(b"\n") == 1  # one line, no traceback


def test_a_message_too_big_to_hand_over_is_processed_by_ingest(tmp_path, server, pipeline,
                                                                database_url):
    config = write_config(tmp_path, database_url, extra=f"""
        [ingest]
        socket = "{server.path}"
        [limits]
        max_message_size = "1KB"
        """)
    done = mailhelp(config, "ingest", stdin=request(9, "y" * 2000))
    assert done.returncode == 0, done.stderr.decode()
    assert b"action=ingest_alone reason=a message of" in done.stderr
    assert tickets(pipeline) == 1  # same database: the ticket is there all the same


def test_a_socket_this_user_may_not_use_is_told_apart(tmp_path, monkeypatch):
    # (Root passes any permission check, so the refusal is played by a fake.)
    def refuse(self, address):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(NoDaemon, match="cannot connect to .*Permission denied") as caught:
        hand_off(str(tmp_path / "ingest.sock"), [request(10)])
    assert caught.value.expected is False  # ingest logs it as a warning, then works alone


@pytest.mark.parametrize("text, message", [
    ('socket_mode = 660', "as a string"),
    ('socket_mode = "0o660"', "not a file mode"),
    ('socket_mode = "rw-rw----"', "not a file mode"),
])
def test_socket_mode_is_octal_digits(tmp_path, text, message):
    from mailhelp import config as config_module

    with pytest.raises(ConfigError, match=f"ingest.socket_mode: .*{message}"):
        config_module.loads('[helpdesk]\naddress = "help@school.test"\n[ingest]\n' + text)
    loaded = config_module.loads('[helpdesk]\naddress = "h@s.test"\n[ingest]\nsocket_mode = "0640"')
    assert loaded.ingest.socket_mode == 0o640


def test_daemon_needs_a_mailbox_or_a_socket(tmp_path, database_url):
    config = write_config(tmp_path, database_url, extra="""
        [smtp]
        host = "127.0.0.1"
        """)
    assert mailhelp(config, "init").returncode == 0
    done = mailhelp(config, "run")
    assert done.returncode == 2
    assert b"set [ingest] socket" in done.stderr and b"Traceback" not in done.stderr



def test_check_says_whether_a_daemon_takes_piped_mail(tmp_path, server, database_url):
    from mailhelp.check import run_checks

    def ingest_line(socket_path: str) -> str:
        config = desk_config(tmp_path, database_url, f"""
            [ingest]
            socket = "{socket_path}"
            """)
        [result] = [r for r in run_checks(config) if r.name == "ingest"]
        return result.line()

    assert ingest_line(server.path).startswith("ok    ingest     a daemon listens on")
    assert ingest_line(str(tmp_path / "none.sock")).startswith("warn  ingest     no daemon")
    assert ingest_line("/nonexistent/dir/ingest.sock").startswith("FAIL  ingest     ingest.socket")


def test_stopping_removes_only_its_own_socket(tmp_path, pipeline):
    server = IngestServer(str(tmp_path / "shared.sock"), 0o600, pipeline, Turns(), 4_000_000)
    server.start()
    os.unlink(server.path)  # as if gone, and a newer server bound the same path
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.bind(server.path)
    try:
        server.stop()
        assert os.path.exists(server.path)
    finally:
        newer.close()


def test_the_client_opens_a_connection_per_what_one_takes(monkeypatch):
    from mailhelp.service import handoff

    monkeypatch.setattr(handoff, "MAX_MESSAGES", 2)
    monkeypatch.setattr(handoff, "MAX_BYTES", 10)
    messages = [b"a" * 4, b"b" * 4, b"c" * 4, b"d" * 20, b"e"]
    # Two at most, ten bytes at most, and a bigger message on a connection of its own.
    assert [list(group) for group in handoff._connections(messages)] == \
        [[b"a" * 4, b"b" * 4], [b"c" * 4], [b"d" * 20], [b"e"]]
