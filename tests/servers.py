"""The real mail servers for integration tests.

In CI, .ci/run starts Dovecot and the SMTP relay with scripts/testservers and the
tests attach to them; on a developer's machine with Dovecot installed, the test
session starts its own. Without Dovecot, integration tests are skipped, loudly,
except in CI (CI=true), where a missing server is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STATE_DIR = Path(os.environ.get("MAILHELP_TEST_SERVERS", "/tmp/mailhelp-testservers"))
IN_CI = os.environ.get("CI") == "true"
_skipped: list[str] = []
SKIP_MARK = "Dovecot is not installed"


def _attach_or_start():
    from mailhelp.localmail import LocalMail, LocalMailError, find_dovecot

    # Under pytest-xdist each worker empties the mailboxes before its tests: the first
    # worker takes the servers scripts/testservers started, the others start their own.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if worker == "gw0" and (STATE_DIR / "servers.json").exists():
        servers = LocalMail.attach(STATE_DIR)
        if all(servers.status().values()):
            return servers, False
        if IN_CI:
            raise LocalMailError(f"servers in {STATE_DIR} are not all running: "
                                 f"{servers.status()}")
    if find_dovecot() is None:
        return None, False
    return LocalMail.start(kind="dovecot"), True


@pytest.fixture(scope="session")
def mail_servers_session() -> Iterator:
    servers, owned = _attach_or_start()
    if servers is None:
        reason = (SKIP_MARK + ": integration tests against real IMAP/SMTP "
                  "servers were skipped. Run them with: sudo apt-get install dovecot-imapd "
                  "dovecot-lmtpd && pytest   (or: bash .ci/run)")
        if IN_CI:
            pytest.fail("CI=true but no Dovecot: " + reason, pytrace=False)
        _skipped.append(reason)
        pytest.skip(reason)
    yield servers
    if owned:
        servers.stop()


@pytest.fixture
def mail(mail_servers_session):
    """The servers, with every mailbox emptied before the test."""
    mail_servers_session.clear_mailboxes()
    return mail_servers_session


def server_skip_report(stats: dict | None = None) -> str:
    """The reason the server tests were skipped, once: from this process, or from the
    skipped reports of pytest-xdist's workers."""
    if _skipped:
        return _skipped[0]
    for report in (stats or {}).get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        if SKIP_MARK in str(reason):
            return str(reason).removeprefix("Skipped: ")
    return ""


@contextmanager
def own_servers(users: dict[str, str], purpose: str, relay_options: dict | None = None,
                **dovecot_options) -> Iterator:
    """A Dovecot and an SMTP relay of a test module's own, set up otherwise than the
    shared ones (``dovecot_options``: DovecotServer.create's, ``relay_options``:
    SmtpRelay's); the LocalMail that reaches them. Without Dovecot: skipped, and a
    failure in CI."""
    import tempfile

    from mailhelp.localmail import LocalMail, find_dovecot
    from mailhelp.localmail._proc import free_port, make_self_signed_cert
    from mailhelp.localmail.dovecot import DovecotServer
    from mailhelp.localmail.smtp import LmtpDelivery, SmtpRelay

    if find_dovecot() is None:
        if IN_CI:
            pytest.fail(f"CI=true but no Dovecot for the {purpose}", pytrace=False)
        pytest.skip("Dovecot is not installed")
    state = Path(tempfile.mkdtemp(prefix="mailhelp-own-", dir="/tmp"))
    make_self_signed_cert(state / "tls")
    host = "127.0.0.1"
    dovecot = DovecotServer.create(
        state, users, host=host, imap_port=free_port(host), imaps_port=free_port(host),
        cert_file=state / "tls" / "cert.pem", key_file=state / "tls" / "key.pem",
        **dovecot_options)
    dovecot.start()
    relay = SmtpRelay(users, LmtpDelivery(str(dovecot.lmtp_socket)), host=host,
                      **(relay_options or {})).start()
    try:
        yield LocalMail({
            "kind": "dovecot", "state_dir": str(state), "imap_host": host,
            "imap_port": dovecot.imap_port, "imaps_port": dovecot.imaps_port,
            "smtp_host": host, "smtp_port": relay.port, "users": users,
            "ca_file": str(state / "tls" / "cert.pem"),
            "lmtp_socket": str(dovecot.lmtp_socket), "dovecot_config": str(dovecot.config),
            "dovecot_runtime_dir": str(dovecot.runtime_dir)})
    finally:
        relay.stop()
        dovecot.remove()
