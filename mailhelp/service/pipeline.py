"""The stages of one incoming message: store raw -> parse -> apply -> commit.

Sources (IMAP, files, stdin) hand raw bytes to ``Pipeline.accept``; each message
is stored before anything else is done with it, then processed in a transaction
of its own. A message that fails is marked ``failed`` with the reason and the
caller moves it to the failed folder; nothing stops the daemon.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Integer, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import RawMessage, RawMessageBody
from ..db.session import Database, transaction
from ..db.storage import AttachmentStore
from ..delivery import outbox
from ..desk import schedule, surveys, workflow
from ..desk.batch import Batch
from ..desk.threads import plus_ticket, tag_pattern, thread_ids
from ..desk.workflow import Context, Outcome, Stored
from ..directory import Directory
from ..errors import MailhelpError
from ..mail.forwarded import opened_of
from ..mail.parse import Inbound, message_id_of, parse
from ..mail.quoting import new_text_of
from ..states import RawState

log = logging.getLogger(__name__)

BLOB_CHUNK = 1 << 20
# Messages of a batch applied in one transaction: a commit costs a third of what a small
# message does on PostgreSQL. Few enough that their mail is not kept waiting long.
TOGETHER = 20
ALONE_ABOVE = 1 << 20  # bytes: a bigger message has a transaction (and memory) to itself

# raw_messages.state after processing, by workflow action.
STATE_OF = {"new_ticket": RawState.PROCESSED, "reply": RawState.PROCESSED,
            "recorded": RawState.PROCESSED, "staff_reply": RawState.PROCESSED,
            "spam": RawState.SPAM, "outsider": RawState.OUTSIDER,
            "duplicate": RawState.DUPLICATE, "ignored": RawState.IGNORED}


_raw_messages = RawMessage.__table__
_INSERT_RAW = insert(_raw_messages).returning(_raw_messages.c.id, sort_by_parameter_order=True)
_INSERT_BODY = insert(RawMessageBody.__table__)
# A processed message's row, in the transaction of its ticket change.
_DONE = update(_raw_messages).where(_raw_messages.c.id == bindparam("raw_id")).values(
    state=bindparam("done_state"), error=None, processed_at=bindparam("done_at"),
    ticket_id=func.coalesce(bindparam("done_ticket", type_=Integer), _raw_messages.c.ticket_id))


@dataclass(frozen=True)
class Arrival:
    """Raw bytes as a source delivered them, with where they came from."""

    raw: bytes
    source: str
    uidvalidity: int | None = None
    uid: int | None = None


@dataclass(frozen=True)
class Result:
    raw_id: int
    uid: int | None
    state: str  # processed | duplicate | ignored | failed
    outcome: Outcome | None
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.state == RawState.FAILED


class Pipeline:
    def __init__(self, config: Config, db: Database, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.context = Context(config, AttachmentStore(config.storage.attachments_dir),
                               directory=Directory.of(config))
        # Called after each transaction that may have queued mail (the daemon wakes its
        # sender): a batch's first mails go out while the rest of it is processed.
        self.after_commit: Callable[[], object] = lambda: None
        # Held around each transaction of ``accept`` (the daemon's turns between its
        # mailbox and the messages an MTA hands in): a short wait, never a long one.
        self.turn: Callable[[], AbstractContextManager] = contextlib.nullcontext

    def accept(self, arrivals: Sequence[Arrival]) -> list[Result]:
        """Store then process a batch; messages already done are reported, not redone."""
        results: list[Result | None] = []
        new: list[_Waiting] = []
        self.context.directory.refresh()  # once a pass: a stat, a reading if it changed
        with self.turn():
            stored = self.store(arrivals)
        for (raw_id, uid, state), arrival in zip(stored, arrivals, strict=True):
            if state == RawState.NEW:
                new.append(_Waiting(len(results), raw_id, uid, arrival.raw))
                results.append(None)
            else:
                results.append(Result(raw_id, uid, state, None))
        for group in _groups(new):
            with self.turn():
                done = self._process_together(group)
            for index, result in done:
                results[index] = result
            self.after_commit()
        return results

    def _process_together(self, group: list[_Waiting]) -> list[tuple[int, Result]]:
        """Several messages applied in one transaction. Should one of them fail, the
        transaction is undone and each is processed again on its own, so that the
        failure is that message's alone."""
        if len(group) == 1:  # the daemon's usual case; a big message is parsed only once
            return [(group[0].index, self._process(group[0].raw_id, group[0].uid,
                                                   group[0].raw))]
        parsed, alone = [], []
        for waiting in group:
            try:
                parsed.append((waiting, self._read(waiting.raw)))
            except Exception:  # processed alone, it fails with its reason
                alone.append(waiting)
        results = []
        if len(parsed) > 1:
            try:
                results = self._apply_together(parsed)
                parsed = []
            except OperationalError:
                raise
            except Exception as error:  # each is redone, and fails alone
                log.warning("action=batch_undone messages=%s error=%s (each is processed "
                            "again on its own; lines logged for them meanwhile are void)",
                            len(parsed), _describe(error))
        redo = sorted([*alone, *(w for w, _ in parsed)], key=lambda w: w.index)
        del parsed  # parsed again one at a time: never two parses of a big message at once
        return results + [(w.index, self._process(w.raw_id, w.uid, w.raw)) for w in redo]

    def _apply_together(self, group: list[tuple[_Waiting, object]]) -> list[tuple[int, Result]]:
        done, rows = [], []
        with transaction(self.db) as tx:
            batch = Batch(tx)
            ctx = replace(self.context, batch=batch)
            # What every message asks the database, asked once for all of them.
            answered = batch.look_ahead([inbound for _, inbound in group])
            schedule.look_ahead(tx, answered)
            outbox.look_ahead(tx, [inbound.sender.address for _, inbound in group],
                              self.clock(), answered)
            for waiting, inbound in group:
                stored = Stored(waiting.raw_id, waiting.raw)
                outcome, row = self._apply_one(tx, ctx, stored, inbound, write=False)
                done.append((waiting, inbound, outcome))
                rows.append(row)
            tx.flush()  # the new tickets the rows name (numbered, not yet written)
            tx.connection().execute(_DONE, rows)
        results = []
        for waiting, inbound, outcome in done:
            self._log_outcome(waiting.raw_id, waiting.uid, inbound, outcome)
            results.append((waiting.index, Result(waiting.raw_id, waiting.uid,
                                                  STATE_OF[outcome.action], outcome)))
        return results

    def store(self, arrivals: Sequence[Arrival]) -> list[tuple[int, int | None, str]]:
        """Write the raw bytes in one transaction; return (raw id, uid, state) per arrival.

        An IMAP message seen before (same folder, UIDVALIDITY and UID) keeps its row:
        a crash after storing it leaves it ``new``, and it is processed from these bytes.
        """
        now = self.clock()
        with transaction(self.db) as tx:
            seen = {key: (row.id, row.state) for key, row in self._seen(tx, arrivals).items()}
            new: dict[tuple | int, int] = {}  # key -> position in rows
            rows, raws, positions = [], [], []
            for index, arrival in enumerate(arrivals):
                key = (arrival.source, arrival.uidvalidity, arrival.uid) \
                    if arrival.uid is not None else index
                if key in seen:
                    positions.append(seen[key])
                    continue
                if key not in new:
                    new[key] = len(rows)
                    rows.append({
                        "source": arrival.source, "uidvalidity": arrival.uidvalidity,
                        "uid": arrival.uid, "message_id": message_id_of(arrival.raw)[:998],
                        "sha256": hashlib.sha256(arrival.raw).hexdigest(),
                        "size": len(arrival.raw), "state": RawState.NEW, "received_at": now})
                    raws.append(arrival.raw)
                positions.append(new[key])
            # One INSERT for the batch, ids returned in order; no ORM objects to track.
            ids = list(tx.connection().execute(_INSERT_RAW, rows).scalars()) if rows else []
            _store_bodies(tx, list(zip(ids, raws, strict=True)))
            stored = []
            for position, arrival in zip(positions, arrivals, strict=True):
                raw_id, state = position if isinstance(position, tuple) \
                    else (ids[position], RawState.NEW)
                stored.append((raw_id, arrival.uid, state))
            return stored

    @staticmethod
    def _seen(tx: Session, arrivals: Sequence[Arrival]) -> dict[tuple, object]:
        """Rows already stored for these IMAP messages, by (source, uidvalidity, uid)."""
        keys = {(a.source, a.uidvalidity) for a in arrivals if a.uid is not None}
        seen = {}
        for source, uidvalidity in keys:
            uids = [a.uid for a in arrivals if (a.source, a.uidvalidity) == (source, uidvalidity)
                    and a.uid is not None]
            for row in tx.execute(select(RawMessage.id, RawMessage.uid, RawMessage.state).where(
                    RawMessage.source == source, RawMessage.uidvalidity == uidvalidity,
                    RawMessage.uid.in_(uids))):
                seen[(source, uidvalidity, row.uid)] = row
        return seen

    def sweep(self, older_than: timedelta = timedelta(minutes=1)) -> list[Result]:
        """Process stored messages a crash left ``new`` (from ingest; IMAP ones are
        found again in the inbox by their UID)."""
        self.context.directory.refresh()
        with self.db.sessions() as session:
            ids = list(session.scalars(select(RawMessage.id).where(
                RawMessage.state == RawState.NEW, RawMessage.uid.is_(None),
                RawMessage.received_at < self.clock() - older_than).order_by(RawMessage.id)))
        return [self.process(raw_id) for raw_id in ids]

    def process(self, raw_id: int, uid: int | None = None) -> Result:
        """Parse and apply one stored message (e.g. a failed one, again)."""
        self.context.directory.read_once()  # a pass (accept, sweep) reads it again
        with self.db.sessions() as session:
            raw_bytes = session.get(RawMessageBody, raw_id).raw
        return self._process(raw_id, uid, raw_bytes)

    def _process(self, raw_id: int, uid: int | None, raw_bytes: bytes) -> Result:
        # Parsing happens outside the transaction: it is the slow part, and SQLite
        # holds its write lock for the whole of a transaction.
        try:
            inbound = self._read(raw_bytes)
            outcome = self._apply(raw_id, raw_bytes, inbound)
        except OperationalError:
            # The database is away or locked: not this message's fault. It stays where
            # it is (stored, state "new", still in the inbox) for the next pass.
            raise
        except Exception as error:  # one bad message must never stop the others
            reason = _describe(error)
            log.error("raw=%s uid=%s action=failed error=%s", raw_id, uid, reason,
                      exc_info=not isinstance(error, MailhelpError))
            with transaction(self.db) as tx:
                row = tx.get(RawMessage, raw_id)
                row.state, row.error, row.processed_at = RawState.FAILED, reason, self.clock()
            return Result(raw_id, uid, RawState.FAILED, None, reason)
        self._log_outcome(raw_id, uid, inbound, outcome)
        return Result(raw_id, uid, STATE_OF[outcome.action], outcome)

    def _read(self, raw: bytes) -> Inbound:
        """Parse a message, and work out here what else of it the workflow may read
        that takes time (a reply's new text, the messages attached to it for the staff
        notification): not in the write transaction, which no message may hold for long.
        A new request never needs its new text."""
        inbound = parse(raw)
        opened_of(inbound)  # nothing to do for a message with no message attached
        helpdesk = self.config.helpdesk
        if (thread_ids(inbound) or tag_pattern(helpdesk.subject_tag).search(inbound.subject)
                or plus_ticket(inbound, helpdesk.address) is not None
                or surveys.token_in(inbound)):
            new_text_of(inbound)
        return inbound

    @staticmethod
    def _log_outcome(raw_id: int, uid: int | None, inbound, outcome: Outcome) -> None:
        if outcome.action in ("duplicate", "ignored", "spam"):
            log.info("raw=%s uid=%s message=%s action=%s reason=%s", raw_id, uid,
                     inbound.message_id, outcome.action, outcome.detail)

    def _apply(self, raw_id: int, raw_bytes: bytes, inbound) -> Outcome:
        for attempt in (1, 2):
            try:
                with transaction(self.db) as tx:
                    ctx = replace(self.context, batch=Batch(tx))  # a batch of one
                    return self._apply_one(tx, ctx, Stored(raw_id, raw_bytes), inbound)[0]
            except IntegrityError:
                # Another process recorded the same Message-ID between our check and
                # our insert; the second attempt sees it and reports a duplicate.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _apply_one(self, tx: Session, ctx: Context, stored: Stored, inbound,
                   write: bool = True) -> tuple[Outcome, dict]:
        """Apply one message; its raw row's new state is written (``write``) or returned
        to be written with the rest of a batch's."""
        now = self.clock()
        outcome = workflow.apply(tx, ctx, inbound, stored, now)
        row = {"raw_id": stored.id, "done_state": STATE_OF[outcome.action], "done_at": now,
               "done_ticket": outcome.ticket_id or stored.ticket_id}
        if write:
            tx.flush()
            tx.connection().execute(_DONE, row)
        return outcome, row


