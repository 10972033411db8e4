"""The local mail servers (mailhelp.localmail) against real clients: imapclient, aiosmtplib."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailhelp.localmail import LocalMail, find_dovecot, free_port

pytestmark = pytest.mark.integration

INSTALL_HINT = "apt-get install -y dovecot-imapd dovecot-lmtpd"
REPO = Path(__file__).resolve().parents[2]


def require_dovecot() -> None:
    if find_dovecot() is None:
        reason = f"dovecot is not installed ({INSTALL_HINT})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must install it")
        pytest.skip(reason)


@pytest.fixture(scope="module", params=["dovecot", "pymap"])
def servers_module(request: pytest.FixtureRequest) -> Iterator[LocalMail]:
    if request.param == "dovecot":
        require_dovecot()
    servers = LocalMail.start(kind=request.param)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def servers(servers_module: LocalMail) -> LocalMail:
    """Running servers of each kind, every mailbox empty."""
    servers_module.clear_mailboxes()
    return servers_module


def message(to: str, subject: str = "Printer in room 12 is jammed") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "parent@example.org"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("It jams on every second page.\n")
    return msg


def send(servers: LocalMail, msg: EmailMessage, **kwargs: Any) -> tuple[dict[str, Any], str]:
    """aiosmtplib.send to the relay; returns (refused recipients, server reply)."""
    return asyncio.run(
        aiosmtplib.send(
            msg, hostname=servers.smtp_host, port=servers.smtp_port, timeout=20, **kwargs
        )
    )


def connect(servers: LocalMail, security: str = "plain") -> IMAPClient:
    if security == "ssl":
        assert servers.imaps_port is not None
        return IMAPClient(
            servers.imap_host,
            servers.imaps_port,
            ssl=True,
            ssl_context=servers.ssl_context(),
            timeout=10,
        )
    client = IMAPClient(servers.imap_host, servers.imap_port, ssl=False, timeout=10)
    if security == "starttls":
        client.starttls(servers.ssl_context())
    return client


def logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, OSError):
        client.shutdown()


# -- IMAP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("servers_module", ["dovecot"], indirect=True)
@pytest.mark.parametrize("security", ["plain", "starttls", "ssl"])
def test_dovecot_login(servers: LocalMail, security: str) -> None:
    client = connect(servers, security)
    try:
        if security == "plain":
            assert b"STARTTLS" in client.capabilities()
        client.login("teacher1@school.test", "secret")
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        logout(client)


def test_wrong_password_fails_fast(servers: LocalMail) -> None:
    client = connect(servers)
    try:
        t0 = time.monotonic()
        with pytest.raises(LoginError):
            client.login("teacher1@school.test", "wrong")
        assert time.monotonic() - t0 < 1.0  # no auth penalty delay
        client.login("teacher1@school.test", "secret")
    finally:
        logout(client)


def test_imap_commands_the_client_uses(servers: LocalMail) -> None:
    """LOGIN, SELECT, APPEND, UID SEARCH, UID FETCH BODY.PEEK[], CREATE, MOVE, EXPUNGE."""
    client = servers.imap("help@school.test")
    try:
        assert {b"IDLE", b"MOVE", b"UIDPLUS"} <= set(client.capabilities())
        client.append("INBOX", message("help@school.test").as_bytes())
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1 and b"UIDVALIDITY" in info and b"UIDNEXT" in info
        uids = client.search(["UID", "1:*"])
        assert len(uids) == 1
        body = client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
        assert b"Printer in room 12" in body
        assert b"\\Seen" not in client.get_flags(uids)[uids[0]]
        client.create_folder("Tickets/Open")
        client.move(uids, "Tickets/Open")
        assert client.search("ALL") == []
        assert client.select_folder("Tickets/Open")[b"EXISTS"] == 1
    finally:
        logout(client)


# -- SMTP ----------------------------------------------------------------------------------


def test_smtp_delivers_into_inbox(servers: LocalMail) -> None:
    errors, _reply = send(servers, message("teacher1@school.test"))
    assert errors == {}
    [raw] = servers.wait_for_messages("teacher1@school.test")
    assert b"Subject: Printer in room 12 is jammed" in raw
    assert b"Received: from" in raw and b"Delivered-To: teacher1@school.test" in raw
    assert servers.messages("help@school.test") == []


@pytest.mark.parametrize("rcpt", ["nobody@school.test", "someone@example.com"])
def test_smtp_rejects_unknown_and_foreign_recipients(servers: LocalMail, rcpt: str) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as exc_info:
        send(servers, message(rcpt))
    assert [r.code for r in exc_info.value.recipients] == [550]


def test_smtp_partial_rejection_delivers_the_rest(servers: LocalMail) -> None:
    errors, _reply = send(
        servers,
        message("tech1@school.test"),
        recipients=["tech1@school.test", "ghost@school.test"],
    )
    assert errors["ghost@school.test"].code == 550
    servers.wait_for_messages("tech1@school.test")


def test_smtp_auth_is_optional_but_checked(servers: LocalMail) -> None:
    send(servers, message("tech2@school.test"), username="help@school.test", password="secret")
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as exc_info:
        send(servers, message("tech2@school.test"), username="help@school.test", password="bad")
    assert exc_info.value.code == 535
    assert len(servers.wait_for_messages("tech2@school.test")) == 1


def test_in_process_smtp_relay_on_a_dead_port(servers: LocalMail) -> None:
    """SMTP down (nothing listens), then up on the same port, then down again."""
    port = free_port()
    msg = message("teacher2@school.test")

    async def send_to_port() -> None:
        await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, timeout=10)

    with pytest.raises(aiosmtplib.SMTPConnectError):
        asyncio.run(send_to_port())
    relay = servers.smtp_relay(port=port)
    with relay:
        assert relay.port == port
        asyncio.run(send_to_port())
        servers.wait_for_messages("teacher2@school.test")
    with pytest.raises(aiosmtplib.SMTPConnectError):
        asyncio.run(send_to_port())
    with servers.smtp_relay(port=port):  # the port can be reused at once
        asyncio.run(send_to_port())
    assert len(servers.wait_for_messages("teacher2@school.test", count=2)) == 2


# -- IDLE ----------------------------------------------------------------------------------


def test_idle_notification_after_smtp_delivery(servers: LocalMail) -> None:
    client = servers.imap("help@school.test")
    try:
        client.select_folder("INBOX")
        client.idle()
        t0 = time.monotonic()
        send(servers, message("help@school.test"))
        t_sent = time.monotonic()
        responses: list = []
        while not any(r[1:2] == (b"EXISTS",) for r in responses):
            assert time.monotonic() - t0 < 10, f"no EXISTS after 10 s: {responses}"
            responses += client.idle_check(timeout=1)
        t_notified = time.monotonic()
        client.idle_done()
    finally:
        logout(client)
    print(
        f"\n{servers.kind}: SMTP send {t_sent - t0:.3f} s, IDLE EXISTS "
        f"{t_notified - t_sent:.3f} s after the 250 ({t_notified - t0:.3f} s in all)"
    )
    assert t_notified - t0 < 3.0


# -- lifecycle -----------------------------------------------------------------------------


def test_restart_imap(servers: LocalMail) -> None:
    servers.deliver("teacher1@school.test", message("teacher1@school.test").as_bytes())
    idler = servers.imap("teacher1@school.test")
    try:
        idler.select_folder("INBOX")
        idler.idle()
        took = servers.restart_imap()
        # The old connection is gone: BYE or EOF raise, but never a hang.
        with pytest.raises((IMAPClientError, OSError)):
            idler.idle_done()
            idler.noop()
    finally:
        idler.shutdown()
    print(f"\n{servers.kind}: restart_imap took {took:.2f} s")
    client = servers.imap("teacher1@school.test")  # same port, logins work again
    logout(client)
    expected = 1 if servers.kind == "dovecot" else 0  # pymap keeps mail in memory only
    assert len(servers.messages("teacher1@school.test")) == expected
    send(servers, message("teacher1@school.test"))  # SMTP delivers to the new process
    servers.wait_for_messages("teacher1@school.test", count=expected + 1)


def test_clear_mailboxes(servers: LocalMail) -> None:
    client = servers.imap("help@school.test")
    try:
        client.create_folder("Tickets/Open")
        client.create_folder("Archive")
        client.subscribe_folder("Archive")
        client.append("Tickets/Open", message("help@school.test").as_bytes())
    finally:
        logout(client)
    for user in ("help@school.test", "tech1@school.test"):
        servers.deliver(user, message(user).as_bytes())
    servers.clear_mailboxes()
    client = servers.imap("help@school.test")
    try:
        assert [name for _f, _d, name in client.list_folders()] == ["INBOX"]
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        logout(client)
    assert servers.messages("tech1@school.test") == []


def test_clear_mailboxes_keeping_folders(servers: LocalMail) -> None:
    client = servers.imap("help@school.test")
    try:
        client.create_folder("Processed")
        client.append("Processed", message("help@school.test").as_bytes())
        client.append("INBOX", message("help@school.test").as_bytes())
    finally:
        logout(client)
    servers.clear_mailboxes(keep_folders=True)
    assert servers.messages("help@school.test", "Processed") == []
    assert servers.messages("help@school.test") == []


def test_cli_start_attach_restart_stop(tmp_path: Path) -> None:
    """What CI does: start in the background, attach from here, restart, stop."""
    kind = "dovecot" if find_dovecot() else "pymap"
    state = tmp_path / "servers"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mailhelp.localmail", *args, "--state-dir", str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    started = cli("start", "--kind", kind)
    assert started.returncode == 0, started.stderr
    try:
        servers = LocalMail.attach(state)
        assert servers.kind == kind and servers.status() == {"imap": True, "smtp": True}
        assert cli("status", "--quiet").returncode == 0
        send(servers, message("teacher1@school.test"))
        servers.wait_for_messages("teacher1@school.test")
        servers.clear_mailboxes()
        assert servers.messages("teacher1@school.test") == []
        servers.restart_imap()  # from this process, on servers another process started
        assert servers.status()["imap"]
        restarted = cli("restart")
        assert restarted.returncode == 0, restarted.stderr
        send(servers, message("teacher1@school.test"))
        servers.wait_for_messages("teacher1@school.test")
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert cli("status").returncode != 0
    for port in (servers.imap_port, servers.imaps_port, servers.smtp_port):
        if port:
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
                pass
