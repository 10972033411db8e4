"""The loop: wait (IDLE or poll) -> process -> send. Signals stop it cleanly.

IMAP is synchronous and stays in the main thread; the outbox is delivered by a
sender thread with its own event loop, so a slow SMTP server never delays the
next message's acknowledgement being committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from .app import App, flush_outbox
from .lifecycle import next_due, run_due
from .smtp import FlushStats, OutboxSender

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0


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
    each sent once: the last flush runs after the sender thread has stopped.
    """
    from .sources.imap import ImapMailbox, MailboxSync

    summary = OnceSummary()
    app.pipeline().sweep()
    sender = SenderThread(app, retry=False) if app.config.smtp is not None else None
    if app.config.imap is not None:
        mailbox = ImapMailbox(app.config.imap)
        mailbox.connect()
        if sender is not None:
            sender.start()
            sender.ready.wait(5)
        try:
            mailbox.ensure_folders()

            def batch_done(results) -> None:
                summary.failed += sum(r.failed for r in results)
                if sender is not None:
                    sender.kick()

            summary.taken = MailboxSync(mailbox, app.pipeline(), app.db).drain(batch_done)
        finally:
            mailbox.close()
            if sender is not None and sender.is_alive():
                sender.stop()
                sender.join()
    summary.jobs = run_due(app.db, app.config, app.clock)
    stats = flush_outbox(app)
    if sender is not None:
        stats = stats + sender.stats
    summary.sent, summary.deferred, summary.send_failed = stats.sent, stats.deferred, stats.failed
    return summary


class SenderThread(threading.Thread):
    """Delivers the outbox whenever kicked, and retries when a deferred mail falls due."""

    def __init__(self, app: App, retry: bool = True) -> None:
        super().__init__(name="mailhelp-sender", daemon=True)
        self.app = app
        # run --once retries in its final flush only; the daemon retries as mail falls due.
        self.retry = retry
        self.stats = FlushStats()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None
        self.ready = threading.Event()
        self.stopping = False

    def kick(self) -> None:
        if self.loop is not None and self.wake is not None:
            self.loop.call_soon_threadsafe(self.wake.set)

    def stop(self) -> None:
        self.stopping = True
        self.kick()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.ready.set()
        sender = self.app.sender()
        try:
            while not self.stopping:
                self.wake.clear()
                try:
                    self.stats = self.stats + await sender.flush()
                except Exception:  # a database hiccup must not end delivery for good
                    log.exception("action=send_loop_error")
                await self._sleep_until_due(sender)
        finally:
            await sender.close()

    async def _sleep_until_due(self, sender: OutboxSender) -> None:
        due = sender.next_due() if self.retry else None
        timeout = 30.0
        if due is not None:
            timeout = max(0.05, min(timeout, (due - self.app.clock()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)


def _until_next_job(app: App, longest: float) -> float:
    due = next_due(app.db)
    if due is None:
        return longest
    return max(1.0, min(longest, (due - app.clock()).total_seconds()))


def run_daemon(app: App, stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); reconnect to IMAP with backoff."""
    from .sources.imap import ImapMailbox, MailboxSync, connection_errors

    imap = app.config.require_imap()
    app.config.require_smtp()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    sender = SenderThread(app)
    sender.start()
    sender.ready.wait(5)
    mailbox = ImapMailbox(imap)
    pipeline = app.pipeline()
    sync = MailboxSync(mailbox, pipeline, app.db)
    pipeline.sweep()
    backoff = 1.0
    log.info("action=daemon_start folder=%s host=%s", imap.folder, imap.host)
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
                    if run_due(app.db, app.config, app.clock):
                        sender.kick()
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
        sender.stop()
        sender.join(timeout=30)
        log.info("action=daemon_stop")
