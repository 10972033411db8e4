"""The outbox worker: takes the due rows, sends them through the transport, asks
retry.py what to do about a refusal and has outbox_sql.py write the answer.

Connections are kept open across mails and several are used at once. Each logs one
line per event, with the ticket and message ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from ..config import SmtpConfig
from ..db.session import Database
from ..mail.composer import complete
from ..states import OutboxStatus
from . import outbox_sql
from .journal import SentJournal
from .marks import SentMarks
from .retry import RetryPolicy
from .sendlock import SendLock
from .transport import DeliveryError, Failure, SmtpTransport

log = logging.getLogger(__name__)

LOAD_AHEAD = 20  # rows read with one statement; a 200 KB attachment each at most


@dataclass
class FlushStats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0

    def __add__(self, other: FlushStats) -> FlushStats:
        return FlushStats(self.sent + other.sent, self.deferred + other.deferred,
                          self.failed + other.failed)


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
        self.lock = SendLock(db)

    async def flush(self) -> FlushStats:
        """Send what is due, holding the desk's sender lock throughout (sendlock.py):
        a second sender waits here, then reads the outbox again and finds this one's
        mail marked sent."""
        held = await self.lock.take()
        try:
            return await self._flush()
        finally:
            # A flush cancelled (a stopping daemon) may leave a mark being committed in
            # a thread: the next holder must see it, so the lock waits for it.
            committing = self.marks.committing
            if committing is not None and not committing.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(committing)
            held.release()

    async def _flush(self) -> FlushStats:
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
        return outbox_sql.next_due(self.db)

    def _due(self) -> list[tuple[int, str]]:
        due = outbox_sql.due(self.db, self.clock())
        if self.journal is not None and due:
            # Its own notes and the previous lock holder's, not yet carried.
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
                        continue  # no longer queued (given up or sent meanwhile)
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
            self._refused(row_id, {r: error.failure for r in recipients}, stats)
            if error.failure.temporary:
                # The server is unreachable or busy: the rest waits for the retry.
                queue.clear()
            return
        if refused:
            self._refused(row_id, refused, stats)
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
        return set(row_ids), await asyncio.to_thread(outbox_sql.load, connection, row_ids)

    def _refused(self, row_id: int, refused: Mapping[str, Failure], stats: FlushStats) -> None:
        """Carry out retry.py's decision (outbox_sql writes it) and log it."""
        mail, decision = outbox_sql.record_refusal(self.db, row_id, refused,
                                                   RetryPolicy.of(self.config), self.clock())
        ids = (mail.ticket_id, mail.message_id, mail.row_id)
        if decision.refused:
            log.error("ticket=%s message=%s outbox=%s action=send_failed permanent=yes "
                      "error=%s", *ids, decision.refused)
        if decision.status is OutboxStatus.QUEUED:
            stats.deferred += 1
            log.warning("ticket=%s message=%s outbox=%s action=send_deferred attempt=%s "
                        "retry_in=%ss error=%s", *ids, decision.attempts,
                        int(decision.delay.total_seconds()), decision.reason)
        elif decision.status is OutboxStatus.FAILED:
            stats.failed += 1
            if decision.gave_up:
                log.error("ticket=%s message=%s outbox=%s action=send_failed attempts=%s "
                          "error=%s", *ids, decision.attempts, decision.reason)
        else:
            stats.sent += 1
            log.info("ticket=%s message=%s outbox=%s action=sent kind=%s to=%s",
                     *ids, mail.kind, ",".join(decision.recipients))
