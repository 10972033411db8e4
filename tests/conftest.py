"""Fixtures shared by every test: a fresh database, and the real mail servers.

The database is SQLite unless MAILHELP_TEST_DATABASE names a PostgreSQL URL; each
test gets its own schema there. The mail servers are the ones scripts/testservers
started (CI) or, where Dovecot is installed, ones this session starts itself.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.desk import make_desk  # noqa: F401 (a desk on the test database)
from tests.servers import mail, mail_servers_session, server_skip_report  # noqa: F401

PG_URL = os.environ.get("MAILHELP_TEST_DATABASE", "")


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    if not PG_URL or PG_URL == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailhelp.db'}"
        return
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


def pytest_report_header(config) -> str:
    return f"mailhelp database under test: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite'}"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = server_skip_report(terminalreporter.stats)
    if report:
        terminalreporter.write_line("")
        terminalreporter.write_line(report, yellow=True, bold=True)
