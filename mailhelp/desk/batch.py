"""One write transaction's batch: what it asked once for all of its messages, what it
caches, and the rows it holds back to write together.

The pipeline makes a ``Batch`` for each transaction in which it applies messages and
passes it in the workflow's ``Context``; anything else that writes (the lifecycle jobs,
the web survey, the CLI) gets a batch of one from ``Batch.of(tx)`` the first time it
needs one. A batch lives as long as its session's outermost transaction: its listeners
are bound to that session alone, write what is held back before a commit (a
savepoint's too) and forget what a rollback undid.

Rows are held back because writing them through the ORM's unit of work, or one
statement per row, costs far more statements than one INSERT per kind and batch
(benchmarks/RESULTS.md, "Issue 17: the batch").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import bindparam, event, insert, select
from sqlalchemy.orm import Session, joinedload

from ..db.models import Job, Message, Outbox, Participant, Person, Ticket, TicketEvent
from ..mail.parse import Inbound
from .threads import thread_ids

_BATCH = "mailhelp_batch"  # session.info: the Batch of the session's transaction
_BOUND = "mailhelp_batch_listeners"  # session.info: its listeners are registered

# A reply's ticket with what its handling reads (who may join, who is told, whether it
# was surveyed), in one statement rather than four.
TICKET_AND_PEOPLE = (joinedload(Ticket.requester), joinedload(Ticket.survey),
                     joinedload(Ticket.participants).joinedload(Participant.person))

# Plain statements on the transaction's connection: they come before anything is added,
# so nothing need be flushed first, and the ORM's execution costs more than the query.
_messages = Message.__table__
_RECORDED = select(_messages.c.id).where(
    _messages.c.message_id == bindparam("message_id")).limit(1)
_THREADED = select(_messages.c.message_id, _messages.c.ticket_id, _messages.c.to,
                   _messages.c.cc).where(
    _messages.c.message_id.in_(bindparam("ids", expanding=True)))
# All of a batch's mail in two statements (ids returned in the order of the rows).
_INSERT_MAIL = insert(Message.__table__).returning(Message.id, sort_by_parameter_order=True)
_INSERT_OUTBOX = insert(Outbox.__table__)
_INSERT_INCOMING = insert(Message.__table__)
_INSERT_EVENTS = insert(TicketEvent.__table__)


@dataclass(frozen=True)
class Threads:
    """What the batch's messages answer, asked once (``Batch.look_ahead``)."""

    asked: frozenset[str]  # every Message-ID the batch's messages answer
    found: dict[str, tuple[int, frozenset[str]]]  # those recorded before the batch ->
    #                        their ticket and whom that message was sent to
    own: frozenset[str]  # the batch's own Message-IDs: recorded, if at all, meanwhile
    tickets: list[Ticket]  # the tickets found, loaded as a reply needs them (and held:
    #                        the session keeps only weak references)


@dataclass
class _Waiting:
    """Rows written together at the next ``Batch.write``."""

    incoming: list[dict] = field(default_factory=list)
    mail: list[tuple[dict, dict]] = field(default_factory=list)  # (message, outbox row)
    events: list[dict] = field(default_factory=list)
    tickets: set[int] = field(default_factory=set)  # tickets with messages waiting


