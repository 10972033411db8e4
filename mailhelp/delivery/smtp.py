"""Deliver the outbox over SMTP (aiosmtplib). Sending never decides policy.

A temporary failure (4xx, a refused or dropped connection) is retried later with
a growing delay; a permanent one (5xx) marks the mail failed, on the ticket too.
Connections are kept open across mails and several are used at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import sqlite3
import ssl
import threading
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import bindparam, select, update

from ..config import SmtpConfig
from ..db.models import Outbox, TicketEvent
from ..db.session import WRITE, Database, transaction
from ..errors import ConfigError
from ..mail.composer import complete
from ..oauth2.grants import TokenError
from ..private import private_sqlite

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = timedelta(hours=1)
# Built once: the sender runs these for every mail.
_LOAD = select(Outbox.id, Outbox.ticket_id, Outbox.message_id, Outbox.kind, Outbox.mail_from,
               Outbox.recipients, Outbox.raw, Outbox.body_text, Outbox.body_html).where(
    Outbox.id.in_(bindparam("row_ids", expanding=True)), Outbox.status == "queued")
LOAD_AHEAD = 20  # rows read with one statement; a 200 KB attachment each at most
# A journal's note carried into the outbox: the row may have been marked already (a
# crash between the two commits), and then it is left as it is.
_CARRIED = update(Outbox).where(Outbox.id == bindparam("row_id"), Outbox.status == "queued") \
    .values(status="sent", sent_at=bindparam("sent_at"), attempts=Outbox.attempts + 1)
_SENT = update(Outbox).where(Outbox.id.in_(bindparam("row_ids", expanding=True))).values(
    status="sent", sent_at=bindparam("sent_at"), attempts=Outbox.attempts + 1)


@dataclass(frozen=True)
class Failure:
    """Why a delivery did not happen, and whether trying again can help."""

    temporary: bool
    reason: str


@dataclass
class FlushStats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0

    def __add__(self, other: FlushStats) -> FlushStats:
        return FlushStats(self.sent + other.sent, self.deferred + other.deferred,
                          self.failed + other.failed)


@functools.cache
def _local_hostname() -> str:
    """The name mailhelp gives in EHLO, looked up once: left to aiosmtplib, each new
    connection asks the resolver again from a thread pool (seconds where reverse DNS
    is slow)."""
    return socket.getfqdn()


def tls_context(ca_file: str, verify: bool) -> ssl.SSLContext:
    """One context per connection setting: loading the CA store per mail costs 100 ms."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpTransport:
    """One SMTP connection, opened on first use and reused until it fails."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.context = tls_context(config.ca_file, config.tls_verify) \
            if config.security != "none" else None
        self.client = None

    async def connect(self) -> None:
        import aiosmtplib

        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host, port=config.port, local_hostname=_local_hostname(),
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            tls_context=self.context,
            timeout=config.timeout.total_seconds(),
        )
        await client.connect()
        if config.auth == "oauth2":
            from ..oauth2.tokens import smtp_login

            await smtp_login(client, config)
        elif config.auth == "password" and config.username:
            await client.login(config.username, config.password.reveal())
        self.client = client

    async def send(self, mail_from: str, recipients: list[str], raw: bytes) -> dict[str, Failure]:
        """Send one mail; return the recipients it failed for (empty: all accepted).

        Raises Failure-carrying ``DeliveryError`` when nothing could be sent.
        """
        import aiosmtplib

        if self.client is None or not self.client.is_connected:
            await self._connect_or_raise()
        try:
            refused, _ = await self.client.sendmail(mail_from, recipients, raw)
        except aiosmtplib.SMTPRecipientsRefused as error:
            return {r.recipient: _by_code(r.code, r.message) for r in error.recipients}
        except aiosmtplib.SMTPResponseException as error:
            if error.code // 100 == 4 or error.code < 400:
                await self.close()
            raise DeliveryError(_by_code(error.code, error.message)) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            await self.close()
            raise DeliveryError(Failure(True, f"{type(error).__name__}: {error}")) from error
        return {address: _by_code(response.code, response.message)
                for address, response in refused.items()}

    async def _connect_or_raise(self) -> None:
        import aiosmtplib

        try:
            await self.connect()
        except aiosmtplib.SMTPAuthenticationError as error:
            reason = f"smtp login refused: {error.code} {error.message}"
            raise DeliveryError(Failure(True, reason)) from None
        except ssl.SSLCertVerificationError as error:
            raise DeliveryError(Failure(True, f"smtp certificate not trusted: {error}")) from None
        except TokenError as error:  # [smtp] auth = "oauth2" and no token to be had
            raise DeliveryError(Failure(True, f"smtp login: {error}")) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise DeliveryError(Failure(True, f"cannot connect to smtp server: {error}")) from None

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            try:
                await client.quit()
            except Exception:  # a dead connection has nothing left to say
                client.close()


class DeliveryError(Exception):
    """A mail could not be handed to the SMTP server at all; ``failure`` says why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def _by_code(code: int, message: str) -> Failure:
    return Failure(code // 100 != 5, f"{code} {message}".strip())


class SentJournal:
    """Mails noted sent the moment the server took them, where a mark in the outbox
    itself costs too much: a small SQLite file of the sender's own.

    On SQLite (``<file>-sent``, beside the database) a mark would wait: SQLite admits
    one writer at a time, and during a backlog the daemon is writing nearly all the
    time; a note here waits for no one. There the journal is used while the daemon's
    sender runs beside it (a write turn is set), and the notes are carried into the
    outbox when the write lock is free.

    On PostgreSQL (``outbox-sent`` in ``[storage] attachments_dir``, the one directory
    every process of a desk must share already) a mark was an UPDATE of a wide row
    with six indexes, a round trip and about 0.4 ms of the server's CPU for each pair
    of mails (measured during a backlog, on two cores shared with the server); notes
    are carried 50 at a time, in one transaction.

    Notes are also carried when the outbox is empty and before anything is sent (notes
    a crash left behind included); until then the outbox shows those mails queued, and
    every sender leaves them be (it asks the journal before it sends).
    """

    CARRY_AFTER = 50  # notes, carried together

    def __init__(self, db: Database, path: str, key: str) -> None:
        self.db = db
        self.path = path
        self.key = key  # the config key that decides where the journal is
        self.lock = threading.Lock()  # the journal's connection
        self.carrying = threading.Lock()  # one carry at a time
        self.count = 0
        self.connection: sqlite3.Connection | None = None
        self.open()

    def open(self) -> None:
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            private_sqlite(self.path)  # what was sent to whom: this user's alone
            self.connection = sqlite3.connect(self.path, isolation_level=None,
                                              check_same_thread=False, timeout=10)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
                self.connection.execute(f"PRAGMA {pragma}")
            self.connection.execute("CREATE TABLE IF NOT EXISTS sent "
                                    "(outbox_id INTEGER PRIMARY KEY, sent_at TEXT NOT NULL)")
            self.count = self.connection.execute("SELECT count(*) FROM sent").fetchone()[0]
        except (OSError, sqlite3.Error) as error:
            # The caller decides what then: SQLite's stops mailhelp, PostgreSQL's is done
            # without (for_database).
            raise ConfigError(f"{self.key}: cannot open the journal of sent mail "
                              f"{self.path}: {error}") from None

    @classmethod
    def for_database(cls, db: Database, directory: str = "") -> SentJournal | None:
        """The journal for this database; ``directory``: [storage] attachments_dir."""
        if db.dialect == "sqlite":
            path = db.engine.url.database
            return cls(db, f"{path}-sent", "database.url") \
                if path and path != ":memory:" else None
        if not directory:
            return None
        try:
            return cls(db, os.path.join(directory, "outbox-sent"), "storage.attachments_dir")
        except ConfigError as error:
            # Mail still goes out, marked in the database as it was before the journal
            # (slower); only a sender that can write there beside this one could then
            # send a mail twice. `mailhelp check` warns about the folder.
            log.warning("action=sent_journal_unavailable error=%s (each mail is marked "
                        "sent in the database instead)", error)
            return None

    def takes_marks(self) -> bool:
        """On SQLite only while a daemon writes beside the sender; otherwise always."""
        return self.db.dialect != "sqlite" or self.db.write_turn is not None

    def note(self, row_ids: list[int], sent_at: datetime) -> None:
        """These mails went out (the server took them); ``carry_due`` carries them later."""
        with self.lock, self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?)",
                                        [(row_id, sent_at.isoformat()) for row_id in row_ids])
            self.count += len(row_ids)

    def carry_due(self) -> None:
        """Carry the notes if enough of them wait and the outbox can be written now; a
        carry already under way, or SQLite's write lock in the daemon's hands, is not
        waited for (the notes are carried next time). Notes are taken only while a
        write turn is set on SQLite (``takes_marks``)."""
        if self.count < self.CARRY_AFTER:
            return
        if self.db.dialect != "sqlite":
            self._carry(wait=False)  # no one write lock to wait for
        elif self.db.write_turn.try_take():
            try:
                self._carry(wait=False)
            finally:
                self.db.write_turn.release()

    def noted(self, row_ids: list[int]) -> set[int]:
        with self.lock:
            found = set()
            for start in range(0, len(row_ids), 500):
                chunk = row_ids[start:start + 500]
                found.update(row[0] for row in self.connection.execute(
                    f"SELECT outbox_id FROM sent WHERE outbox_id IN ({','.join('?' * len(chunk))})",
                    chunk))
            return found

    def carry(self) -> None:
        """The notes into the outbox (waiting for the write turn, if there are any)."""
        if not self.count:
            return
        with self.db.turn():
            self._carry()

    def _carry(self, wait: bool = True) -> None:
        if not self.carrying.acquire(blocking=wait):
            return
        try:
            with self.lock:
                notes = self.connection.execute("SELECT outbox_id, sent_at FROM sent").fetchall()
            if not notes:
                return
            with self.db.engine.connect() as connection, \
                    connection.execution_options(**{WRITE: True}).begin():
                connection.execute(_CARRIED, [{"row_id": row_id,
                                               "sent_at": datetime.fromisoformat(at)}
                                              for row_id, at in notes])
            with self.lock, self.connection:
                self.connection.execute("BEGIN IMMEDIATE")
                self.connection.executemany("DELETE FROM sent WHERE outbox_id = ?",
                                            [(row_id,) for row_id, _ in notes])
                self.count = self.connection.execute("SELECT count(*) FROM sent").fetchone()[0]
        finally:
            self.carrying.release()

    def close(self) -> None:
        """Closed until the sender's next flush (a sender is closed between uses)."""
        with self.lock:
            self.connection.close()
            self.connection = None