@dataclass(frozen=True)
class _Waiting:
    """A stored message waiting to be processed, and its place in the batch."""

    index: int
    raw_id: int
    uid: int | None
    raw: bytes


def _groups(waiting: list[_Waiting]) -> Iterator[list[_Waiting]]:
    """Up to TOGETHER messages at a time, in order; a big one makes a group of its own."""
    group: list[_Waiting] = []
    for item in waiting:
        if len(item.raw) > ALONE_ABOVE or len(group) == TOGETHER:
            if group:
                yield group
            group = []
        group.append(item)
        if len(item.raw) > ALONE_ABOVE:
            yield group
            group = []
    if group:
        yield group


def _describe(error: Exception) -> str:
    if isinstance(error, MailhelpError):
        return str(error)
    return f"{type(error).__name__}: {error}"[:2000]


def _store_bodies(tx: Session, bodies: list[tuple[int, bytes]]) -> None:
    """Messages' bytes into raw_message_bodies. On SQLite through its blob API, a
    megabyte at a time: bound as a parameter, sqlite3 copies them, and that copy stays
    attached to the cached statement until the statement is used again."""
    if not bodies:
        return
    connection = tx.connection()
    if connection.dialect.name != "sqlite":
        connection.execute(_INSERT_BODY, [{"raw_id": i, "raw": raw} for i, raw in bodies])
        return
    for raw_id, raw in bodies:
        connection.exec_driver_sql(
            "INSERT INTO raw_message_bodies (raw_id, raw) VALUES (?, zeroblob(?))",
            (raw_id, len(raw)))
        view = memoryview(raw)
        with connection.connection.driver_connection.blobopen(
                "raw_message_bodies", "raw", raw_id) as blob:
            for start in range(0, len(raw), BLOB_CHUNK):
                blob.write(view[start:start + BLOB_CHUNK])
