"""Fixtures shared by every test: a fresh database, and the real mail servers.

The database is SQLite unless MAILHELP_TEST_DATABASE names a PostgreSQL URL; each
test gets its own schema there. The mail servers are the ones scripts/testservers
started (CI) or, where Dovecot is installed, ones this session starts itself.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.security.desk import make_desk  # noqa: F401 (a desk on the test database)
from tests.servers import mail, mail_servers_session, server_skip_report  # noqa: F401

PG_URL = os.environ.get("MAILHELP_TEST_DATABASE", "")


@contextmanager
def database_at(folder: Path) -> Iterator[str]:
    """A fresh database's URL: a SQLite file in ``folder``, or on PostgreSQL a schema of
    its own, dropped afterwards."""
    if not PG_URL or PG_URL == "sqlite":
        yield f"sqlite:///{folder / 'mailhelp.db'}"
        return
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with database_at(tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory) -> Iterator[str]:
    """One database for a module's tests (those that share a desk)."""
    with database_at(tmp_path_factory.mktemp("db")) as url:
        yield url


def pytest_report_header(config) -> str:
    return f"mailhelp database under test: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite'}"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = server_skip_report(terminalreporter.stats)
    if report:
        terminalreporter.write_line("")
        terminalreporter.write_line(report, yellow=True, bold=True)
