"""Small tools for tests that drive mailhelp as a user would: a config file and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mailhelp.states import OutboxStatus

ROOT = Path(__file__).resolve().parents[1]
STAFF = ("tech1@school.test", "tech2@school.test")


def desk_config(tmp_path: Path, database_url: str, extra: str = "",
                staff: tuple[str, ...] = ("tech1@school.test",)):
    """A config for in-process tests: this database, attachments under ``tmp_path``, and
    ``extra`` (whole TOML sections) on top."""
    from mailhelp import config as config_module

    addresses = ", ".join(f'"{a}"' for a in staff)
    return config_module.loads(_merge(textwrap.dedent(f"""
        [helpdesk]
        name = "Springfield SD Help Desk"
        address = "help@school.test"
        [database]
        url = "{database_url}"
        [staff]
        addresses = [{addresses}]
        [storage]
        attachments_dir = "{tmp_path / 'att'}"
        """) + _staff_trusted(extra), textwrap.dedent(extra)))


# Staff mail in these tests comes straight into the mailbox, with no receiving server to
# vouch for it: the tests of everything but authenticity take the staff From: line on
# trust, as the desk did before it checked. tests/security and the authenticity tests
# give their own [authentication] section and check the default.
TRUST_STAFF = '[authentication]\nunauthenticated_staff = "trust"\n'


def _staff_trusted(extra: str) -> str:
    return "" if "[authentication]" in extra else TRUST_STAFF


def write_config(tmp_path: Path, database_url: str, mail=None, *, smtp_port: int | None = None,
                 imap_password: str | None = None, extra: str = "") -> Path:
    """A mailhelp.toml for these servers; returns its path."""
    lines = [
        "[helpdesk]",
        'name = "Springfield SD Help Desk"',
        'address = "help@school.test"',
        "[database]",
        f'url = "{database_url}"',
        "[staff]",
        f"addresses = {list(STAFF)!r}".replace("'", '"'),
        "[storage]",
        f'attachments_dir = "{tmp_path / "attachments"}"',
    ]
    if mail is not None:
        password = imap_password if imap_password is not None else mail.users["help@school.test"]
        lines += [
            "[imap]",
            f'host = "{mail.imap_host}"',
            f"port = {mail.imap_port}",
            'security = "none"',
            'username = "help@school.test"',
            f'password = "{password}"',
            'timeout = "10s"',
            "[smtp]",
            f'host = "{mail.smtp_host}"',
            f"port = {smtp_port or mail.smtp_port}",
            'security = "none"',
            'username = "help@school.test"',
            f'password = "{mail.users["help@school.test"]}"',
            'retry_delay = "1s"',
            'timeout = "10s"',
        ]
    text = "\n".join(lines) + "\n" + TRUST_STAFF
    if extra:
        text = _merge(text, extra)
    path = tmp_path / "mailhelp.toml"
    path.write_text(text)
    return path


def _merge(text: str, extra: str) -> str:
    """Put ``key = value`` lines of ``extra`` (under [section] headers) into ``text``."""
    section = None
    out = text.splitlines()
    for line in extra.strip().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
            if section not in out:
                out.append(section)
            continue
        key = line.split("=", 1)[0].strip()
        start = out.index(section) + 1
        end = next((i for i in range(start, len(out)) if out[i].startswith("[")), len(out))
        for i in range(start, end):
            if out[i].split("=", 1)[0].strip() == key:
                out[i] = line
                break
        else:
            out.insert(end, line)
    return "\n".join(out) + "\n"


def mailhelp(config: Path, *args: str, stdin: bytes | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real command line in a fresh process, as a user or cron would."""
    return subprocess.run(
        [sys.executable, "-m", "mailhelp", "--config", str(config), *args],
        input=stdin, capture_output=True, timeout=timeout, cwd=config.parent,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"},
    )


def outbox(desk: str | Path, to: str | None = None) -> list[dict]:
    """The outbox of a desk (its database URL, or its config file), oldest first:
    ``kind``, ``recipients``, ``status`` and ``message_id`` of each row (only rows
    addressed to ``to``, if given). Every mail the desk sends has a row, and a row is
    ``sent`` only once the relay said 250, which our test relay says after the mailbox
    took it: counts of mailbox and outbox agree."""
    import tomllib

    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from mailhelp.db.models import Outbox

    if isinstance(desk, Path):
        desk = tomllib.loads(desk.read_text())["database"]["url"]
    engine = create_engine(desk)
    try:
        with Session(engine) as session:
            rows = [{"kind": row.kind, "recipients": list(row.recipients),
                     "status": OutboxStatus(row.status), "message_id": row.message_id}
                    for row in session.scalars(select(Outbox).order_by(Outbox.id))]
    finally:
        engine.dispose()
    return [row for row in rows if to is None or to in row["recipients"]]


def wait_for_outbox(desk: str | Path, count: int, to: str | None = None,
                    timeout: float = 15) -> list[dict]:
    """Poll until the outbox holds at least ``count`` rows (to ``to``) and no row at all
    is still queued; those rows. The caller asserts the exact count: with the desk idle
    (its pass over, or its daemon stopped) nothing more can be sent after this."""
    deadline = time.monotonic() + timeout
    while True:
        everything = outbox(desk)
        rows = [row for row in everything if to is None or to in row["recipients"]]
        settled = all(row["status"] != OutboxStatus.QUEUED for row in everything)
        if len(rows) >= count and settled:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox after {timeout:.0f} s, waiting for {count} "
                                 f"row(s) to {to or 'anyone'} and none queued: {everything}")
        time.sleep(0.05)


def settled_outbox(desk: str | Path, to: str | None = None) -> list[dict]:
    """The outbox of a desk whose pass is over, asserted to hold no queued row: every
    mail it meant to send is in its mailbox now, and nothing more is coming."""
    return wait_for_outbox(desk, 0, to, timeout=0)


def sent_kinds(rows: list[dict]) -> list[str]:
    """The kinds of the rows, each asserted ``sent``."""
    assert all(row["status"] == OutboxStatus.SENT for row in rows), rows
    return [row["kind"] for row in rows]


class Daemon:
    """``mailhelp run`` in the background; its log is kept for assertions."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = config.parent / "daemon.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailhelp", "--config", str(config), "run"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=config.parent, env=env)

    def wait_for_log(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the daemon's log:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def mail_of(row) -> bytes:
    """An outbox row's mail as the sender sends it (its MIME body is built at sending)."""
    from mailhelp.mail.composer import complete

    return complete(row.raw, row.body_text, row.body_html)