class SentMarks:
    """Marks accepted mails sent: each connection's latest, together, in one commit.

    A connection waits for its mail's mark before it sends the next, so a crash repeats
    at most one mail per connection. The commit runs in a thread: while it waits, the
    other connections go on talking to the server, and their marks go into the next
    commit. Where the marks are notes in a SentJournal, on PostgreSQL the notes are
    carried into the outbox from another thread, after the connections have heard that
    their mails are marked: carrying fifty took a round trip and an UPDATE of fifty
    rows, and every connection used to wait for it.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime],
                 journal: SentJournal | None = None) -> None:
        self.db = db
        self.clock = clock
        self.journal = journal
        self.pending: list[tuple[int, asyncio.Future]] = []
        self.committing: asyncio.Task | None = None
        self.carrying: asyncio.Task | None = None
        # One connection for all the marks of a flush: a checkout from the pool costs a
        # round trip of its own (the liveness ping) on PostgreSQL.
        self.connection = None

    async def sent(self, row_id: int) -> None:
        done = asyncio.get_running_loop().create_future()
        self.pending.append((row_id, done))
        if self.committing is None or self.committing.done():
            self.committing = asyncio.create_task(self._commit_pending())
        await done

    async def _commit_pending(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await asyncio.to_thread(self._commit, [row_id for row_id, _ in batch])
            except Exception as error:  # each waiting connection hears of it
                for _, done in batch:
                    done.set_exception(error)
            else:
                for _, done in batch:
                    done.set_result(None)
                if self.journal is not None and self.db.dialect != "sqlite" and (
                        self.carrying is None or self.carrying.done()):
                    self.carrying = asyncio.create_task(self._carry_due())

    async def _carry_due(self) -> None:
        try:
            await asyncio.to_thread(self.journal.carry_due)
        except Exception as error:  # the notes stay, and are carried next time
            log.warning("action=sent_journal_carry_failed error=%s", error)

    async def settle(self) -> None:
        """Wait for a carry under way (before the journal is carried or closed)."""
        if self.carrying is not None:
            await self.carrying
            self.carrying = None

    def _commit(self, row_ids: list[int]) -> None:
        if self.journal is not None and self.journal.takes_marks():
            self.journal.note(row_ids, self.clock())
            if self.db.dialect == "sqlite":
                # Carried here, between the daemon's transactions: local and quick, and
                # beside the sending (as on PostgreSQL) it cost SQLite's backlog 7%.
                self.journal.carry_due()
            return
        if self.connection is None:
            self.connection = self.db.engine.connect()
            if self.connection.dialect.name == "postgresql":
                # A mark is one UPDATE, atomic by itself: no BEGIN and COMMIT round trips.
                # Nor need it wait for the disk: only a crash of the database server could
                # lose it, and then the mail is sent twice, never lost.
                self.connection.execution_options(isolation_level="AUTOCOMMIT")
                self.connection.exec_driver_sql("SET synchronous_commit TO OFF")
                self.connection.commit()
        connection = self.connection
        try:
            self._mark(connection, row_ids)
        except Exception:
            self.close()
            raise

    def _mark(self, connection, row_ids: list[int]) -> None:
        with self.db.turn(), connection.execution_options(**{WRITE: True}).begin():
            connection.execute(_SENT, {"row_ids": row_ids, "sent_at": self.clock()})

    def close(self) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            try:  # the pool resets the isolation level itself
                if connection.dialect.name == "postgresql":
                    connection.rollback()
                    connection.exec_driver_sql("RESET synchronous_commit")
                    connection.commit()
            except Exception:  # a broken connection: the pool must not hand it out again
                connection.invalidate()
            finally:
                connection.close()


class OutboxSender:
    """Delivers due outbox rows; ``flush`` returns when none is due."""

    def __init__(self, config: SmtpConfig, db: Database, clock: Callable[[], datetime],
                 journal_dir: str = "") -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.transports = [SmtpTransport(config) for _ in range(max(1, config.connections))]
        self.journal = SentJournal.for_database(db, journal_dir)
        self.marks = SentMarks(db, clock, self.journal)

    async def flush(self) -> FlushStats:
        stats = FlushStats()
        if self.journal is not None:
            if self.journal.connection is None:
                self.journal.open()
            self.journal.carry()  # notes a crash left behind: those mails went out
        while True:
            due = self._due()
            if not due:
                await self.marks.settle()
                if self.journal is not None and self.journal.count:
                    self.journal.carry()
                    continue
                return stats
            # Mail to one address always takes the same connection, in order: a teacher
            # never gets the "resolved" notice before the answer that preceded it.
            queues: list[deque[int]] = [deque() for _ in self.transports]
            for row_id, to_address in due:
                queues[zlib.crc32(to_address.encode()) % len(queues)].append(row_id)
            await asyncio.gather(*(self._worker(transport, queue, stats)
                                   for transport, queue in zip(self.transports, queues,
                                                               strict=True)
                                   if queue))
            if stats.deferred and not stats.sent:
                await self.marks.settle()
                return stats  # the server is away: try again at next_attempt_at

    async def close(self) -> None:
        for transport in self.transports:
            await transport.close()
        await self.marks.settle()
        self.marks.close()
        if self.journal is not None:
            self.journal.close()

    def next_due(self) -> datetime | None:
        with self.db.sessions() as session:
            return session.scalar(select(Outbox.next_attempt_at)
                                  .where(Outbox.status == "queued")
                                  .order_by(Outbox.next_attempt_at).limit(1))

    def _due(self) -> list[tuple[int, str]]:
        with self.db.sessions() as session:
            due = [tuple(row) for row in session.execute(
                select(Outbox.id, Outbox.to_address).where(
                    Outbox.status == "queued", Outbox.next_attempt_at <= self.clock())
                .order_by(Outbox.id).limit(500))]
        if self.journal is not None and due:
            # Its notes and another sender's (a run --once beside the daemon, say).
            sent = self.journal.noted([row_id for row_id, _ in due])
            due = [(row_id, to) for row_id, to in due if row_id not in sent]
        return due

    async def _worker(self, transport: SmtpTransport, queue: deque[int], stats: FlushStats):
        # One connection for the worker's whole run: checking one out of the pool for
        # every statement costs as much as the statement.
        with self.db.engine.connect() as connection:
            asked: set[int] = set()
            loaded: dict[int, object] = {}
            ahead: asyncio.Future | None = None
            try:
                while queue:
                    row_id = queue.popleft()
                    if row_id not in asked:
                        # Read in a thread, LOAD_AHEAD rows at a time, and the next rows
                        # while these are sent: a worker that waited for each read stood
                        # still once every LOAD_AHEAD mails.
                        if ahead is not None:
                            asked, loaded = await ahead
                        if row_id not in asked:  # the first rows
                            asked, loaded = await self._read(
                                connection, [row_id, *islice(queue, LOAD_AHEAD - 1)])
                        following = list(islice(queue, LOAD_AHEAD - 1, 2 * LOAD_AHEAD - 1))
                        ahead = asyncio.ensure_future(self._read(connection, following)) \
                            if following else None
                    row = loaded.pop(row_id, None)
                    if row is None:
                        continue  # sent or given up meanwhile (by another mailhelp send)
                    await self._send(transport, row_id, row, queue, stats)
            finally:
                if ahead is not None:  # the connection goes back to the pool unused
                    await asyncio.gather(ahead, return_exceptions=True)

    async def _send(self, transport: SmtpTransport, row_id: int, row, queue: deque[int],
                    stats: FlushStats) -> None:
        recipients = list(row.recipients)
        raw = complete(row.raw, row.body_text, row.body_html)
        try:
            refused = await transport.send(row.mail_from, recipients, raw)
        except DeliveryError as error:
            self._record(row_id, {r: error.failure for r in recipients}, stats)
            if error.failure.temporary:
                # The server is unreachable or busy: the rest waits for the retry.
                queue.clear()
            return
        if refused:
            self._record(row_id, refused, stats)
            return
        # The common case, without the ORM: the sooner the mark follows the server's
        # 250, the smaller the window in which a crash resends a mail.
        await self.marks.sent(row_id)
        stats.sent += 1
        log.info("ticket=%s message=%s outbox=%s action=sent kind=%s to=%s",
                 row.ticket_id, row.message_id, row_id, row.kind, ",".join(recipients))

    async def _read(self, connection, row_ids: list[int]) -> tuple[set[int], dict[int, object]]:
        """The rows asked for, and those of them still queued (in a thread: meanwhile
        the other connections go on talking SMTP)."""
        return set(row_ids), await asyncio.to_thread(self._load, connection, row_ids)

    @staticmethod
    def _load(connection, row_ids: list[int]) -> dict[int, object]:
        """The next rows of a worker's queue, with one statement (one per mail was a
        tenth of what sending a mail costs)."""
        with connection.execution_options(**{WRITE: False}).begin():
            return {row.id: row for row in connection.execute(_LOAD, {"row_ids": row_ids})}

    def _record(self, row_id: int, refused: dict[str, Failure], stats: FlushStats) -> None:
        now = self.clock()
        with transaction(self.db) as tx:
            row = tx.get(Outbox, row_id)
            retry = [r for r in row.recipients if r in refused and refused[r].temporary]
            permanent = {r: f for r, f in refused.items() if not f.temporary}
            row.attempts += 1
            if permanent:
                reasons = "; ".join(f"{r}: {f.reason}" for r, f in permanent.items())
                log.error("ticket=%s message=%s outbox=%s action=send_failed permanent=yes "
                          "error=%s", row.ticket_id, row.message_id, row.id, reasons)
                if row.ticket_id:
                    tx.add(TicketEvent(ticket_id=row.ticket_id, at=now, actor="system",
                                       action="mail_failed", detail=f"{row.kind}: {reasons}"))
            if retry and row.attempts < self.config.max_attempts:
                delay = min(self.config.retry_delay * 2 ** (row.attempts - 1), MAX_RETRY_DELAY)
                row.recipients, row.next_attempt_at = retry, now + delay
                row.last_error = refused[retry[0]].reason
                stats.deferred += 1
                log.warning("ticket=%s message=%s outbox=%s action=send_deferred attempt=%s "
                            "retry_in=%ss error=%s", row.ticket_id, row.message_id, row.id,
                            row.attempts, int(delay.total_seconds()), row.last_error)
            elif retry or len(permanent) == len(row.recipients):
                row.status, row.last_error = "failed", "; ".join(f.reason for f in refused.values())
                stats.failed += 1
                if retry:
                    log.error("ticket=%s message=%s outbox=%s action=send_failed attempts=%s "
                              "error=%s", row.ticket_id, row.message_id, row.id, row.attempts,
                              row.last_error)
                    if row.ticket_id:
                        tx.add(TicketEvent(ticket_id=row.ticket_id, at=now, actor="system",
                                           action="mail_failed",
                                           detail=f"{row.kind}: gave up: {row.last_error}"))
            else:
                row.status, row.sent_at = "sent", now
                stats.sent += 1
                log.info("ticket=%s message=%s outbox=%s action=sent kind=%s to=%s",
                         row.ticket_id, row.message_id, row.id, row.kind,
                         ",".join(r for r in row.recipients if r not in refused))
