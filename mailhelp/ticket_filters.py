"""The filters of ``tickets list`` and ``tickets export``, as one query.

A page of tickets is one SELECT with its requester and assignee joined in (and, for
JSON, the participants and surveys of the whole page in one more query each): never a
query per ticket. Each filter is served by an index of migration 0009 (status,
assignee, requester, school, category, created_at) or by 0010's search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo

from sqlalchemy import ColumnElement, Select, and_, or_, select, text
from sqlalchemy.orm import aliased, contains_eager, selectinload

from .db.models import Participant, Person, Survey, Ticket, raw_time, utc_text
from .durations import parse_duration
from .errors import UsageError
from .search import matching_ticket_ids, words

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# --status's pseudo-status (cli.py offers it): the tickets merged into another.
MERGED = "merged"


# The columns of a listing row (listing_query(columns=True)), in the table's order.
LISTED = ("id", "status", "priority", "created_at", "updated_at", "requester_address",
          "assignee_address", "school", "category", "subject")
# The columns of an export row (listing_query(exported=True)), in the CSV's order but
# the participants (export_participants(), a page at a time).
EXPORTED = ("id", "subject", "status", "priority", "requester", "assignee", "school",
            "room", "category", "created_at", "updated_at", "first_response_at",
            "resolved_at", "closed_at", "merged_into_id", "survey_rating", "survey_comment")
# Times in those rows are read as UTC text in a listing (db.models.utc_text, shown by
# clocktext.LocalTimes), as the driver gives them in an export (db.models.raw_time).
TIMES = frozenset({"created_at", "updated_at", "first_response_at", "resolved_at",
                   "closed_at"})


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    assignee: str = ""  # an address, or "none" for unassigned tickets
    requester: str = ""
    school: str = ""
    category: str = ""
    search: str = ""
    since: datetime | None = None  # opened at or after
    limit: int | None = None  # the newest N

    @classmethod
    def from_args(cls, args, now: datetime, zone: tzinfo) -> Filters:
        limit = getattr(args, "limit", None)
        if limit is not None and limit < 1:
            raise UsageError("--limit: give a number of tickets, 1 or more")
        return cls(statuses=tuple(dict.fromkeys(args.status or ())),
                   assignee=(args.assignee or "").strip().lower(),
                   requester=(args.requester or "").strip().lower(),
                   school=(args.school or "").strip(), category=(args.category or "").strip(),
                   search=args.search or "",
                   since=since_instant(args.since, now, zone) if args.since else None,
                   limit=limit)


def since_instant(text: str, now: datetime, zone: tzinfo) -> datetime:
    """``--since``: a duration back from now (``30d``), a date (midnight on the desk's
    clock) or an ISO 8601 instant (without a zone: the desk's)."""
    text = text.strip()
    if _DATE.match(text):
        try:
            return datetime.combine(date.fromisoformat(text), time(), zone)
        except ValueError:
            raise UsageError(f"--since: {text!r} is not a date") from None
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since: {text!r} is neither a duration (30d, 12h) nor a date "
                         "(2026-11-01)") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=zone)


def status_condition(statuses: tuple[str, ...]) -> ColumnElement[bool]:
    """Which tickets ``--status`` selects: none given, every ticket not merged; a status,
    the tickets in it that were not merged; ``merged``, the merged ones (all closed)."""
    stored = [s for s in statuses if s != MERGED]
    unmerged = Ticket.merged_into_id.is_(None)
    if stored:
        unmerged = and_(Ticket.status.in_(stored), unmerged)
    if MERGED not in statuses:
        return unmerged
    merged = Ticket.merged_into_id.is_not(None)
    return or_(unmerged, merged) if stored else merged


