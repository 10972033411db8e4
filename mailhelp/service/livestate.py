"""What the running daemon is doing, published for ``mailhelp status`` in another process.

The daemon keeps a small JSON file, mode 0600, beside the database (SQLite:
``mailhelp.db-status.json``) or in [storage] attachments_dir (PostgreSQL:
``daemon-status.json``). It is replaced whole (write, then rename) when something
changes and at least every HEARTBEAT seconds while the loop turns, each time with
``updated_at``: a file that has not been rewritten for a while means the daemon is
gone or stuck, whatever the file says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from ..config import Config, ImapConfig
from ..private import desk_file
from .imap import FolderStatus, ImapMailbox

log = logging.getLogger(__name__)

HEARTBEAT = 2.0  # seconds between rewrites of an unchanged state
STATE_VERSION = 1


def state_path(config: Config) -> str | None:
    """Where the daemon of this config publishes its state (None: nowhere it could)."""
    return desk_file(config, "status.json", "daemon-status.json")


def read_state(path: str) -> dict | None:
    """The published state, or None when there is none (never started, unreadable)."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class MailboxRecord:
    """One mailbox as the daemon last saw it."""

    account: str
    folder: str
    connected: bool = False
    mode: str = ""  # "idle" or "polling", once connected
    since: str | None = None  # connected since, or down since
    last_check: str | None = None  # the folder last looked at (SELECT)
    last_fetch: str | None = None  # messages last fetched from it
    waiting: int | None = None  # messages in the folder not yet taken
    error: str = ""


@dataclass
class LiveState:
    """The daemon's side: records what happens, writes the file."""

    path: str | None
    config_path: str = ""
    pid: int = field(default_factory=os.getpid)
    started_at: str = field(default_factory=_now)
    running: bool = True
    status: str = "starting"
    ingest_socket: str = ""
    reloaded_at: str | None = None
    reload_error: str = ""
    mailboxes: list[MailboxRecord] = field(default_factory=list)
    written: float = 0.0  # monotonic time of the last write
    broken: bool = False  # the last write failed (logged once)

    def mailbox(self, config: ImapConfig, account: str) -> MailboxRecord:
        for record in self.mailboxes:
            if record.account == account:
                return record
        record = MailboxRecord(account=account, folder=config.folder)
        self.mailboxes.append(record)
        return record

    def touch(self) -> None:
        """The loop turned: rewrite the file if the last write is HEARTBEAT old."""
        if time.monotonic() - self.written >= HEARTBEAT:
            self.write()

    def set_status(self, text: str) -> None:
        if text != self.status:
            self.status = text
            self.write()

    def stopped(self) -> None:
        self.running = False
        self.status = "stopped"
        for record in self.mailboxes:
            record.connected = False
        self.write()

    def as_json(self) -> dict:
        return {"version": STATE_VERSION, "pid": self.pid, "running": self.running,
                "status": self.status, "started_at": self.started_at, "updated_at": _now(),
                "heartbeat": HEARTBEAT, "config": self.config_path,
                "ingest_socket": self.ingest_socket, "reloaded_at": self.reloaded_at,
                "reload_error": self.reload_error,
                "mailboxes": [asdict(record) for record in self.mailboxes]}

    def write(self) -> None:
        self.written = time.monotonic()
        if self.path is None:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            # mkstemp makes the file 0600 whatever the umask; the rename replaces the
            # old one whole, so a reader never sees half a state.
            descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".status-")
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    json.dump(self.as_json(), handle, indent=1)
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as error:
            if not self.broken:
                log.warning("action=state_file_unwritable path=%s error=%s ('mailhelp "
                            "status' cannot see this daemon)", self.path, error.strerror)
            self.broken = True
            return
        self.broken = False


class WatchedMailbox(ImapMailbox):
    """The help mailbox, with each connection, look and fetch written down in a record."""

    def __init__(self, config: ImapConfig, live: LiveState) -> None:
        super().__init__(config)
        self.live = live
        self.record = live.mailbox(config, self.account)

    def connect(self) -> FolderStatus:
        try:
            status = super().connect()
        except BaseException as error:
            self.down(error)
            raise
        record = self.record
        record.connected, record.since, record.error = True, _now(), ""
        record.mode = "idle" if self.client.has_capability("IDLE") else "polling"
        self._seen(status)
        self.live.write()
        return status

    def select(self) -> FolderStatus:
        status = super().select()
        waiting = self.record.waiting
        self._seen(status)
        if waiting != status.exists:
            self.live.write()
        else:
            self.live.touch()
        return status

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        found = super().fetch(uids)
        self.record.last_fetch = _now()
        self.live.write()
        return found

    def move(self, uids: list[int], folder: str) -> None:
        # A few writes per batch: small beside the batch itself.
        super().move(uids, folder)
        if self.record.waiting is not None:
            self.record.waiting = max(0, self.record.waiting - len(uids))
        self.live.write()

    def down(self, error: BaseException) -> None:
        """The connection failed or was lost."""
        record = self.record
        text = " ".join(str(error).split())[:300] or type(error).__name__
        if record.connected or record.since is None:
            record.since = _now()  # down since now
        record.connected, record.error = False, text
        self.live.write()

    def _seen(self, status: FolderStatus) -> None:
        self.record.last_check, self.record.waiting = _now(), status.exists
