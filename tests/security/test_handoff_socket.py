"""Finding 8, the hand-off socket: an ingest gave a teacher's mail to whoever had bound
the socket's name first (a process of ``nobody`` in a 1777 directory) and exited 0; and
the daemon read a whole connection's messages before processing any (40 x 20 MB held at
once). Now the ingest asks the kernel who listens and works alone if it is someone
else, and the daemon processes each message as it arrives, within a connection's caps."""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import socket
import tempfile
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from mailhelp.db.migrate import upgrade
from mailhelp.db.session import Database
from mailhelp.service import handoff, handoff_server
from mailhelp.service.handoff import NoDaemon, hand_off
from mailhelp.service.handoff_server import IngestServer, Turns
from mailhelp.service.pipeline import Pipeline
from tests.helpers import desk_config, mailhelp, write_config

WAIT = 10.0  # seconds any one step may take before the test fails
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def request(n: int) -> bytes:
    return (f"From: Teacher {n} <teacher{n}@school.test>\nTo: help@school.test\n"
            f"Subject: Projector in room {n}\nMessage-ID: <sock-{n}@school.test>\n\n"
            "The projector does not turn on.\n").encode()


def read_line(descriptor: int) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        assert select.select([descriptor], [], [], WAIT)[0], f"nothing after {line!r}"
        chunk = os.read(descriptor, 1)
        assert chunk, f"closed after {line!r}"
        line += chunk
    return line


class Squatter:
    """A process of user ``nobody`` listening at ``path`` before any daemon: it reports
    how many bytes each connection brought it."""

    def __init__(self, path: str) -> None:
        ready, self._ready = os.pipe()
        self._reports, report = os.pipe()
        with warnings.catch_warnings():  # Python 3.12 warns of fork with threads about
            warnings.simplefilter("ignore", DeprecationWarning)
            self.pid = os.fork()
        if self.pid == 0:
            os.close(ready)
            self._listen(path, report)
        os.close(self._ready)
        os.close(report)
        assert read_line(ready) == b"listening\n"
        os.close(ready)

    def _listen(self, path: str, report: int) -> None:
        try:
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen()
            os.write(self._ready, b"listening\n")
            while True:
                connection, _ = listener.accept()
                connection.settimeout(60)
                received = 0
                while chunk := connection.recv(1 << 16):
                    received += len(chunk)
                os.write(report, b"%d\n" % received)
                connection.close()
        finally:
            os._exit(0)

    def received(self) -> int:
        """Bytes the next connection brought, once the client has closed it."""
        return int(read_line(self._reports))

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._reports)


@pytest.fixture
def squatted() -> Iterator[tuple[str, Squatter]]:
    if os.getuid() != 0:
        pytest.skip("playing another user needs root")
    shared = tempfile.mkdtemp(dir="/tmp")  # pytest's tmp_path is root's alone
    os.chmod(shared, 0o1777)  # like /tmp: anyone may make a name there
    path = os.path.join(shared, "ingest.sock")
    squatter = Squatter(path)
    try:
        yield path, squatter
    finally:
        squatter.stop()
        shutil.rmtree(shared)


def test_a_socket_of_another_user_is_not_handed_anything(squatted):
    path, squatter = squatted
    with pytest.raises(NoDaemon, match=r"served by user id 65534") as caught:
        hand_off(path, [request(1)])
    assert caught.value.expected is False  # logged as a warning
    assert squatter.received() == 0


def test_ingest_works_alone_when_someone_else_listens(squatted, tmp_path, database_url):
    path, squatter = squatted
    config = write_config(tmp_path, database_url, extra=f"""
        [ingest]
        socket = "{path}"
        """)
    assert mailhelp(config, "init").returncode == 0
    done = mailhelp(config, "ingest", stdin=request(2))
    assert done.returncode == 0, done.stderr.decode()
    assert b"WARNING" in done.stderr and b"served by user id 65534" in done.stderr
    assert squatter.received() == 0
    listed = json.loads(mailhelp(config, "tickets", "list", "--json").stdout)
    assert [t["requester"] for t in listed] == ["teacher2@school.test"]


def test_check_names_a_socket_someone_else_listens_on(squatted, tmp_path, database_url):
    path, squatter = squatted
    config = write_config(tmp_path, database_url, extra=f'[ingest]\nsocket = "{path}"\n')
    done = mailhelp(config, "check")
    [line] = [line for line in done.stdout.decode().splitlines() if " ingest " in line]
    assert line.startswith("FAIL") and "user id 65534" in line
    assert squatter.received() == 0


@pytest.fixture
def server(tmp_path, database_url) -> Iterator[IngestServer]:
    db = Database(database_url)
    upgrade(db)
    pipeline = Pipeline(desk_config(tmp_path, database_url), db, lambda: NOW)
    listening = IngestServer(str(tmp_path / "ingest.sock"), 0o600, pipeline, Turns(),
                             4_000_000)
    listening.start()
    yield listening
    listening.stop()
    db.dispose()


def connect(server: IngestServer) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(WAIT)
    client.connect(server.path)
    return client


def answer_line(client: socket.socket) -> dict:
    line = b""
    while not line.endswith(b"\n"):
        chunk = client.recv(1)
        assert chunk, f"the connection ended after {line!r}"
        line += chunk
    return json.loads(line)


def test_each_message_is_processed_as_it_arrives(server):
    # The client has not ended its side: a daemon that waits for the end answers nothing.
    with connect(server) as client:
        for n in (1, 2):
            raw = request(n)
            client.sendall(b"%d\n" % len(raw) + raw)
            answer = answer_line(client)
            assert answer["state"] == "processed" and answer["ticket"] == n


def test_a_connection_is_capped_and_the_client_opens_more(server, monkeypatch):
    monkeypatch.setattr(handoff_server, "MAX_MESSAGES", 3)
    with connect(server) as client:
        for n in range(1, 5):
            raw = request(n)
            client.sendall(b"%d\n" % len(raw) + raw)
        client.shutdown(socket.SHUT_WR)
        taken = [answer_line(client)["ticket"] for _ in range(3)]
        assert client.recv(100) == b""  # the fourth is refused: the connection ends
    assert taken == [1, 2, 3]
    monkeypatch.setattr(handoff, "MAX_MESSAGES", 3)
    answers = hand_off(server.path, [request(n) for n in range(4, 11)])
    assert [a["ticket"] for a in answers] == [4, 5, 6, 7, 8, 9, 10]


def test_a_message_too_big_is_refused_at_its_length_line(server):
    with connect(server) as client:
        client.sendall(b"%d\n" % (server.max_size + 1))  # and not one byte of it
        assert client.recv(100) == b""