def listing_query(filters: Filters, dialect: str, *, people: bool = False,
                  columns: bool = False, exported: bool = False) -> Select:
    """The tickets the filters select, oldest first (with a limit: the newest N, still
    in that order). ``people``: participants and surveys too (the JSON objects).
    ``columns``: plain rows of what a listing shows (LISTED), not tickets: a screenful
    or a pipe of 100,000 tickets costs no ORM objects. ``exported``: plain rows of the
    CSV export's columns (EXPORTED; the participants are export_participants())."""
    requester, assignee = aliased(Person), aliased(Person)
    conditions = [status_condition(filters.statuses)]
    if filters.assignee == "none":
        conditions.append(Ticket.assignee_id.is_(None))
    elif filters.assignee:
        conditions.append(assignee.address == filters.assignee)
    if filters.requester:
        conditions.append(requester.address == filters.requester)
    if filters.school:
        conditions.append(Ticket.school == filters.school)
    if filters.category:
        conditions.append(Ticket.category == filters.category)
    if filters.since is not None:
        conditions.append(Ticket.created_at >= filters.since)
    if filters.search:
        found = words(filters.search)
        if not found:  # only punctuation: no word to look for, so no ticket has it
            conditions.append(Ticket.id.is_(None))
        for n, word in enumerate(found):
            conditions.append(Ticket.id.in_(select(matching_ticket_ids(dialect, word, n))))
    if exported:
        query = (select(*(getattr(Ticket, name) for name in EXPORTED[:4]),
                        requester.address.label("requester"),
                        assignee.address.label("assignee"),
                        *(_column(name, dialect) for name in EXPORTED[6:15]),
                        Survey.rating.label("survey_rating"),
                        Survey.comment.label("survey_comment"))
                 .select_from(Ticket).join(requester, Ticket.requester)
                 .outerjoin(assignee, Ticket.assignee)
                 .outerjoin(Survey, Survey.ticket_id == Ticket.id))
    elif columns:
        query = (select(*(_column(name, dialect, text=True) for name in LISTED[:5]),
                        requester.address.label("requester_address"),
                        assignee.address.label("assignee_address"),
                        *(_column(name, dialect) for name in LISTED[7:]))
                 .select_from(Ticket).join(requester, Ticket.requester)
                 .outerjoin(assignee, Ticket.assignee))
    else:
        query = (select(Ticket).join(requester, Ticket.requester)
                 .outerjoin(assignee, Ticket.assignee)
                 .options(contains_eager(Ticket.requester.of_type(requester)),
                          contains_eager(Ticket.assignee.of_type(assignee))))
    if people:
        query = query.options(
            selectinload(Ticket.participants).joinedload(Participant.person),
            selectinload(Ticket.survey))
    if filters.limit is not None:
        # The newest N by id, shown oldest first: the page's ids, then the page.
        newest = (select(Ticket.id).join(requester, Ticket.requester)
                  .outerjoin(assignee, Ticket.assignee).where(*conditions)
                  .order_by(Ticket.id.desc()).limit(filters.limit))
        return query.where(Ticket.id.in_(newest)).order_by(Ticket.id)
    return query.where(*conditions).order_by(Ticket.id)


def _column(name: str, dialect: str, text: bool = False):
    """A column of a listing (``text``: its times as UTC text, for clocktext) or of an
    export (times raw)."""
    column = getattr(Ticket, name)
    if name not in TIMES:
        return column
    return utc_text(column, dialect) if text else raw_time(column, dialect)


def quick_plans(session, dialect: str) -> None:
    """No JIT compilation for this read on PostgreSQL (SET LOCAL: this transaction
    only). A search's plan costs enough for PostgreSQL to compile it, about 60 ms
    (EXPLAIN ANALYZE: JIT Total) that a query of half a second never wins back: at
    100,000 tickets a two-word search runs 30 ms quicker without it, a page 40 ms."""
    if dialect == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def export_participants(session, ticket_ids: list[int]) -> dict[int, str]:
    """The CC'd addresses of a page of tickets, each ticket's space-separated in the
    order they joined (Ticket.participants' order): one query for the page."""
    found: dict[int, list[str]] = {}
    for ticket_id, address in session.execute(
            select(Participant.ticket_id, Person.address)
            .join(Person, Participant.person_id == Person.id)
            .where(Participant.ticket_id.in_(ticket_ids)).order_by(Participant.id)):
        found.setdefault(ticket_id, []).append(address)
    return {ticket_id: " ".join(addresses) for ticket_id, addresses in found.items()}
