"""The real mail servers for integration tests.

In CI, .ci/run starts Dovecot and the SMTP relay with scripts/testservers and the
tests attach to them; on a developer's machine with Dovecot installed, the test
session starts its own. Without Dovecot, integration tests are skipped, loudly,
except in CI (CI=true), where a missing server is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

STATE_DIR = Path(os.environ.get("MAILHELP_TEST_SERVERS", "/tmp/mailhelp-testservers"))
IN_CI = os.environ.get("CI") == "true"
_skipped: list[str] = []


def _attach_or_start():
    from mailhelp.localmail import LocalMail, LocalMailError, find_dovecot

    if (STATE_DIR / "servers.json").exists():
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
        reason = ("Dovecot is not installed: integration tests against real IMAP/SMTP "
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


def server_skip_report() -> str:
    return _skipped[0] if _skipped else ""
