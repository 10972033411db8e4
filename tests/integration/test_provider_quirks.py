"""Hosted mailboxes behave unlike the test suites' Dovecot (issue 16), and mailhelp
must cope: Exchange Online and Gmail refuse a login when a mailbox has too many
connections (throttling), and older Exchange servers offer no MOVE. A Dovecot of its
own plays such a server here: one connection per user and address, no MOVE."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from mailhelp.localmail import LocalMail, find_dovecot
from mailhelp.localmail._proc import free_port, make_self_signed_cert
from mailhelp.localmail.dovecot import DovecotServer
from mailhelp.localmail.smtp import LmtpDelivery, SmtpRelay
from tests.helpers import Daemon, mailhelp, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
USERS = dict.fromkeys((HELP, "teacher1@school.test", "tech1@school.test",
                       "tech2@school.test"), "secret")
# Dovecot's own list less MOVE, as an IMAP server without RFC 6851 announces itself.
WITHOUT_MOVE = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ UNSELECT "
                "CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED CONDSTORE QRESYNC ESEARCH "
                "SEARCHRES WITHIN LIST-STATUS SPECIAL-USE")


@pytest.fixture(scope="module")
def hosted():
    if find_dovecot() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no Dovecot for the hosted-server tests", pytrace=False)
        pytest.skip("Dovecot is not installed")
    state = Path(tempfile.mkdtemp(prefix="mailhelp-hosted-", dir="/tmp"))
    make_self_signed_cert(state / "tls")
    host = "127.0.0.1"
    dovecot = DovecotServer.create(
        state, USERS, host=host, imap_port=free_port(host), imaps_port=free_port(host),
        cert_file=state / "tls" / "cert.pem", key_file=state / "tls" / "key.pem",
        imap_settings=f"  mail_max_userip_connections = 1\n  imap_capability = {WITHOUT_MOVE}")
    dovecot.start()
    relay = SmtpRelay(USERS, LmtpDelivery(str(dovecot.lmtp_socket)), host=host).start()
    servers = LocalMail({
        "kind": "dovecot", "state_dir": str(state), "imap_host": host,
        "imap_port": dovecot.imap_port, "imaps_port": dovecot.imaps_port,
        "smtp_host": host, "smtp_port": relay.port, "users": USERS,
        "ca_file": str(state / "tls" / "cert.pem"), "lmtp_socket": str(dovecot.lmtp_socket),
        "dovecot_config": str(dovecot.config), "dovecot_runtime_dir": str(dovecot.runtime_dir)})
    try:
        yield servers
    finally:
        relay.stop()
        dovecot.remove()


def request(n: int) -> bytes:
    return (f"From: teacher1@school.test\nTo: {HELP}\nSubject: Beamer {n}\n"
            f"Message-ID: <beamer-{n}@school.test>\n\nNo picture.\n").encode()


def test_without_move_mail_is_filed_by_copy_and_expunge(hosted, tmp_path, database_url):
    hosted.clear_mailboxes()
    client = hosted.imap(HELP)
    try:
        assert not client.has_capability("MOVE") and client.has_capability("UIDPLUS")
    finally:
        client.logout()
    config = write_config(tmp_path, database_url, hosted)
    assert mailhelp(config, "init").returncode == 0
    hosted.deliver(HELP, request(1))
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert hosted.messages(HELP, "INBOX") == []
    assert len(hosted.messages(HELP, "mailhelp/processed")) == 1
    assert len(hosted.wait_for_messages("teacher1@school.test", 1, timeout=10)) == 1


def test_a_login_refused_for_too_many_connections_is_retried(hosted, tmp_path, database_url):
    hosted.clear_mailboxes()
    config = write_config(tmp_path, database_url, hosted)
    assert mailhelp(config, "init").returncode == 0
    hosted.deliver(HELP, request(2))
    held = hosted.imap(HELP)  # another client has the mailbox's only connection
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_disconnected", timeout=20)
        assert "Maximum number of connections" in daemon.output()
        held.logout()
        daemon.wait_for_log("action=imap_connected", timeout=30)
        assert len(hosted.wait_for_messages("teacher1@school.test", 1, timeout=20)) == 1
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert "Traceback" not in daemon.output()
