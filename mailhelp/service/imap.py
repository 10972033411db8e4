"""The help mailbox over IMAP (imapclient, synchronous; one connection per thread).

A message leaves the inbox only after the transaction that recorded it has
committed: fetch with BODY.PEEK[] -> Pipeline.accept (commits) -> MOVE. A crash
between the two leaves it in the inbox, and the stored copy is reused next time.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select

from ..config import ImapConfig
from ..db.models import MailboxState, RawMessage
from ..db.session import Database, transaction
from ..errors import SourceError
from ..tls import tls_context
from .pipeline import Arrival, Pipeline, Result

log = logging.getLogger(__name__)

# The longest one IDLE command lasts; see ImapMailbox._idle.
IDLE_RECHECK = 10.0
# Errors after which the connection is useless and must be opened again.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError)


def connection_errors() -> tuple[type[BaseException], ...]:
    import imaplib

    from imapclient.exceptions import IMAPClientError

    return (*CONNECTION_ERRORS, IMAPClientError, imaplib.IMAP4.error, SourceError)


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    exists: int


class ImapMailbox:
    """One logged-in connection to the help mailbox, with the folder selected."""

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.client = None
        self.account = f"{config.username}@{config.host}:{config.port}/{config.folder}"

    def connect(self) -> FolderStatus:
        from imapclient import IMAPClient
        from imapclient.exceptions import LoginError
        from imapclient.imapclient import SocketTimeout

        config = self.config
        context = None if config.security == "none" else tls_context(config.ca_file,
                                                                      config.tls_verify)
        timeout = config.timeout.total_seconds()
        client = IMAPClient(config.host, port=config.port, ssl=config.security == "tls",
                            ssl_context=context, timeout=SocketTimeout(timeout, timeout))
        try:
            if config.security == "starttls":
                client.starttls(context)
            if config.auth == "oauth2":
                from ..oauth2.tokens import imap_login

                imap_login(client, config)
            else:
                client.login(config.username, config.password.reveal())
        except LoginError as error:
            _close(client)
            raise SourceError(f"imap login refused for {config.username}: {_text(error)}") from None
        except BaseException:
            _close(client)
            raise
        # imapclient writes a command in several pieces; without NODELAY each one
        # waits for the server's delayed ACK (40 ms a command).
        with contextlib.suppress(OSError):
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client = client
        return self.select()

    def select(self) -> FolderStatus:
        info = self.client.select_folder(self.config.folder)
        return FolderStatus(int(info[b"UIDVALIDITY"]), int(info[b"EXISTS"]))

    def ensure_folders(self) -> list[str]:
        """Create the processed and failed folders where missing; return those created."""
        created = []
        for folder in self.config.folders:
            if not self.client.folder_exists(folder):
                self.client.create_folder(folder)
                with contextlib.suppress(Exception):  # a courtesy to mail clients
                    self.client.subscribe_folder(folder)
                created.append(folder)
        return created

    def uids(self) -> list[int]:
        return sorted(int(u) for u in self.client.search("ALL"))

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        with _imaplib_debug_off(self.client):
            # PEEK leaves \Seen alone: a person looking at the mailbox sees what is new.
            found = self.client.fetch(uids, ["BODY.PEEK[]"])
        return {int(uid): data[b"BODY[]"] for uid, data in found.items() if b"BODY[]" in data}

    def move(self, uids: list[int], folder: str) -> None:
        if not uids:
            return
        if self.client.has_capability("MOVE"):
            self.client.move(uids, folder)
            return
        self.client.copy(uids, folder)
        self.client.delete_messages(uids)
        if self.client.has_capability("UIDPLUS"):
            self.client.uid_expunge(uids)
        else:
            self.client.expunge()

    def wait(self, timeout: float, stopping: Callable[[], bool]) -> bool:
        """Block until new mail may be there, the timeout passes, or ``stopping()``.

        Uses IDLE where the server has it and plain polling elsewhere.
        """
        if not self.client.has_capability("IDLE"):
            deadline = time.monotonic() + min(timeout, self.config.poll_interval.total_seconds())
            while time.monotonic() < deadline and not stopping():
                time.sleep(0.2)
            self.client.noop()
            return True
        return self._idle(timeout, stopping)

    def _idle(self, timeout: float, stopping: Callable[[], bool]) -> bool:
        # Mail that arrives after our last command but before IDLE starts is reported
        # by neither Dovecot nor pymap until IDLE ends; a NOOP right before catches it.
        if _has_news(self.client.noop()[1]):
            return True
        # Mail landing between that NOOP and IDLE is reported only when IDLE ends, so
        # IDLE is renewed every IDLE_RECHECK seconds: such mail waits that long at most.
        deadline = time.monotonic() + min(timeout, self.config.idle_restart.total_seconds(),
                                          IDLE_RECHECK)
        self.client.idle()
        fast_empty = 0
        news = False
        try:
            while not news and not stopping() and time.monotonic() < deadline:
                started = time.monotonic()
                responses = self.client.idle_check(timeout=0.5)
                news = _has_news(responses)
                for response in responses:
                    if response and response[0] == b"BYE":
                        raise SourceError("imap server closed the connection (BYE)")
                # A dead socket makes idle_check return [] at once, over and over.
                if not responses and time.monotonic() - started < 0.05:
                    fast_empty += 1
                    if fast_empty >= 5:
                        raise SourceError("imap connection lost during IDLE")
                else:
                    fast_empty = 0
        finally:
            if self.client is not None:
                try:
                    news = _has_news(self.client.idle_done()[1]) or news
                except connection_errors():
                    self.close()
                    raise SourceError("imap connection lost during IDLE") from None
        return news

    def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            _close(client)


def _has_news(responses) -> bool:
    return any(isinstance(r, tuple) and len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT")
               for r in responses or ())


@contextlib.contextmanager
def _imaplib_debug_off(client) -> Iterator[None]:
    """imapclient sets imaplib's debug level to 5, at which imaplib formats a repr of
    every response for its debug log, logged or not: for a fetched message that is
    twice its size in memory on top of the message itself."""
    imap = getattr(client, "_imap", None)
    level = getattr(imap, "debug", None)
    if not isinstance(level, int) or not level:
        yield
        return
    imap.debug = 0
    try:
        yield
    finally:
        imap.debug = level


def _close(client) -> None:
    try:
        client.logout()
    except Exception:  # already gone; the socket is closed below either way
        with contextlib.suppress(Exception):
            client.shutdown()


def _text(error: BaseException) -> str:
    text = str(error)
    return text[2:-1] if text.startswith("b'") else text


def batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class MailboxSync:
    """Takes every waiting message out of the help mailbox, in batches."""

    def __init__(self, mailbox: ImapMailbox, pipeline: Pipeline, db: Database) -> None:
        self.mailbox = mailbox
        self.pipeline = pipeline
        self.db = db

    def drain(self, after_batch: Callable[[list[Result]], None] = lambda results: None) -> int:
        """Process everything in the folder now; return how many messages were taken."""
        status = self.mailbox.select()
        if status.exists == 0:
            return 0
        last_uid = self._checkpoint(status.uidvalidity)
        config = self.mailbox.config
        source = f"imap:{config.folder}"
        uids = self.mailbox.uids()
        # Messages at or below the checkpoint were taken before: the move after the
        # commit did not happen (a crash, a dropped link). Move them without fetching.
        done = self._known(source, status.uidvalidity, [u for u in uids if u <= last_uid])
        self._move_by_state(done)
        taken = 0
        for batch in batches([u for u in uids if u not in done], config.batch_size):
            fetched = self.mailbox.fetch(batch)
            arrivals = [Arrival(raw, source, status.uidvalidity, uid)
                        for uid, raw in sorted(fetched.items())]
            results = self.pipeline.accept(arrivals)
            # Only now, with the batch committed, may the messages leave the inbox.
            self._move_by_state({r.uid: r.state for r in results})
            last_uid = max([last_uid, *fetched])
            self._save(status.uidvalidity, last_uid)
            taken += len(results)
            after_batch(results)
        return taken

    def _move_by_state(self, states: dict[int, str]) -> None:
        config = self.mailbox.config
        folder_of = {"failed": config.failed_folder, "spam": config.spam_folder,
                     "outsider": config.outsiders_folder}
        by_folder: dict[str, list[int]] = {}
        for uid, state in sorted(states.items()):
            by_folder.setdefault(folder_of.get(state, config.processed_folder), []).append(uid)
        for folder, uids in by_folder.items():
            self.mailbox.move(uids, folder)

    def _known(self, source: str, uidvalidity: int, uids: list[int]) -> dict[int, str]:
        """The processed state of already-stored UIDs (those still ``new`` are left out)."""
        if not uids:
            return {}
        with self.db.sessions() as session:
            rows = session.execute(select(RawMessage.uid, RawMessage.state).where(
                RawMessage.source == source, RawMessage.uidvalidity == uidvalidity,
                RawMessage.uid.in_(uids), RawMessage.state != "new")).all()
        return {int(uid): state for uid, state in rows}

    def _checkpoint(self, uidvalidity: int) -> int:
        with transaction(self.db) as tx:
            state = tx.scalar(select(MailboxState).where(
                MailboxState.account == self.mailbox.account,
                MailboxState.folder == self.mailbox.config.folder))
            if state is None:
                return 0
            if state.uidvalidity != uidvalidity:
                # The folder was recreated or the server rebuilt its index: UIDs no
                # longer mean what they meant. Everything is read again; Message-IDs
                # keep what was already recorded from being recorded twice.
                log.warning("folder=%s action=uidvalidity_changed old=%s new=%s",
                            self.mailbox.config.folder, state.uidvalidity, uidvalidity)
                state.uidvalidity, state.last_uid = uidvalidity, 0
            return state.last_uid

    def _save(self, uidvalidity: int, last_uid: int) -> None:
        with transaction(self.db) as tx:
            state = tx.scalar(select(MailboxState).where(
                MailboxState.account == self.mailbox.account,
                MailboxState.folder == self.mailbox.config.folder))
            if state is None:
                state = MailboxState(account=self.mailbox.account,
                                     folder=self.mailbox.config.folder)
                tx.add(state)
            state.uidvalidity, state.last_uid = uidvalidity, last_uid
            state.updated_at = self.pipeline.clock()

