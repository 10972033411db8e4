"""A batch's lookups, asked once for all its messages: which are recorded already, and
which tickets their replies answer. Moved here unchanged from workflow.py, to be
replaced by one Batch object (issue 17)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from ..db.models import Message, Participant, Ticket
from ..delivery.outbox import pending_message_ids, write_all
from ..mail.parse import Inbound
from .threads import thread_ids

# The lookups every message makes, built once and run as plain statements on the
# transaction's connection: they come before anything is added, so nothing need be
# flushed first, and the ORM's execution costs more than the query.
_messages = Message.__table__
_RECORDED = select(_messages.c.id).where(
    _messages.c.message_id == bindparam("message_id")).limit(1)
_THREADED = select(_messages.c.message_id, _messages.c.ticket_id, _messages.c.to,
                   _messages.c.cc).where(
    _messages.c.message_id.in_(bindparam("ids", expanding=True)))


# A reply's ticket with what its handling reads (who may join, who is told, whether it
# was surveyed), in one statement rather than four.
_TICKET_AND_PEOPLE = (joinedload(Ticket.requester), joinedload(Ticket.survey),
                      joinedload(Ticket.participants).joinedload(Participant.person))
RECORDED = "mailhelp_recorded"  # tx.info: {Message-ID: recorded?} for a batch
THREADS = "mailhelp_threads"  # tx.info: what the batch's replies answer (look_ahead)


@dataclass(frozen=True)
class _Threads:
    asked: frozenset[str]  # every Message-ID the batch's messages answer
    found: dict[str, tuple[int, frozenset[str]]]  # those recorded before the batch ->
    #                        their ticket and whom that message was sent to
    batch: frozenset[str]  # the batch's own Message-IDs: recorded, if at all, meanwhile
    tickets: list[Ticket]  # the tickets found, loaded as a reply needs them (and held:
    #                        the session keeps only weak references)


def look_ahead(tx: Session, inbounds: list[Inbound]) -> list[int]:
    """Asked once for a batch, instead of message by message: which of its Message-IDs
    are recorded already, which tickets the messages it answers are on (and those
    tickets, with their people). Returns those tickets' ids."""
    own = [inbound.message_id for inbound in inbounds]
    answered = {i for inbound in inbounds for i in thread_ids(inbound)}
    rows = tx.connection().execute(_THREADED, {"ids": sorted({*own, *answered})}).all()
    recorded = {row.message_id for row in rows}
    tx.info[RECORDED] = {message_id: message_id in recorded for message_id in own}
    found = {row.message_id: _threaded(row) for row in rows if row.message_id in answered}
    tickets = list(tx.scalars(select(Ticket).where(Ticket.id.in_({t for t, _ in found.values()}))
                              .options(*_TICKET_AND_PEOPLE)).unique()) if found else []
    tx.info[THREADS] = _Threads(frozenset(answered), found, frozenset(own), tickets)
    return [ticket.id for ticket in tickets]


def is_recorded(tx: Session, inbound: Inbound) -> bool:
    """Was a message with this Message-ID recorded before (the batch's look-ahead knows,
    else one query)?"""
    recorded = tx.info.get(RECORDED, {}).get(inbound.message_id)
    if recorded is None:
        recorded = tx.connection().execute(
            _RECORDED, {"message_id": inbound.message_id}).first() is not None
    return recorded


def mark_recorded(tx: Session, inbound: Inbound) -> None:
    """A later message of the batch with the same Message-ID is a duplicate."""
    if RECORDED in tx.info:
        tx.info[RECORDED][inbound.message_id] = True


def _threaded(row) -> tuple[int, frozenset[str]]:
    return row.ticket_id, frozenset(a.lower() for a in (*(row.to or ()), *(row.cc or ())))


def _ticket_of_ids(tx: Session, ids: Iterable[str]) -> tuple[int, frozenset[str]] | None:
    ids = list(ids)
    ahead: _Threads | None = tx.info.get(THREADS)
    if ahead is not None and ahead.asked.issuperset(ids) and ahead.batch.isdisjoint(ids):
        # Answered by the batch's look-ahead: none of them can have been recorded since
        # (the batch's own messages are the only ones this transaction records that
        # anyone could have answered).
        return next((ahead.found[i] for i in ids if i in ahead.found), None)
    if not pending_message_ids(tx).isdisjoint(ids):
        write_all(tx)  # it names a message of this batch, not written yet
    by_id = {row.message_id: _threaded(row)
             for row in tx.connection().execute(_THREADED, {"ids": ids})}
    for message_id in ids:
        if message_id in by_id:
            return by_id[message_id]
    return None