class Batch:
    """What one transaction knows and holds back (see the module's docstring)."""

    def __init__(self, tx: Session) -> None:
        self.tx = tx
        self.threads: Threads | None = None
        self.recorded_ids: dict[str, bool] = {}  # the batch's own Message-IDs: recorded?
        self.people: dict[str, Person | None] | None = None  # by address, once looked ahead
        self.next_number: int | None = None  # of the next ticket made in the transaction
        self.open_jobs: dict[int, list[Job]] = {}  # ticket id -> its jobs neither done
        #                                            nor cancelled (schedule.py)
        self.limits: dict[str, dict] = {"ticket": {}, "address": {}, "bounced": {}}
        self.latest: dict[str, tuple] = {}  # outbox.py's memo of the latest render/body
        self.waiting = _Waiting()
        # The message rows of the mail this batch wrote, in order, and what other modules
        # keep of the database for the batch (staffthread.py: each ticket's staff mail
        # read once a batch, then followed by these rows). A rollback forgets both.
        self.written_mail: list[dict] = []
        self.memo: dict[str, object] = {}
        if not tx.info.get(_BOUND):
            event.listen(tx, "before_commit", _before_commit)
            event.listen(tx, "after_soft_rollback", _after_soft_rollback)
            event.listen(tx, "after_transaction_end", _after_transaction_end)
            tx.info[_BOUND] = True
        tx.info[_BATCH] = self

    @staticmethod
    def of(tx: Session) -> Batch:
        """The batch of ``tx``'s transaction; a batch of one if it has none yet."""
        return tx.info.get(_BATCH) or Batch(tx)

    @staticmethod
    def current(tx: Session) -> Batch | None:
        return tx.info.get(_BATCH)

    # -- the look-ahead ---------------------------------------------------------------

    def look_ahead(self, inbounds: Sequence[Inbound]) -> list[int]:
        """Asked once for the batch, instead of message by message: which of its
        Message-IDs are recorded already, which tickets the messages it answers are on
        (and those tickets, with their people), and its senders and CC'd people.
        Returns those tickets' ids."""
        tx = self.tx
        own = [inbound.message_id for inbound in inbounds]
        answered = {i for inbound in inbounds for i in thread_ids(inbound)}
        rows = tx.connection().execute(_THREADED, {"ids": sorted({*own, *answered})}).all()
        recorded = {row.message_id for row in rows}
        self.recorded_ids = {message_id: message_id in recorded for message_id in own}
        found = {row.message_id: _threaded(row) for row in rows if row.message_id in answered}
        tickets = list(tx.scalars(
            select(Ticket).where(Ticket.id.in_({t for t, _ in found.values()}))
            .options(*TICKET_AND_PEOPLE)).unique()) if found else []
        self.threads = Threads(frozenset(answered), found, frozenset(own), tickets)
        self.look_ahead_people([address for inbound in inbounds for address in (
            inbound.sender.address, *(a.address for a in inbound.cc))])
        return [ticket.id for ticket in tickets]

    def look_ahead_people(self, addresses: Sequence[str]) -> None:
        """The batch's senders and the people they copy in, with one query."""
        self.people = dict.fromkeys(addresses)
        self.people.update({p.address: p for p in self.tx.scalars(
            select(Person).where(Person.address.in_(set(addresses))))})

    def recorded(self, message_id: str) -> bool:
        """Whether a message with this Message-ID is on a ticket already."""
        known = self.recorded_ids.get(message_id)
        if known is not None:
            return known
        return self.tx.connection().execute(
            _RECORDED, {"message_id": message_id}).first() is not None

    def note_recorded(self, message_id: str) -> None:
        if message_id in self.recorded_ids:
            self.recorded_ids[message_id] = True

    def ticket_of_ids(self, ids: Iterable[str]) -> tuple[int, frozenset[str]] | None:
        """The ticket of the first of these Message-IDs that is recorded, and whom that
        message was sent to."""
        ids = list(ids)
        ahead = self.threads
        if ahead is not None and ahead.asked.issuperset(ids) and ahead.own.isdisjoint(ids):
            # Answered by the look-ahead: none of them can have been recorded since (the
            # batch's own messages are the only ones this transaction records that anyone
            # could have answered).
            return next((ahead.found[i] for i in ids if i in ahead.found), None)
        if not self.pending_message_ids().isdisjoint(ids):
            self.write_all()  # it names a message of this batch, not written yet
        by_id = {row.message_id: _threaded(row)
                 for row in self.tx.connection().execute(_THREADED, {"ids": ids})}
        return next((by_id[i] for i in ids if i in by_id), None)

    # -- the caches -------------------------------------------------------------------

    def known_person(self, address: str) -> tuple[bool, Person | None]:
        """(known?, the person) from the look-ahead and the people made since."""
        if self.people is not None and address in self.people:
            return True, self.people[address]
        return False, None

    def note_new_person(self, found: Person) -> None:
        """A person made in the transaction has had no mail as a requester yet."""
        self.limits["address"][found.address] = 0
        if self.people is not None:
            self.people[found.address] = found

    def note_new_ticket(self, ticket: Ticket) -> None:
        """A ticket made in the transaction has no jobs and has sent nothing yet: nothing
        to ask when its status changes or its mail is counted."""
        self.limits["ticket"][ticket.id] = 0
        self.open_jobs[ticket.id] = []

    def forget_limits(self) -> None:
        """After a suppression is added: the counts no longer tell the truth, and the
        suppression (and the mail so far) must be in the database for the queries."""
        self.write_all()
        self.limits = {"ticket": {}, "address": {}, "bounced": {}}

    # -- rows held back ---------------------------------------------------------------

    def hold_incoming(self, row: dict) -> None:
        """An incoming message's row, written with the rest of the batch's."""
        self.waiting.tickets.add(row["ticket_id"])
        self.waiting.incoming.append(row)

    def hold_mail(self, message: dict, outbox_row: dict) -> None:
        """An outgoing mail's message row and outbox row (its message_row_id is the
        message's id, known once written)."""
        self.waiting.tickets.add(message["ticket_id"])
        self.waiting.mail.append((message, outbox_row))

    def hold_event(self, row: dict) -> None:
        # Nothing in a change reads its events back.
        self.waiting.events.append(row)

    def settle(self, ticket_id: int) -> None:
        """Before a ticket gets another message: its messages so far are written first
        (a ticket's messages are in id order, and incoming rows go in before mail)."""
        if ticket_id in self.waiting.tickets:
            self.write()

    def pending_message_ids(self) -> set[str]:
        """Message-IDs of the messages the transaction holds and has not written yet."""
        ids = {row["message_id"] for row in self.waiting.incoming}
        ids.update(message["message_id"] for message, _ in self.waiting.mail)
        ids.update(row.message_id for row in self.tx.new if isinstance(row, Message))
        return ids

    def write(self) -> None:
        """Write the rows held back, after what the ORM holds (the incoming messages
        above all: a ticket's messages are in id order, and the next mail threads after
        the last): one statement per kind of row, however many there are."""
        waiting, self.waiting = self.waiting, _Waiting()
        if not (waiting.incoming or waiting.mail or waiting.events):
            return
        self.tx.flush()
        connection = self.tx.connection()
        if waiting.incoming:
            connection.execute(_INSERT_INCOMING, waiting.incoming)
        if waiting.mail:
            ids = connection.execute(_INSERT_MAIL, [m for m, _ in waiting.mail]).scalars()
            self.written_mail.extend(m for m, _ in waiting.mail)
            connection.execute(_INSERT_OUTBOX, [
                {**row, "message_row_id": message_row_id}
                for (_, row), message_row_id in zip(waiting.mail, ids, strict=True)])
        if waiting.events:
            connection.execute(_INSERT_EVENTS, waiting.events)

    def write_all(self) -> None:
        """Everything the transaction holds so far into the database, for a plain
        statement to see."""
        self.write()
        self.tx.flush()

    # -- undoing ----------------------------------------------------------------------

    @contextmanager
    def savepoint(self, *touched: object) -> Iterator[Savepoint]:
        """A nested transaction, all or nothing: committed at the end of the block,
        rolled back by ``Savepoint.rollback()`` or an exception. What was held back
        before it is written first, so that its rollback undoes only its own work;
        ``touched`` (ORM objects) are expired on a rollback, to be read again."""
        self.write()
        savepoint = Savepoint(self, self.tx.begin_nested(), touched)
        try:
            yield savepoint
        except BaseException:
            savepoint.rollback()
            raise
        if not savepoint.undone:
            savepoint.nested.commit()

    def _forget(self) -> None:
        """After a rollback (a savepoint's too): what the undone work held back or
        cached is gone with it."""
        self.waiting = _Waiting()
        self.next_number = None  # numbers handed out in the undone work are reused
        self.open_jobs = {}  # jobs made or cancelled there are gone or expired
        self.people = None  # people made there are gone
        self.written_mail, self.memo = [], {}  # read again from the database


class Savepoint:
    """A batch's savepoint (``Batch.savepoint``)."""

    def __init__(self, batch: Batch, nested, touched: Sequence[object]) -> None:
        self.batch, self.nested, self.touched = batch, nested, touched
        self.undone = False

    def rollback(self) -> None:
        if self.undone:
            return
        self.undone = True
        self.nested.rollback()  # the listener forgets what the savepoint held or made
        for instance in self.touched:
            self.batch.tx.expire(instance)


def _threaded(row) -> tuple[int, frozenset[str]]:
    return row.ticket_id, frozenset(a.lower() for a in (*(row.to or ()), *(row.cc or ())))


# Bound to each session a batch is made for (Batch.__init__), never to every Session.
def _before_commit(tx: Session) -> None:
    batch = tx.info.get(_BATCH)
    if batch is not None:
        batch.write()


def _after_soft_rollback(tx: Session, _previous) -> None:
    batch = tx.info.get(_BATCH)
    if batch is not None:
        batch._forget()


def _after_transaction_end(tx: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost: the batch is over
        tx.info.pop(_BATCH, None)
