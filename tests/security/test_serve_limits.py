"""Finding 8, ``mailhelp serve``: 250 connections that sent nothing made the survey site
answer 503 to everyone (uvicorn waits for ever for a request's head, and counts every
open connection against one limit). Now a client has a few seconds to send its request
line and headers, and one address may hold only so many connections at once; the
reverse proxy's address (127.0.0.1 unless FORWARDED_ALLOW_IPS says) is not capped."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest

from mailhelp.app import App
from mailhelp.db.session import Database
from mailhelp.web import site as web
from mailhelp.web.guard import PER_CLIENT, Limits, client_key, proxies
from tests.helpers import desk_config

WAIT = 10.0  # seconds any one step may take before the test fails
ATTACKER, VISITOR = "127.0.0.2", "127.0.0.3"  # loopback answers for all of 127/8
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: help.school.test\r\n\r\n"


class Site:
    def __init__(self, tmp_path, database_url, limits: Limits) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        config = desk_config(tmp_path, database_url, """
            [survey]
            base_url = "https://help.school.test/survey"
            secret = "correct horse battery staple"
            """)
        self.db = Database(database_url)
        self.server = web.server(App(config, self.db, lambda: datetime.now(UTC)), limits)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.listener]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "no site"
            time.sleep(0.01)

    def connect(self, source: str) -> socket.socket:
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.settimeout(WAIT)
        client.bind((source, 0))
        client.connect(("127.0.0.1", self.port))
        return client

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        self.listener.close()
        self.db.dispose()


@pytest.fixture
def site(tmp_path, database_url, request) -> Iterator[Site]:
    running = Site(tmp_path, database_url, request.param)
    yield running
    running.stop()


def quick(**limits) -> Limits:
    return Limits(**{"head_timeout": 0.5, **limits})


def closed_by_server(client: socket.socket) -> bool:
    """Whether the server ends the connection (within WAIT) without a response."""
    try:
        return client.recv(100) == b""
    except ConnectionResetError:
        return True


def status_of(client: socket.socket) -> int:
    """The status of a /healthz asked on ``client``, its response read to the end."""
    client.sendall(HEALTH)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = client.recv(4096)
        assert chunk, f"closed after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = client.recv(4096)
        assert chunk, f"closed after {received!r}"
        body += chunk
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize("site", [quick()], indirect=True)
@pytest.mark.parametrize("sent", [b"", b"GET /heal", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
def test_a_connection_without_a_whole_request_head_is_dropped(site, sent):
    with site.connect(VISITOR) as client:
        client.sendall(sent)
        assert closed_by_server(client)


@pytest.mark.parametrize("site", [quick()], indirect=True)
def test_a_kept_connection_must_send_its_next_request_in_time_too(site):
    with site.connect(VISITOR) as client:
        assert status_of(client) == 200
        client.sendall(b"GET /hea")  # and then nothing more
        assert closed_by_server(client)


@pytest.mark.parametrize("site", [Limits(head_timeout=60)], indirect=True)
def test_many_silent_connections_from_one_client_do_not_lock_out_others(site):
    with ExitStack() as held:
        for _ in range(250):
            held.enter_context(site.connect(ATTACKER))
        # Over the cap: closed as they come, while the ones held stay open.
        with site.connect(ATTACKER) as one_too_many:
            assert closed_by_server(one_too_many)
        with site.connect(VISITOR) as visitor:
            assert status_of(visitor) == 200
        # The reverse proxy brings everyone: not capped.
        proxied = [held.enter_context(site.connect("127.0.0.1"))
                   for _ in range(PER_CLIENT + 5)]
        assert status_of(proxied[-1]) == 200


def test_clients_are_counted_by_address_and_ipv6_by_64():
    assert client_key(("192.0.2.7", 5000)) == "192.0.2.7"
    assert client_key(("::ffff:192.0.2.7", 5000, 0, 0)) == "192.0.2.7"
    assert client_key(("2001:db8:1:2:aaaa::1", 5000, 0, 0)) == \
        client_key(("2001:db8:1:2:bbbb::9", 5000, 0, 0)) == "2001:db8:1:2::/64"


def test_the_proxies_are_uvicorns_forwarded_allow_ips():
    assert [str(n) for n in proxies("127.0.0.1, ::1,10.0.0.0/8")] == \
        ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]
    assert proxies("*") == ()  # anyone may say whom it forwards for: no one is exempt
