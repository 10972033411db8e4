"""Hosted mailboxes behave unlike the test suites' Dovecot (issue 16), and mailhelp
must cope: Exchange Online and Gmail refuse a login when a mailbox has too many
connections (throttling), and older Exchange servers offer no MOVE. A Dovecot of its
own plays such a server here: one connection per user and address, no MOVE."""

from __future__ import annotations

import pytest

from tests.helpers import Daemon, mailhelp, write_config
from tests.servers import own_servers

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
    settings = f"  mail_max_userip_connections = 1\n  imap_capability = {WITHOUT_MOVE}"
    with own_servers(USERS, "hosted-server tests", imap_settings=settings) as servers:
        yield servers


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
