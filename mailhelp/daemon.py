"""The loop: wait (IDLE or poll) -> process -> send. Signals stop it cleanly.

IMAP is synchronous and stays in the main thread; the outbox is delivered by a
sender process with its own event loop (sender.py), so a slow SMTP server never delays
the next message's acknowledgement being committed, and sending uses a second core.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from .app import App, flush_outbox
from .errors import ConfigError
from .lifecycle import next_due, run_due
from .sender import STOP_GRACE, SenderProcess

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
    each sent once: the last flush runs after the sender process has stopped.
    """
    from .sources.imap import ImapMailbox, MailboxSync

    summary = OnceSummary()
    app.pipeline().sweep()
    sender = SenderProcess(app, retry=False, grace=None) if app.config.smtp is not None \
        else None
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
        sender.join(timeout=STOP_GRACE + 2)
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
