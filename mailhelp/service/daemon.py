"""The loop: wait (IDLE or poll) -> process -> send -> due jobs. Signals, as a service.

IMAP is synchronous and stays in the main thread; the outbox is delivered by a
sender process with its own event loop (sender.py), so a slow SMTP server never delays
the next message's acknowledgement being committed, and sending uses a second core.

SIGTERM (or SIGINT) finishes the batch in hand and stops; SIGHUP reloads the
configuration and the templates. The loop tells systemd how it is doing (sdnotify.py)
and writes what it is doing where ``mailhelp status`` reads it (livestate.py).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError

from ..app import App, flush_outbox
from ..delivery.sender import STOP_GRACE, SenderProcess
from ..desk import periodic
from ..desk.lifecycle import next_due, run_due
from ..errors import ConfigError, MailhelpError
from .handoff import handed_size
from .handoff_server import IngestServer, Turns
from .sdnotify import Notifier

if TYPE_CHECKING:
    from .pipeline import Pipeline

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
    from .imap import ImapMailbox, MailboxSync

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
    summary.jobs = run_due(app.db, app.config, app.clock) + run_scheduled(app)
    stats = flush_outbox(app)
    if sender is not None:
        stats = stats + sender.stats
    summary.sent, summary.deferred, summary.send_failed = stats.sent, stats.deferred, stats.failed
    return summary


def run_scheduled(app: App) -> int:
    """The mail due on a schedule (the morning queue): how many were queued."""
    return periodic.run_due(app.db, app.config, app.clock())


def _until_next_job(app: App, longest: float) -> float:
    dues = [due for due in (next_due(app.db), periodic.next_due(app.config, app.clock()))
            if due is not None]
    if not dues:
        return longest
    due = min(dues)
    return max(1.0, min(longest, (due - app.clock()).total_seconds()))


class _Stopping(Exception):
    """Raised between two batches of a drain when the daemon is asked to stop."""


def run_daemon(app: App, stop: threading.Event | None = None,
               notifier: Notifier | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set): read the help mailbox (reconnecting
    with backoff), take the mail an MTA hands in at [ingest] socket, run due jobs.
    SIGHUP reloads the configuration and the templates."""
    Service(app, stop or threading.Event(), notifier or Notifier()).run()


