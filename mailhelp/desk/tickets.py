"""The small state changes every part of the help desk makes to a ticket.

Used by the handlers (incoming mail, the web's survey answers) and lifecycle.py (timed
work), inside their transactions. A status change also reschedules the ticket's timed
work.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Participant, Person, Ticket
from ..errors import MailhelpError
from ..mail.parse import Address
from ..states import TicketStatus
from . import schedule
from .batch import Batch

_LAST_NUMBER = select(func.coalesce(func.max(Ticket.id), 0))
# Held until the transaction ends: one transaction at a time makes tickets (PostgreSQL;
# SQLite's write lock, taken at BEGIN, does the same there).
_NUMBERS_LOCK = text("SELECT pg_advisory_xact_lock(7099183017)")


def ticket_number(tx: Session) -> int:
    """The number for a ticket made now in ``tx``.

    Numbered here rather than by the database's sequence, so that a new ticket need not
    be written the moment it is made (its number is in the subject of its first mail):
    a batch's new tickets are written with one INSERT at its end. The transaction has
    the sole right to make tickets until it ends, and a number is the highest so far
    plus one: no gaps, even where a transaction was rolled back (its batch forgets the
    numbers handed out in work undone).
    """
    batch = Batch.of(tx)
    number = batch.next_number
    if number is None:
        connection = tx.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(_NUMBERS_LOCK)
        number = connection.execute(_LAST_NUMBER).scalar_one() + 1
    batch.next_number = number + 1
    return number


def person(tx: Session, address: Address, now: datetime, flush: bool = True) -> Person:
    """The person with this address, created on first sight; a new display name is kept.

    ``flush=False``: a new person gets an id with the next flush (a new ticket's
    requester: the ticket's own flush writes both)."""
    batch = Batch.of(tx)
    known, found = batch.known_person(address.address)
    if not known:
        found = tx.scalar(select(Person).where(Person.address == address.address))
    if found is None:
        found = Person(address=address.address, name=address.name[:200], created_at=now)
        tx.add(found)
        if flush:
            tx.flush()
        batch.note_new_person(found)
    elif address.name and not found.name:
        found.name = address.name[:200]
    return found


def add_participant(tx: Session, ticket: Ticket, who: Person, now: datetime,
                    actor: str | None = None) -> None:
    if who.id == ticket.requester_id or any(p.person_id == who.id for p in ticket.participants):
        return
    ticket.participants.append(Participant(person_id=who.id, person=who, added_at=now))
    event(tx, ticket, now, actor or who.address, "participant_added", who.address)


# The statuses a ticket may move to from each; a ticket is made NEW and never returns
# to it. Staff commands (#open, #pending, #resolve, #close) may move any ticket anywhere
# else; mail and the timed jobs use a part of this.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.NEW: frozenset({TicketStatus.OPEN, TicketStatus.PENDING,
                                 TicketStatus.RESOLVED, TicketStatus.CLOSED}),
    TicketStatus.OPEN: frozenset({TicketStatus.PENDING, TicketStatus.RESOLVED,
                                  TicketStatus.CLOSED}),
    TicketStatus.PENDING: frozenset({TicketStatus.OPEN, TicketStatus.RESOLVED,
                                     TicketStatus.CLOSED}),
    TicketStatus.RESOLVED: frozenset({TicketStatus.OPEN, TicketStatus.PENDING,
                                      TicketStatus.CLOSED}),
    TicketStatus.CLOSED: frozenset({TicketStatus.OPEN, TicketStatus.PENDING,
                                    TicketStatus.RESOLVED}),
}


class TransitionError(MailhelpError):
    """A ticket was asked to move to a status it may not move to from its own."""


def set_status(tx: Session, config: Config, ticket: Ticket, status: str, actor: str,
               now: datetime) -> None:
    """Change the status, record who did it, and reschedule reminders, closing, survey.

    The one way a ticket's status changes; TRANSITIONS says which changes there are."""
    if ticket.status == status:
        return
    status = TicketStatus(status)
    if status not in TRANSITIONS[TicketStatus(ticket.status)]:
        raise TransitionError(f"ticket #{ticket.id}: no change of status from "
                              f"{ticket.status} to {status}")
    event(tx, ticket, now, actor, "status", f"{ticket.status} -> {status}")
    ticket.status = status
    if status == TicketStatus.RESOLVED:
        ticket.resolved_at, ticket.resolved_by = now, actor
    elif status == TicketStatus.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
        ticket.resolved_by = ticket.resolved_by or actor
    else:
        ticket.resolved_at = ticket.closed_at = None
        ticket.resolved_by = ""
    ticket.updated_at = now
    schedule.reschedule(tx, config, ticket, now)


def event(tx: Session, ticket: Ticket, now: datetime, actor: str, action: str,
          detail: str) -> None:
    # Written with the rest of the batch's rows: nothing in a change reads them back.
    Batch.of(tx).hold_event({"ticket_id": ticket.id, "at": now, "actor": actor, "action": action,
                    "detail": detail})
