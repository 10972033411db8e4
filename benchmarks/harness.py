"""What every benchmark stands on: the mail servers, a sink, configs, databases, processes.

``Bench`` owns a private Dovecot (+ the SMTP relay into it), an in-process SMTP sink
for mailhelp's outgoing mail, and one temporary directory; ``close()`` stops and
removes all of it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .processes import Finished, close_launcher, run_process
from .sink import SmtpSink

HELP = "help@school.test"
STAFF = ("tech1@school.test", "tech2@school.test")
PG_URL = os.environ.get("MAILHELP_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Every acknowledgement and notification must reach the sink: no rate limit may hold one.
NO_RATE_LIMITS = ("auto_mails_per_address = 100000000", "auto_mails_per_ticket = 100000000")


def mailhelp_command() -> list[str]:
    """The installed console script, as an MTA alias or cron would run it."""
    script = Path(sys.executable).with_name("mailhelp")
    if script.exists():
        return [str(script)]
    found = shutil.which("mailhelp")
    return [found] if found else [sys.executable, "-m", "mailhelp"]


def mailhelp(config: Path, *args: str, stdin: bytes | None = None, timeout: float = 900,
             check: bool = True, deadline: float | None = None,
             on_start: Callable[[int], object] | None = None) -> Finished:
    """``mailhelp --config CONFIG ARGS`` in a fresh process."""
    log = config.parent / "mailhelp.out"
    done = run_process([*mailhelp_command(), "--config", str(config), *args],
                       stdin=stdin, timeout=timeout, cwd=config.parent, log=log,
                       deadline=deadline, on_start=on_start)
    if check and done.returncode != 0 and not done.stopped:
        raise RuntimeError(f"mailhelp {' '.join(args)} exited {done.returncode}:\n"
                           + _tail(log))
    return done


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Database:
    """A fresh SQLite file or a fresh PostgreSQL schema; ``drop()`` removes it."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.schema = ""
        if kind == "sqlite":
            self.url = f"sqlite:///{directory / 'mailhelp.db'}"
        else:
            import psycopg

            self.schema = f"bench_{secrets.token_hex(5)}"
            with psycopg.connect(_plain(PG_URL), autocommit=True) as connection:
                connection.execute(f"CREATE SCHEMA {self.schema}")
            self.url = f"{PG_URL}?options=-csearch_path%3D{self.schema}"

    def scalar(self, sql: str):
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql)).scalar()
        finally:
            engine.dispose()

    def drop(self) -> None:
        if self.schema:
            import psycopg

            with psycopg.connect(_plain(PG_URL), autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def pg_available() -> str:
    """'' if the benchmark PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(_plain(PG_URL), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
        return ""
    except Exception as error:  # any reason at all means: skip the PostgreSQL figures
        return f"{type(error).__name__}: {error}".splitlines()[0]


def desk_lines(directory: Path, database_url: str) -> list[str]:
    """The config every benchmark's desk has: its name and address, this database, the
    staff, attachments and log under ``directory``."""
    return ["[helpdesk]", 'name = "Springfield SD Help Desk"', f'address = "{HELP}"',
            "[database]", f'url = "{database_url}"',
            "[staff]", "addresses = [" + ", ".join(f'"{a}"' for a in STAFF) + "]",
            "[storage]", f'attachments_dir = "{directory / "attachments"}"',
            "[log]", f'file = "{directory / "mailhelp.log"}"']


class Bench:
    """Dovecot + relay + sink + a temporary directory, for the whole benchmark session."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep  # leave the directory (configs, logs) for a look afterwards
        self.root = Path(tempfile.mkdtemp(prefix="mailhelp-bench-", dir="/tmp"))
        self.mail = None
        self.sink = None
        self._daemons: list[subprocess.Popen] = []
        self._counter = 0

    def start(self) -> Bench:
        from mailhelp.localmail import LocalMail

        self.mail = LocalMail.start(self.root / "localmail", kind="dovecot")
        self.sink = SmtpSink().start()
        return self

    def close(self) -> None:
        for process in self._daemons:
            stop_daemon(process)
        if self.sink is not None:
            self.sink.stop()
        if self.mail is not None:
            self.mail.stop()
        close_launcher()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Bench:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- per run --------------------------------------------------------------------------

    def workdir(self, name: str) -> Path:
        self._counter += 1
        path = self.root / f"{self._counter:02d}-{name}"
        path.mkdir()
        return path

    def config(self, directory: Path, database_url: str, *, imap: bool = True,
               smtp: bool = True, limits: Sequence[str] = (),
               name: str = "mailhelp.toml", ingest_socket: str = "") -> Path:
        """A mailhelp.toml for these servers; SMTP goes to the sink, without login.

        ``limits``: extra ``key = value`` lines for [limits].
        """
        mail = self.mail
        lines = desk_lines(directory, database_url)
        if imap:
            lines += ["[imap]", f'host = "{mail.imap_host}"', f"port = {mail.imap_port}",
                      'security = "none"', f'username = "{HELP}"',
                      f'password = "{mail.users[HELP]}"', 'timeout = "30s"']
        if smtp:
            lines += ["[smtp]", 'host = "127.0.0.1"', f"port = {self.sink.port}",
                      'security = "none"', 'timeout = "30s"', 'retry_delay = "1s"']
        if ingest_socket:
            lines += ["[ingest]", f'socket = "{ingest_socket}"', 'socket_mode = "0600"']
        lines += ["[limits]", *NO_RATE_LIMITS, *limits]
        text = "\n".join(lines) + "\n"
        path = directory / name
        path.write_text(text)
        return path

    def reset_help_mailbox(self, keep: Sequence[str] = ()) -> None:
        """Empty help@'s INBOX and remove mailhelp's folders (``keep``: folders left alone)."""
        client = self.mail.imap(HELP)
        try:
            for _flags, _delim, name in client.list_folders():
                if name == "INBOX" or name in keep or any(name.startswith(k + "/")
                                                          for k in keep):
                    continue
                if name.startswith("mailhelp"):
                    with contextlib.suppress(Exception):
                        client.delete_folder(name)
            client.select_folder("INBOX")
            uids = client.search("ALL")
            if uids:
                client.delete_messages(uids)
                client.expunge()
        finally:
            client.logout()

    def start_daemon(self, config: Path, timeout: float = 30,
                     ready: str = "action=imap_connected") -> subprocess.Popen:
        log = config.parent / "daemon.out"
        process = subprocess.Popen([*mailhelp_command(), "--config", str(config), "run"],
                                   stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                   cwd=config.parent)
        self._daemons.append(process)
        log_file = config.parent / "mailhelp.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log_file.exists() and ready in log_file.read_text():
                return process
            if process.poll() is not None:
                raise RuntimeError(f"daemon exited {process.returncode}:\n{_tail(log)}")
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not connect within {timeout} s:\n{_tail(log_file)}")

    def stop_daemon(self, process: subprocess.Popen) -> int:
        if process in self._daemons:
            self._daemons.remove(process)
        return stop_daemon(process)


def stop_daemon(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()
    return process.returncode


class SmtpClient:
    """A persistent smtplib connection to the relay; ``send`` returns when DATA is answered."""

    def __init__(self, host: str, port: int) -> None:
        import smtplib

        self.client = smtplib.SMTP(host, port, local_hostname="bench.test", timeout=30)
        self.client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.ehlo()

    def send(self, mail_from: str, rcpt: str, raw: bytes) -> float:
        """Deliver; return the monotonic time the server's answer to DATA came back."""
        self.client.sendmail(mail_from, [rcpt], raw)
        return time.monotonic()

    def close(self) -> None:
        import smtplib

        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()


# -- small statistics ---------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