class Service:
    """The daemon's loop, with what a service manager sees of it: signals, sd_notify
    (READY, STATUS, WATCHDOG, STOPPING) and the state file ``mailhelp status`` reads."""

    def __init__(self, app: App, stop: threading.Event, notifier: Notifier) -> None:
        from .livestate import LiveState, state_path

        imap, socket_path = app.config.imap, app.config.ingest.socket
        if imap is None and not socket_path:
            raise ConfigError("imap: section missing (the daemon reads the help mailbox; "
                              "for mail piped in by the MTA alone, set [ingest] socket)")
        app.config.require_smtp()
        self.app = app
        self.stop = stop
        self.reload = threading.Event()
        self.notifier = notifier
        self.live = LiveState(state_path(app.config), config_path=app.config.path,
                              ingest_socket=socket_path)
        self.ready = False
        self.sender = SenderProcess(app)
        self.turn = Turns()  # the mailbox, handed-in mail and due jobs, one at a time
        self.server: IngestServer | None = None

    def run(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop.set())
            signal.signal(signal.SIGHUP, lambda *_: self.reload.set())
        self.live.write()
        self.sender.start()  # forked before any thread of ours starts
        imap, socket_path = self.app.config.imap, self.app.config.ingest.socket
        try:
            with self.turn():
                self.app.pipeline().sweep()
            if socket_path:
                self.server = IngestServer(socket_path, self.app.config.ingest.socket_mode,
                                           self._pipeline(), self.turn,
                                           handed_size(self.app.config))
                self.server.start()
            log.info("action=daemon_start folder=%s host=%s socket=%s",
                     imap.folder if imap else "-", imap.host if imap else "-",
                     socket_path or "-")
            if imap is not None:
                self._serve_mailbox()
            else:
                self._ready(f"listening at {socket_path}")
                while not self.stop.is_set():
                    if self.reload.is_set():
                        self._reload()
                    self._run_jobs()
                    self._pause(_until_next_job(self.app, 60.0))
        finally:
            self.notifier.stopping()
            self.live.set_status("stopping")
            if self.server is not None:
                self.server.stop(timeout=STOP_GRACE)
            self.sender.stop()
            self.sender.join(timeout=STOP_GRACE + 2)
            self.live.stopped()
            self.notifier.close()
            log.info("action=daemon_stop")

    def _pipeline(self) -> Pipeline:
        pipeline = self.app.pipeline()
        pipeline.after_commit = self._kick
        pipeline.turn = self.turn
        return pipeline

    def _serve_mailbox(self) -> None:
        from .imap import MailboxSync, connection_errors
        from .livestate import WatchedMailbox

        mailbox: WatchedMailbox | None = None
        backoff = 1.0
        try:
            while not self.stop.is_set():
                if self.reload.is_set():
                    self._reload()
                imap = self.app.config.require_imap()
                if mailbox is None or mailbox.config != imap:
                    if mailbox is not None:  # [imap] changed at a reload
                        mailbox.close()
                        self.live.mailboxes.clear()
                    mailbox = WatchedMailbox(imap, self.live)
                sync = MailboxSync(mailbox, self._pipeline(), self.app.db)
                try:
                    if mailbox.client is None:
                        mailbox.connect()
                        mailbox.ensure_folders()
                        log.info("action=imap_connected host=%s folder=%s mode=%s",
                                 imap.host, imap.folder, mailbox.record.mode)
                        backoff = 1.0
                        self._ready(f"{imap.host}: connected ({mailbox.record.mode})")
                    while not self.stop.is_set() and not self.reload.is_set():
                        # Drain until a pass finds nothing: mail that arrived meanwhile is
                        # taken now rather than after the next IDLE notification.
                        while sync.drain(self._batch_done) and not self.stop.is_set():
                            self.sender.kick()
                        self._run_jobs()
                        self._status(f"{imap.host}: waiting for mail "
                                     f"({mailbox.record.mode})")
                        mailbox.wait(_until_next_job(self.app,
                                                     imap.idle_restart.total_seconds()),
                                     self._interrupted)
                except _Stopping:
                    break
                except (*connection_errors(), OperationalError) as error:
                    mailbox.down(error)
                    mailbox.close()
                    if self.stop.is_set():
                        break
                    what = "database_error" if isinstance(error, OperationalError) \
                        else "imap_disconnected"
                    text = str(error).splitlines()[0] if str(error) else type(error).__name__
                    log.warning("action=%s error=%s retry_in=%.0fs", what, text, backoff)
                    # Ready all the same: a mail server that is away must not make
                    # systemd restart the daemon in a loop; status says it is down.
                    self._ready(f"{imap.host}: {what.replace('_', ' ')}: {text}; "
                                f"retrying in {backoff:.0f}s")
                    self._pause(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            if mailbox is not None:
                mailbox.close()

    def _kick(self) -> None:
        self.sender.kick()  # the sender of now: a reload may have started another

    def _batch_done(self, results) -> None:
        """After each committed and filed batch: the stop asked for is taken here, so a
        SIGTERM waits for the batch in hand and not for the whole backlog."""
        self.sender.kick()
        self._beat()
        if self.stop.is_set():
            raise _Stopping

    def _run_jobs(self) -> None:
        with self.turn():
            ran = run_due(self.app.db, self.app.config, self.app.clock) + run_scheduled(self.app)
        if ran:
            self.sender.kick()

    def _beat(self) -> None:
        self.notifier.alive()
        self.live.touch()

    def _interrupted(self) -> bool:
        """Asked by the IDLE and polling waits twice a second."""
        self._beat()
        return self.stop.is_set() or self.reload.is_set()

    def _pause(self, seconds: float) -> None:
        """Wait, keeping the watchdog fed, until the time is up, a stop or a reload."""
        deadline = time.monotonic() + seconds
        while not self._interrupted():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 0.5))

    def _ready(self, status: str) -> None:
        self.live.set_status(status)
        if not self.ready:
            self.ready = True
            self.notifier.ready(status)
        else:
            self.notifier.status(status)

    def _status(self, status: str) -> None:
        self.live.set_status(status)
        self.notifier.status(status)

    def _reload(self) -> None:
        """SIGHUP: read the config file again; the templates are read afresh at the next
        mail. A file that no longer loads is logged and the running config kept."""
        from .. import config as config_module
        from ..delivery import templating

        self.reload.clear()
        self.notifier.reloading()
        old = self.app.config
        self.live.reloaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            config = config_module.load(old.path)
            config.require_smtp()
            if config.imap is None and old.imap is not None:
                raise ConfigError("imap: section missing (the daemon was started with it; "
                                  "restart it to run without)")
        except MailhelpError as error:
            log.error("action=reload_failed error=%s (the running configuration is kept)",
                      error)
            self.live.reload_error = str(error)
            self.notifier.reloaded(self.live.status)
            self.live.write()
            return
        kept = []
        # These were set up once at start: a change takes a restart.
        for section in ("database", "ingest", "log"):
            if getattr(config, section) != getattr(old, section):
                config = replace(config, **{section: getattr(old, section)})
                kept.append(section)
        _reopen_log_files()  # after logrotate moved them away
        with self.turn():  # no message is half way through the pipeline meanwhile
            templating.reset()
            self.app.config = config
            if self.server is not None:
                self.server.pipeline = self._pipeline()
            if (config.smtp, config.storage) != (old.smtp, old.storage):
                self.sender.stop()
                self.sender.join(timeout=STOP_GRACE + 2)
                self.sender = SenderProcess(self.app)
                self.sender.start()
        self.live.reload_error = ""
        log.info("action=reload config=%s restart_needed_for=%s", config.path,
                 ",".join(kept) or "-")
        self.notifier.reloaded(self.live.status)
        self.live.write()


def _reopen_log_files() -> None:
    """Close [log] file; the next line opens it again, a new one (0600) if it was moved."""
    from ..private import private_file

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()
            private_file(handler.baseFilename)
