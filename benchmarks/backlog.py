"""Benchmark 2 (and 4a): a backlog in the help mailbox, taken by ``mailhelp run --once``.

N messages wait in help@'s INBOX (copied from a source folder filled once by APPEND
in one connection, so every run sees the same UIDs in the same order); ``run --once``
is started until the INBOX is empty. The clock runs from the first start to the
moment the last process exited with every acknowledgement and notification at the
sink. Counts are checked against what the generator says each message must cause.
With a deadline, a run still busy then is interrupted and the figure covers the
messages it had finished (see ``one_run``).

Ceilings of the same run: a bare imapclient loop fetching the same INBOX (BODY.PEEK[],
batches of 200), and a bare aiosmtplib loop sending as many mails of the same mean size
over as many connections to the same sink.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .harness import HELP, Bench, Database, mailhelp
from .processes import run_process
from .teachermail import ATTACHMENT, NEW, TeacherMail

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "bench-backlog"
BATCH = 200
SMTP_CONNECTIONS = 2  # mailhelp's default [smtp] connections
MAX_PASSES = 5
# The send ceiling is a rate: a few thousand mails measure it as well as all of them.
SEND_CEILING_MAILS = 6000


@dataclass(frozen=True)
class Backlog:
    messages: int
    bytes: int
    fill_seconds: float
    kinds: tuple[str, ...]  # per message, in order
    expected: tuple[int, ...]  # mails each message must cause

    @property
    def expected_mails(self) -> int:
        return sum(self.expected)


@dataclass
class Run:
    database: str
    seconds: float
    rate: float
    max_rss: int
    passes: int
    fetch_rate: float
    send_rate: float  # messages' worth of mail per second (mails / mails per message)
    mails: int
    problems: list[str] = field(default_factory=list)
    stopped: bool = False  # interrupted at the deadline: ``processed`` of the backlog
    processed: int = 0
    processing_rate: float = 0.0  # messages per second until the last one was committed
    sending_rate: float = 0.0  # mails per second from the first mail to the last
    send_ceiling: float = 0.0  # mails per second of the bare aiosmtplib loop


def prepare(bench: Bench, count: int, seed: int = 2026) -> Backlog:
    """Generate the backlog and APPEND it, in order, to a folder the runs copy from."""
    generator = TeacherMail(seed)
    messages = list(generator.messages(count))
    client = bench.mail.imap(HELP)
    started = time.perf_counter()
    try:
        if client.folder_exists(SOURCE):
            client.delete_folder(SOURCE)
        client.create_folder(SOURCE)
        for message in messages:
            client.append(SOURCE, message.raw)
    finally:
        client.logout()
    return Backlog(count, sum(len(m.raw) for m in messages), time.perf_counter() - started,
                   tuple(m.kind for m in messages), tuple(m.expected_mails for m in messages))


def _fill_inbox(bench: Bench) -> None:
    bench.reset_help_mailbox(keep=[SOURCE])
    client = bench.mail.imap(HELP)
    try:
        client.select_folder(SOURCE, readonly=True)
        uids = sorted(client.search("ALL"))
        client.copy(uids, "INBOX")  # Dovecot hard-links: cheap, and keeps the order
    finally:
        client.logout()


def _inbox_count(bench: Bench) -> int:
    client = bench.mail.imap(HELP)
    try:
        return int(client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"])
    finally:
        client.logout()


def _ceiling(*args: str) -> dict:
    done = run_process([sys.executable, "-m", "benchmarks.ceilings", *args], timeout=600,
                       cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"ceiling {args[0]} failed:\n{done.output}")
    return json.loads(done.output.strip().splitlines()[-1])


def one_run(bench: Bench, backlog: Backlog, database: str, *, deadline: float | None = None,
            profile: str = "") -> Run:
    """Fill, measure the fetch ceiling, run mailhelp, check, measure the send ceiling.

    ``deadline``: seconds after which ``run --once`` is interrupted (SIGINT). What it had
    committed by then (the first ``processed`` messages, in UID order) is then finished
    by a ``run --once`` without [imap], which only sends the outbox, and the figure is
    end to end over that prefix. ``profile``: py-spy raw output file.
    """
    mail, sink = bench.mail, bench.sink
    _fill_inbox(bench)
    fetched = _ceiling("fetch", mail.imap_host, str(mail.imap_port), HELP, mail.users[HELP],
                       "INBOX", str(BATCH))
    directory = bench.workdir(f"backlog-{database}")
    db = Database(database, directory)
    stopped = False
    try:
        config = bench.config(directory, db.url)
        mailhelp(config, "init")
        sink.reset()
        max_rss, passes = 0, 0
        profilers: list[subprocess.Popen] = []

        def attach(pid: int) -> None:
            # Attached rather than wrapping the command, so the deadline's SIGINT
            # reaches mailhelp itself. One file per process; the summary adds them up.
            if profile:
                profilers.append(subprocess.Popen(
                    ["py-spy", "record", "--nonblocking", "--idle", "--subprocesses", "-r", "100",
                     "-f", "raw", "-o", f"{profile}.{len(profilers) + 1}", "--pid", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        started, wall_started = time.monotonic(), time.time()
        while passes < MAX_PASSES:
            passes += 1
            left = deadline - (time.monotonic() - started) if deadline else None
            done = mailhelp(config, "run", "--once", deadline=left, on_start=attach)
            _wait_all(profilers)
            max_rss = max(max_rss, done.max_rss)
            if done.stopped:
                stopped = True
                break
            if _inbox_count(bench) == 0:
                break
        processed = backlog.messages
        if stopped:
            processed = db.scalar("SELECT count(*) FROM raw_messages WHERE state <> 'new'")
            send_only = bench.config(directory, db.url, imap=False, name="send-only.toml")
            max_rss = max(max_rss, mailhelp(send_only, "run", "--once", on_start=attach).max_rss)
            _wait_all(profilers)
        finished = time.monotonic()
        expected = sum(backlog.expected[:processed])
        problems = []
        if not sink.wait_for(expected, timeout=120):
            problems.append(f"{sink.count} of {expected} mails at the sink")
        first = min((a.at for a in sink.arrivals), default=finished)
        last = max((a.at for a in sink.arrivals), default=finished)
        seconds = max(finished, last) - started
        # Mail goes out while later messages are processed: processing is from the start
        # to the last message's commit (raw_messages.processed_at), sending from the
        # first mail at the sink to the last. The longer of the two is the bottleneck.
        processing = _timestamp(db.scalar("SELECT max(processed_at) FROM raw_messages")) \
            - wall_started
        sending = last - first
        mails = sink.count
        size = sum(a.size for a in sink.arrivals) // mails if mails else 4000
        problems += _check(bench, db, backlog, processed, mails, inbox=not stopped)
    finally:
        db.drop()
    sink.reset()
    count = min(backlog.expected_mails, SEND_CEILING_MAILS)
    sent = _ceiling("send", "127.0.0.1", str(sink.port), str(count), str(SMTP_CONNECTIONS),
                    str(size))
    if not sink.wait_for(count, timeout=60):
        problems.append(f"send ceiling: {sink.count} of {count} at the sink")
    sink.reset()
    per_message = backlog.expected_mails / backlog.messages
    send_ceiling = sent["mails"] / sent["seconds"]
    return Run(database, seconds, processed / seconds, max_rss, passes,
               fetched["messages"] / fetched["seconds"], send_ceiling / per_message, mails,
               problems, stopped, processed, processed / processing if processing > 0 else 0.0,
               mails / sending if sending > 0 else 0.0, send_ceiling)


def _timestamp(value) -> float:
    """A processed_at read back from SQLite (text, UTC) or PostgreSQL (aware datetime)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.timestamp() if value is not None else time.time()


def _wait_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.wait(60)


def _check(bench: Bench, db: Database, backlog: Backlog, processed: int, mails: int,
           inbox: bool) -> list[str]:
    """Did the first ``processed`` messages cause exactly what they must?"""
    problems = []
    expected = sum(backlog.expected[:processed])
    if mails != expected:
        problems.append(f"sink got {mails} mails, expected {expected}")
    left = _inbox_count(bench) if inbox else 0
    if left:
        problems.append(f"{left} messages still in the INBOX")
    tickets = db.scalar("SELECT count(*) FROM tickets")
    new_tickets = sum(kind in (NEW, ATTACHMENT) for kind in backlog.kinds[:processed])
    if tickets != new_tickets:
        problems.append(f"{tickets} tickets, expected {new_tickets}")
    failed = db.scalar("SELECT count(*) FROM raw_messages WHERE state = 'failed'")
    if failed:
        problems.append(f"{failed} messages failed")
    queued = db.scalar("SELECT count(*) FROM outbox WHERE status <> 'sent'")
    if queued:
        problems.append(f"{queued} outbox rows not sent")
    return problems
