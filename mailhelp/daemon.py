"""The loop: wait (IDLE or poll) -> process -> send. Signals stop it cleanly.

IMAP is synchronous and stays in the main thread; the outbox is delivered by a
sender process with its own event loop, so a slow SMTP server never delays the
next message's acknowledgement being committed, and sending uses a second core.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from .app import App, flush_outbox
from .db.session import WriteTurn
from .errors import ConfigError
from .lifecycle import next_due, run_due
from .smtp import FlushStats, OutboxSender, SentJournal

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class OnceSummary:
    jobs: int = 0
    taken: int = 0
    failed: int = 0
    sent: int = 0
    deferred: int = 0
    send_failed: int = 0


def run_once(app: App) -> OnceSummary:
    """Process every waiting message and due job, then flush the outbox.

    Mail goes out while later batches are still being processed (as in the daemon),
    each sent once: the last flush runs after the sender process has stopped.
    """
    from .sources.imap import ImapMailbox, MailboxSync

    summary = OnceSummary()
    app.pipeline().sweep()
    sender = SenderProcess(app, retry=False) if app.config.smtp is not None else None
    if app.config.imap is not None:
        mailbox = ImapMailbox(app.config.imap)
        if sender is not None:
            sender.start()
        try:
            mailbox.connect()
            mailbox.ensure_folders()

            def batch_done(results) -> None:
                summary.failed += sum(r.failed for r in results)
                if sender is not None:
                    sender.kick()

            pipeline = app.pipeline()
            if sender is not None:
                pipeline.after_commit = sender.kick
            summary.taken = MailboxSync(mailbox, pipeline, app.db).drain(batch_done)
        finally:
            mailbox.close()
            if sender is not None:
                sender.stop()
                sender.join()
    summary.jobs = run_due(app.db, app.config, app.clock)
    stats = flush_outbox(app)
    if sender is not None:
        stats = stats + sender.stats
    summary.sent, summary.deferred, summary.send_failed = stats.sent, stats.deferred, stats.failed
    return summary


class SenderProcess:
    """Delivers the outbox whenever kicked, from a process of its own.

    Sending costs about a third of what a message costs (the SMTP dialogue, marking
    each mail sent); in a forked process it runs on the second core while this one
    fetches, parses and applies. It shares nothing with this process but the database
    (its own connections) and two events; it ignores SIGINT and SIGTERM (this process
    stops it between mails) and dies with this process if that is killed, so a crash
    leaves the same at-most-one-mail-per-connection window as before.
    """

    def __init__(self, app: App, retry: bool = True) -> None:
        self.app = app
        # run --once retries in its final flush only; the daemon retries as mail falls due.
        self.retry = retry
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
            args=(self.app, self.retry, self.wake, self.stopping, self.child_end, os.getpid()))
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


def _deliver(app: App, retry: bool, wake, stopping, results, parent: int) -> None:
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
                stats = stats + loop.run_until_complete(sender.flush())
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("action=send_loop_error")
            wake.wait(_until_due(app, sender, retry))
    finally:
        loop.run_until_complete(sender.close())
        loop.close()
        results.send(stats)


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


def _until_next_job(app: App, longest: float) -> float:
    due = next_due(app.db)
    if due is None:
        return longest
    return max(1.0, min(longest, (due - app.clock()).total_seconds()))


def run_daemon(app: App, stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set): read the help mailbox (reconnecting
    with backoff), take the mail an MTA hands in at [ingest] socket, run due jobs."""
    from .handoff import IngestServer, Turns, handed_size

    imap, socket_path = app.config.imap, app.config.ingest.socket
    if imap is None and not socket_path:
        raise ConfigError("imap: section missing (the daemon reads the help mailbox; for "
                          "mail piped in by the MTA alone, set [ingest] socket)")
    app.config.require_smtp()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    sender = SenderProcess(app)
    sender.start()  # forked before any thread of ours starts
    turn = Turns()  # the mailbox, handed-in mail and due jobs, one at a time
    server = None
    try:
        with turn():
            app.pipeline().sweep()
        if socket_path:
            pipeline = app.pipeline()
            pipeline.after_commit = sender.kick
            server = IngestServer(socket_path, app.config.ingest.socket_mode, pipeline, turn,
                                  handed_size(app.config))
            server.start()
        log.info("action=daemon_start folder=%s host=%s socket=%s",
                 imap.folder if imap else "-", imap.host if imap else "-", socket_path or "-")
        if imap is not None:
            _serve_mailbox(app, imap, sender, turn, stop)
        else:
            while not stop.is_set():
                _run_jobs(app, sender, turn)
                stop.wait(_until_next_job(app, 60.0))
    finally:
        if server is not None:
            server.stop()
        sender.stop()
        sender.join(timeout=30)
        log.info("action=daemon_stop")


def _run_jobs(app: App, sender: SenderProcess, turn) -> None:
    with turn():
        ran = run_due(app.db, app.config, app.clock)
    if ran:
        sender.kick()


def _serve_mailbox(app: App, imap, sender: SenderProcess, turn, stop: threading.Event) -> None:
    from .sources.imap import ImapMailbox, MailboxSync, connection_errors

    mailbox = ImapMailbox(imap)
    pipeline = app.pipeline()
    pipeline.after_commit = sender.kick
    pipeline.turn = turn
    sync = MailboxSync(mailbox, pipeline, app.db)
    backoff = 1.0
    try:
        while not stop.is_set():
            try:
                mailbox.connect()
                mailbox.ensure_folders()
                log.info("action=imap_connected host=%s folder=%s", imap.host, imap.folder)
                backoff = 1.0
                while not stop.is_set():
                    # Drain until a pass finds nothing: mail that arrived meanwhile is
                    # taken now rather than after the next IDLE notification.
                    while sync.drain(lambda results: sender.kick()) and not stop.is_set():
                        sender.kick()
                    _run_jobs(app, sender, turn)
                    mailbox.wait(_until_next_job(app, imap.idle_restart.total_seconds()),
                                 stop.is_set)
            except (*connection_errors(), OperationalError) as error:
                mailbox.close()
                if stop.is_set():
                    break
                what = "database_error" if isinstance(error, OperationalError) \
                    else "imap_disconnected"
                log.warning("action=%s error=%s retry_in=%.0fs", what,
                            str(error).splitlines()[0] if str(error) else type(error).__name__,
                            backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
    finally:
        mailbox.close()
