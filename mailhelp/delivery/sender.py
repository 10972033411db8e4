"""The sender process: delivers the outbox whenever the daemon kicks it.

Forked from the daemon (``mailhelp run``, and ``run --once`` while it processes), it
shares nothing with it but the database and two events. Asked to stop, it finishes the
mail in hand; a backlog that would keep it longer than STOP_GRACE is cut there, as a
crash would cut it (the rest waits in the outbox for the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal

from ..app import App
from ..db.session import WriteTurn
from .journal import SentJournal
from .worker import FlushStats, OutboxSender

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Seconds a stopping daemon gives the mail under way; with the batch in hand, it stays
# well inside the ten seconds systemd is told to wait (TimeoutStopSec).
STOP_GRACE = 5.0


class SenderProcess:
    """Delivers the outbox whenever kicked, from a process of its own.

    Sending (the SMTP dialogue, marking each mail sent) is a good share of what a
    message costs; in a forked process it runs on the second core while this one
    fetches, parses and applies. It shares nothing with this process but the database
    (its own connections) and two events; it ignores SIGINT and SIGTERM (this process
    stops it between mails) and dies with this process if that is killed, so a crash
    leaves the same at-most-one-mail-per-connection window as before.
    """

    def __init__(self, app: App, retry: bool = True, grace: float | None = STOP_GRACE) -> None:
        self.app = app
        # run --once retries in its final flush only; the daemon retries as mail falls due.
        self.retry = retry
        # How long a flush under way may go on once stopped (None: to its end, as run
        # --once wants: nothing waits on it but its own final flush).
        self.grace = grace
        self.stats = FlushStats()
        self.context = multiprocessing.get_context("fork")
        self.wake = self.context.Event()
        self.stopping = self.context.Event()
        self.results, self.child_end = self.context.Pipe(duplex=False)
        self.process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        if self.process is None and self.app.db.dialect == "sqlite":
            # SQLite's journal of sent mail (beside the database) that cannot be opened
            # stops mailhelp here, with one line naming the config key, not the sender
            # process at every attempt. (PostgreSQL's does without one: a warning.)
            journal = SentJournal.for_database(self.app.db,
                                               self.app.config.storage.attachments_dir)
            if journal is not None:
                journal.close()
        # Nothing of this process's may be shared: its database connections are closed
        # (they reopen on use) and the process is forked before IMAP connects.
        self.app.db.engine.dispose()
        if self.app.db.dialect == "sqlite":
            # A new one for each sender: one that died may have died holding the old.
            self.app.db.write_turn = WriteTurn(self.context)
        self.process = self.context.Process(
            target=_deliver, name="mailhelp-sender", daemon=True,
            args=(self.app, self.retry, self.grace, self.wake, self.stopping, self.child_end,
                  os.getpid()))
        self.process.start()
        log.debug("action=sender_start pid=%s", self.process.pid)

    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def kick(self) -> None:
        if self.process is not None and not self.process.is_alive() \
                and not self.stopping.is_set():
            log.error("action=sender_died exitcode=%s", self.process.exitcode)
            self.start()
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self.process is None:
            return
        self.process.join(timeout)
        if self.process.is_alive():
            log.warning("action=sender_stop_timeout pid=%s", self.process.pid)
            self.process.kill()
            self.process.join()
        if self.results.poll():
            self.stats = self.results.recv()


def _deliver(app: App, retry: bool, grace: float | None, wake, stopping, results,
             parent: int) -> None:
    """The sender process: flush, wait for a kick (or the next retry), until stopped."""
    _die_with(parent)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # The parent's pooled connections are its own; this process opens fresh ones.
    app.db.engine.dispose(close=False)
    loop = asyncio.new_event_loop()
    sender = app.sender()
    stats = FlushStats()
    try:
        while not stopping.is_set():
            wake.clear()
            try:
                stats = stats + loop.run_until_complete(_flush(sender, stopping, grace))
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("action=send_loop_error")
            wake.wait(_until_due(app, sender, retry))
    finally:
        loop.run_until_complete(sender.close())
        loop.close()
        results.send(stats)


async def _flush(sender: OutboxSender, stopping, grace: float | None) -> FlushStats:
    """One flush, given ``grace`` seconds to end once a stop is asked for."""
    flush = asyncio.ensure_future(sender.flush())
    if grace is None:
        return await flush
    while not stopping.is_set():
        done, _ = await asyncio.wait({flush}, timeout=0.1)
        if done:
            return flush.result()
    done, _ = await asyncio.wait({flush}, timeout=grace)
    if done:
        return flush.result()
    # Each mail the server had taken is marked sent as it is taken; only one per
    # connection that is under way now may go again at the next start.
    log.warning("action=send_cut reason=stopping grace=%ss (the rest stays queued)", grace)
    flush.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flush
    return FlushStats()


def _until_due(app: App, sender: OutboxSender, retry: bool, longest: float = 30.0) -> float:
    due = sender.next_due() if retry else None
    if due is None:
        return longest
    return max(0.05, min(longest, (due - app.clock()).total_seconds()))


def _die_with(parent: int) -> None:
    """Be killed when the parent dies (Linux): a SIGKILLed daemon leaves no sender behind."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)  # this process's own symbols: libc's
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
