"""The rows a report is made from, read with set-based queries (no query per ticket):
the status changes since the period began, the tickets the period can see (opened in
it, or changed since it began), and the surveys sent in it. Plain values out;
figures.py does the counting.

The backlog that stood through the whole period (tickets made before it, still active,
not changed since it began: open at its start and at its end, in no other figure) is
counted in SQL, per group, with its oldest tickets named (``Standing``): a desk with
a long backlog would otherwise read and weigh every one of them for two numbers."""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import NamedTuple

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from ..db.models import Person, Survey, Ticket, TicketEvent, as_utc, raw_time
from ..states import DONE
from .periods import Period

ACTIVE = ("new", "open", "pending")
OLDEST = 10  # the oldest open tickets a report names, per group
MERGE_HOPS = 5  # desk/threads.MERGE_HOPS (not imported: that pulls in the mail parser)
CHUNK = 5_000  # ids a query names at most (SQLite allows 32,766 parameters)
NONE = "(none)"  # the group of a ticket with no assignee, school or category


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
        return as_utc(self.stamp)

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


class Standing(NamedTuple):
    """The backlog that stood through the period: how many, and the oldest; the same
    per group (name: count, oldest) when the report is grouped."""

    count: int = 0
    oldest: list[TicketRow] = []
    groups: dict[str, tuple[int, list[TicketRow]]] = {}


@dataclass(frozen=True)
class Rows:
    tickets: dict[int, TicketRow]
    changes: list[Change]  # since the period's start (to now), oldest first
    surveys: list[SurveyRow]  # sent in the period
    standing: Standing = Standing()


def fetch(session: Session, period: Period, by: str | None = None) -> Rows:
    dialect = session.get_bind().dialect.name
    connection = session.connection()  # Core rows: the ORM's loading costs as much again

    def _time(column):  # as the driver gives it; as_utc reads the few needed as times
        return raw_time(column, dialect)

    def ticket_rows(*where):
        return (select(Ticket.id, Ticket.subject, Ticket.status, _time(Ticket.created_at),
                       _time(Ticket.first_response_at), Person.address, Ticket.school,
                       Ticket.category, Ticket.priority)
                .outerjoin(Person, Ticket.assignee_id == Person.id)
                # A ticket merged into another is that one's request, not one of its own.
                .where(Ticket.merged_into_id.is_(None), *where))

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
    # The tickets opened in the period, then by id those it changed or surveyed that
    # were opened before (a few hundred in a year; "or id in (changed)" in one query
    # made SQLite look up each changed ticket, most of them opened in the period).
    tickets = {row[0]: _ticket(row) for row in connection.execute(ticket_rows(
        Ticket.created_at >= period.start, Ticket.created_at < period.end)).all()}
    surveys = [SurveyRow(row[0], as_utc(row[1]), row[2], row[3] or "")
               for row in connection.execute(
                   select(Survey.ticket_id, _time(Survey.sent_at), Survey.rating,
                          Survey.comment)
                   .where(and_(Survey.sent_at >= period.start, Survey.sent_at < period.end))
                   .order_by(Survey.sent_at, Survey.id)).all()]
    changed = {c.ticket_id for c in changes}
    earlier = sorted((changed | {s.ticket_id for s in surveys}) - tickets.keys())
    for at in range(0, len(earlier), CHUNK):
        for row in connection.execute(ticket_rows(Ticket.id.in_(earlier[at:at + CHUNK]),
                                                  Ticket.created_at < period.end)).all():
            tickets[row[0]] = _ticket(row)
    lost = {s.ticket_id for s in surveys} - tickets.keys()
    if lost:  # surveys on merged tickets: theirs is the survivor's request now
        survivors = _survivors(connection, lost)
        wanted = sorted(set(survivors.values()) - tickets.keys())
        for row in connection.execute(ticket_rows(Ticket.id.in_(wanted),
                                                  Ticket.created_at < period.end)).all():
            tickets[row[0]] = _ticket(row)
        surveys = [s._replace(ticket_id=survivors.get(s.ticket_id, s.ticket_id))
                   for s in surveys]
    # Ordered by id: SQLite then scans the table (a few ms) instead of looking up the
    # three quarters of it that the index on created_at would find, one by one.
    group = (Person.address if by == "assignee" else getattr(Ticket, by)) if by else None
    standing = (select(Ticket.id, _time(Ticket.created_at), group)
                .outerjoin(Person, Ticket.assignee_id == Person.id)
                .where(Ticket.merged_into_id.is_(None), Ticket.status.in_(ACTIVE),
                       Ticket.created_at < period.start).order_by(Ticket.id))
    # Those read above are counted from their own rows (a survivor of a merge, say,
    # that stood through the period): not twice.
    return Rows(tickets, changes, surveys,
                _standing(connection, ticket_rows, standing, by, changed | tickets.keys()))


def _survivors(connection, ids: set[int]) -> dict[int, int]:
    """Each merged ticket of ``ids`` -> the ticket it was merged into, followed through
    later merges (at most MERGE_HOPS, as desk/threads.follow_merges does)."""
    survivor = {i: i for i in ids}
    for _ in range(MERGE_HOPS):
        into = dict(connection.execute(
            select(Ticket.id, Ticket.merged_into_id)
            .where(Ticket.id.in_(sorted(set(survivor.values()))),
                   Ticket.merged_into_id.is_not(None))).all())
        moved = {i: into[s] for i, s in survivor.items() if s in into and into[s] not in ids}
        if not moved:
            break
        survivor.update(moved)
        ids = ids | set(moved.values())
    return {i: s for i, s in survivor.items() if s != i}


def _ticket(row) -> TicketRow:
    return TicketRow(row[0], row[1] or "", row[2], as_utc(row[3]), as_utc(row[4]),
                     row[5] or "", row[6] or "", row[7] or "", row[8] or "normal")


def _standing(connection, ticket_rows, query, by: str | None,
              read_already: set[int]) -> Standing:
    """The standing backlog: ``query``'s rows (id, created, group) less those that
    changed state since the period began or were read whole already
    (``read_already``), counted per group of ``by``, and the oldest OLDEST of each
    group (and of all) read whole."""
    groups: dict[str, list] = defaultdict(list)
    for row in connection.execute(query).all():  # fetchall: a third of fetching by row
        if row[0] not in read_already:
            groups[(row[2] or NONE) if by else ""].append(row)
    age = itemgetter(1, 0)  # created, then id (SQLite's text sorts as its time does)
    chosen = {name: heapq.nsmallest(OLDEST, rows, key=age) for name, rows in groups.items()}
    first = heapq.nsmallest(OLDEST, [r for rows in chosen.values() for r in rows], key=age)
    ids = sorted({row[0] for rows in chosen.values() for row in rows})
    whole = {row[0]: _ticket(row) for at in range(0, len(ids), CHUNK)
             for row in connection.execute(ticket_rows(Ticket.id.in_(ids[at:at + CHUNK])))}

    def read(rows) -> list[TicketRow]:
        return [whole[row[0]] for row in rows if row[0] in whole]

    return Standing(sum(map(len, groups.values())), read(first),
                    {name: (len(groups[name]), read(rows)) for name, rows in chosen.items()}
                    if by else {})
