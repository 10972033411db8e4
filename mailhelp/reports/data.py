"""The rows a report is made from, read with three set-based queries (no query per
ticket): the status changes since the period began, the tickets the period can see
(opened in it, still active, or changed since it began), and the surveys sent in it.
Plain values out; figures.py does the counting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import String, and_, or_, select, type_coerce
from sqlalchemy.orm import Session

from ..db.models import Person, Survey, Ticket, TicketEvent
from ..states import DONE
from .periods import Period

ACTIVE = ("new", "open", "pending")


# Tuples, not frozen dataclasses: a year's report makes 100,000s of these, and a frozen
# dataclass's __init__ costs several times a tuple's.
class TicketRow(NamedTuple):
    id: int
    subject: str
    status: str  # now
    created_at: datetime
    first_response_at: datetime | None
    assignee: str  # address, "" if nobody
    school: str
    category: str
    priority: str = "normal"


class Change(NamedTuple):
    """One change of status, from ``old`` to ``new``, by ``actor``, at ``stamp`` (as the
    driver gave it: read as a time only when a figure needs it, ``at``); ``after``:
    whether it is at or after the period's end (None: compare ``at``)."""

    ticket_id: int
    stamp: datetime | str
    actor: str
    old: str
    new: str
    after: bool | None = None

    @property
    def at(self) -> datetime:
        return _aware(self.stamp)

    @property
    def resolves(self) -> bool:
        # Closed straight from an active state is a resolution too.
        return self.new == "resolved" or (self.new == "closed" and self.old not in DONE)

    @property
    def reopens(self) -> bool:
        return self.old in DONE and self.new not in DONE


class SurveyRow(NamedTuple):
    ticket_id: int
    sent_at: datetime
    rating: int | None
    comment: str


@dataclass(frozen=True)
class Rows:
    tickets: dict[int, TicketRow]
    changes: list[Change]  # since the period's start (to now), oldest first
    surveys: list[SurveyRow]  # sent in the period


def _aware(value) -> datetime | None:
    """A time as the driver gave it: SQLite's text (read as text, see _time: parsing it
    with datetime.fromisoformat is a fifth of the cost of the column type's own
    processing, which at 100,000 tickets was most of the report's time), or a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")  # SQLite keeps UTC, without zone
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fetch(session: Session, period: Period) -> Rows:
    raw = session.get_bind().dialect.name == "sqlite"
    connection = session.connection()  # Core rows: the ORM's loading costs as much again

    def _time(column):
        return type_coerce(column, String) if raw else column

    changed = (select(TicketEvent.ticket_id)
               .where(TicketEvent.action == "status", TicketEvent.at >= period.start))
    changes = []
    # A year holds 100,000s of changes: each keeps its time as read (the end compared
    # in SQL), and figures.py reads the time of the few it needs.
    for ticket_id, at, actor, detail, after in connection.execute(
            select(TicketEvent.ticket_id, _time(TicketEvent.at), TicketEvent.actor,
                   TicketEvent.detail, TicketEvent.at >= period.end)
            .where(TicketEvent.action == "status", TicketEvent.at >= period.start)
            .order_by(TicketEvent.at, TicketEvent.id)).all():
        old, _, new = detail.partition(" -> ")
        changes.append(Change(ticket_id, at, actor, old.strip(), new.strip(), bool(after)))
    tickets = {}
    for row in connection.execute(
            select(Ticket.id, Ticket.subject, Ticket.status, _time(Ticket.created_at),
                   _time(Ticket.first_response_at), Person.address, Ticket.school,
                   Ticket.category, Ticket.priority)
            .outerjoin(Person, Ticket.assignee_id == Person.id)
            # A ticket merged into another is that one's request, not one of its own.
            .where(Ticket.created_at < period.end, Ticket.merged_into_id.is_(None), or_(
                Ticket.created_at >= period.start, Ticket.status.in_(ACTIVE),
                Ticket.id.in_(changed)))).all():
        tickets[row[0]] = TicketRow(row[0], row[1] or "", row[2], _aware(row[3]),
                                    _aware(row[4]), row[5] or "", row[6] or "", row[7] or "",
                                    row[8] or "normal")
    surveys = [SurveyRow(row[0], _aware(row[1]), row[2], row[3] or "")
               for row in connection.execute(
                   select(Survey.ticket_id, _time(Survey.sent_at), Survey.rating,
                          Survey.comment)
                   .where(and_(Survey.sent_at >= period.start, Survey.sent_at < period.end))
                   .order_by(Survey.sent_at, Survey.id)).all()]
    missing = {s.ticket_id for s in surveys} - tickets.keys()
    if missing:  # a survey sent in the period on a ticket done before it began
        for row in connection.execute(
                select(Ticket.id, Ticket.subject, Ticket.status, _time(Ticket.created_at),
                       _time(Ticket.first_response_at), Person.address, Ticket.school,
                       Ticket.category, Ticket.priority)
                .outerjoin(Person, Ticket.assignee_id == Person.id)
                .where(Ticket.id.in_(sorted(missing)), Ticket.merged_into_id.is_(None))).all():
            tickets[row[0]] = TicketRow(row[0], row[1] or "", row[2], _aware(row[3]),
                                        _aware(row[4]), row[5] or "", row[6] or "",
                                        row[7] or "", row[8] or "normal")
    return Rows(tickets, changes, surveys)
