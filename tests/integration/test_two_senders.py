"""Two senders of one desk at the same moment, as real processes over Dovecot and the
SMTP relay: two ``mailhelp run --once`` (cron beside cron, or beside a daemon) over an
outbox of many rows, and two ``mailhelp ingest`` an MTA runs at once with no daemon
(each sends before it exits). Every row reaches its recipients' INBOX exactly once,
counted there by Message-ID (the relay answers 250 once the mailbox has the mail).
Without the sender lock (delivery/sendlock.py) both processes sent the same rows.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mailhelp.states import OutboxStatus
from tests.helpers import mailhelp, outbox, sent_kinds, settled_outbox, write_config

pytestmark = pytest.mark.integration

TEACHERS = ("teacher1@school.test", "teacher2@school.test")
LIMITS = """
[limits]
auto_mails_per_address = 500
auto_mails_per_address_cap = 500
auto_mails_per_ticket = 500
"""


def requests(directory: Path, prefix: str, count: int) -> list[str]:
    """``count`` separate requests, as files for ``mailhelp ingest``."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for n in range(count):
        teacher = TEACHERS[n % len(TEACHERS)]
        path = directory / f"{prefix}{n}.eml"
        path.write_bytes(f"From: {teacher}\nTo: help@school.test\n"
                         f"Subject: Projector {prefix}{n} is dark\n"
                         f"Message-ID: <{prefix}{n}@school.test>\n\n"
                         f"Room {n}: the projector shows nothing.\n".encode())
        names.append(str(path))
    return names


def config_in(directory: Path, database_url: str, mail=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(directory, database_url, mail, extra=LIMITS)


def start(config: Path, *args: str) -> subprocess.Popen:
    """The real command line, started and not waited for (as helpers.mailhelp runs it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mailhelp", "--config", str(config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=config.parent,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"})


def finish(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, (out + err).decode()


def assert_each_row_delivered_once(mail, database_url: str, rows_expected: int) -> None:
    rows = settled_outbox(database_url)
    assert len(rows) == rows_expected
    sent_kinds(rows)  # every row sent
    expected = Counter((recipient, row["message_id"]) for row in rows
                       for recipient in row["recipients"])
    delivered = Counter((user, email.message_from_bytes(raw)["Message-ID"])
                        for user in {recipient for recipient, _ in expected}
                        for raw in mail.messages(user))
    twice = {key: n for key, n in delivered.items() if n > 1}
    assert twice == {}, f"{len(twice)} mails delivered more than once"
    assert delivered == expected


@pytest.fixture
def desk(mail, database_url, tmp_path) -> Path:
    config = config_in(tmp_path / "desk", database_url, mail)
    done = mailhelp(config, "init")
    assert done.returncode == 0, done.stderr.decode()
    return config


def test_two_run_once_at_the_same_moment_send_each_row_once(mail, desk, database_url,
                                                            tmp_path):
    # The outbox filled by a desk that does not send (no [smtp]): 50 requests, each an
    # acknowledgement and a notification to each of the two technicians.
    queue_only = config_in(tmp_path / "queue-only", database_url)
    done = mailhelp(queue_only, "ingest", *requests(tmp_path / "mail", "r", 50), timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert {row["status"] for row in outbox(database_url)} == {OutboxStatus.QUEUED}
    finish([start(desk, "run", "--once"), start(desk, "run", "--once")])
    assert_each_row_delivered_once(mail, database_url, 150)


def test_two_ingests_at_once_without_a_daemon_send_each_row_once(mail, desk, database_url,
                                                                 tmp_path):
    # An MTA's pipe alias runs one ingest per delivery; with no daemon each processes its
    # own mail, then sends everything due (the other's too) before it exits.
    first = requests(tmp_path / "mail", "a", 25)
    second = requests(tmp_path / "mail", "b", 25)
    finish([start(desk, "ingest", *first), start(desk, "ingest", *second)])
    assert_each_row_delivered_once(mail, database_url, 150)
