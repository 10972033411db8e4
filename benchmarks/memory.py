"""Benchmark 4b: peak RSS of ``mailhelp run --once`` for one message with a 25 MB attachment.

Each run takes one small request (the steady state: interpreter, libraries, one
message) and then the big one, each by ``run --once`` on a fresh database with the
message alone in the INBOX; the figure is the difference of the two peaks (wait4's
ru_maxrss of that process) as a multiple of the big message's size on the wire.

Twice: with the default limits (the message is over ``max_message_size`` = 25 MB, so the
attachment is dropped and staff are told) and with the limits raised so that the
attachment is stored and the ticket keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .harness import HELP, Bench, Database, mailhelp
from .teachermail import TeacherMail, big_attachment_message

ATTACHMENT = 25 * 2**20
RAISED = ('max_message_size = "100MB"', 'max_attachment_size = "100MB"')


@dataclass
class MemoryRun:
    steady: int = 0
    big: dict[str, int] = field(default_factory=dict)  # variant -> peak RSS
    size: int = 0
    problems: list[str] = field(default_factory=list)


def _peak(bench: Bench, raw: bytes, name: str,
          limits: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    directory = bench.workdir(name)
    db = Database("sqlite", directory)
    bench.reset_help_mailbox()
    config = bench.config(directory, db.url, limits=limits)
    mailhelp(config, "init")
    client = bench.mail.imap(HELP)
    try:
        client.append("INBOX", raw)
    finally:
        client.logout()
    bench.sink.reset()
    done = mailhelp(config, "run", "--once")
    problems = []
    tickets = db.scalar("SELECT count(*) FROM tickets")
    if tickets != 1:
        problems.append(f"{name}: {tickets} tickets, expected 1")
    if not bench.sink.wait_for(3, timeout=10):
        problems.append(f"{name}: {bench.sink.count} of 3 mails at the sink")
    bench.sink.reset()
    return done.max_rss, problems


def one_run(bench: Bench, seed: int) -> MemoryRun:
    result = MemoryRun()
    small = next(m for m in TeacherMail(seed).messages(50) if m.kind == "new")
    big = big_attachment_message(ATTACHMENT)
    result.size = len(big)
    result.steady, problems = _peak(bench, small.raw, "memory-small")
    result.problems += problems
    for variant, limits in (("default limits", ()), ("limits raised", RAISED)):
        result.big[variant], problems = _peak(bench, big, f"memory-big-{variant[:7]}", limits)
        result.problems += problems
    bench.reset_help_mailbox()
    return result
