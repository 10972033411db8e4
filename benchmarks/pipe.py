"""Benchmark 3: ``mailhelp ingest < message`` as an MTA pipe alias runs it.

A fresh process per message, wall time from spawn to exit, over the first messages of
the teacher stream (requests and replies threading onto them), one after the other as
an MTA delivers a burst. Three configs: with [ingest] socket and a daemon running
(``mailhelp run`` with no [imap]: ingest hands the message over and exits once it is
committed; the daemon sends), the way to deliver by pipe; and, with no daemon, each
ingest doing its own work: with the SMTP sink up (the acknowledgement is sent before
the process exits) and with no [smtp] section (the mail stays in the outbox): what a
lone message costs. References: the interpreter alone (``python -c pass``) and the
import of the command line (``import mailhelp.cli``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .harness import Bench, Database, mailhelp
from .processes import run_process
from .teachermail import ATTACHMENT, NEW, TeacherMail

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class PipeRun:
    with_smtp: list[float] = field(default_factory=list)
    alone: list[float] = field(default_factory=list)
    handed_off: list[float] = field(default_factory=list)
    python: list[float] = field(default_factory=list)
    import_cli: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def run(bench: Bench, count: int, seed: int) -> PipeRun:
    result = PipeRun()
    # As pip installs a package: byte-compiled. An editable install under
    # PYTHONDONTWRITEBYTECODE (so this machine) would compile mailhelp in every process.
    compiled = run_process([sys.executable, "-m", "compileall", "-q", str(ROOT / "mailhelp")])
    if compiled.returncode != 0:
        result.problems.append(f"compileall failed: {compiled.output[-200:]}")
    messages = list(TeacherMail(seed).messages(count))
    expected = sum(m.expected_mails for m in messages)
    # The daemon's case first: the lone ingests' commits leave the disk busy writing
    # back for a while, which would slow the commits measured after them.
    _handed_off(bench, messages, expected, result)
    for name, smtp, times in (("pipe-smtp", True, result.with_smtp),
                              ("pipe-alone", False, result.alone)):
        directory = bench.workdir(name)
        db = Database("sqlite", directory)
        config = bench.config(directory, db.url, imap=False, smtp=smtp)
        mailhelp(config, "init")
        bench.sink.reset()
        for message in messages:
            done = mailhelp(config, "ingest", stdin=message.raw)
            times.append(done.seconds)
        # Each ingest answered once its work was done: all of it is there now.
        if smtp and bench.sink.count != expected:
            result.problems.append(f"with smtp: {bench.sink.count} of {expected} mails sent "
                                   "when the last ingest exited")
        queued = db.scalar("SELECT count(*) FROM outbox")
        if queued != expected:
            result.problems.append(f"{queued} outbox rows, expected {expected}")
    for code, times in (("pass", result.python), ("import mailhelp.cli", result.import_cli)):
        for _ in range(count):
            done = run_process([sys.executable, "-c", code])
            if done.returncode != 0:
                result.problems.append(f"python -c {code!r} failed: {done.output[-200:]}")
            times.append(done.seconds)
    bench.sink.reset()
    return result


def _handed_off(bench: Bench, messages: list, expected: int, result: PipeRun) -> None:
    directory = bench.workdir("pipe-daemon")
    db = Database("sqlite", directory)
    config = bench.config(directory, db.url, imap=False,
                          ingest_socket=str(directory / "ingest.sock"))
    mailhelp(config, "init")
    bench.sink.reset()
    daemon = bench.start_daemon(config, ready="action=ingest_listen")
    try:
        for message in messages:
            result.handed_off.append(mailhelp(config, "ingest", stdin=message.raw).seconds)
        if not bench.sink.wait_for(expected, timeout=10):
            result.problems.append(f"daemon: {bench.sink.count} of {expected} mails sent")
    finally:
        bench.stop_daemon(daemon)
    alone = (directory / "mailhelp.log").read_text().count("action=ingest_alone")
    if alone:
        result.problems.append(f"daemon: {alone} ingest(s) did the work themselves")
    tickets = db.scalar("SELECT count(*) FROM tickets")
    wanted = sum(m.kind in (NEW, ATTACHMENT) for m in messages)
    if tickets != wanted:
        result.problems.append(f"daemon: {tickets} tickets, expected {wanted}")
