"""The morning queue (``[staff] queue_digest``): when it is due, and what goes in each
technician's mail. Pure: plain values in, plain values out; periodic.py reads the
tickets, records the occurrence and queues the mail.

Each technician gets their own open and pending tickets, the unassigned ones waiting
on staff, and the desk's oldest waiting, each with ``mailto:`` actions (take,
resolve): a link composes a mail to the help address whose subject carries the
ticket's tag and whose body is the command, which the desk reads as that staff
member's command on that ticket (threads.find_ticket, commands.parse).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ..states import TicketStatus
from ..weekly import DateSpan, WeeklyAt

KIND = "queue_digest"  # periodic_mail.kind
CAP = 50  # tickets shown in each list; "and N more" beyond
OLDEST = 5  # the desk's longest waiting, whoever has them
SUBJECT_CHARS = 120  # of a ticket's subject, in the mail and in an action's subject

ACTIVE = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
WAITING = frozenset({TicketStatus.NEW, TicketStatus.OPEN})  # on staff, not the requester
_PRIORITY = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


@dataclass(frozen=True)
class QueueTicket:
    """One active ticket as the queue shows it."""

    id: int
    subject: str
    status: str
    priority: str
    requester: str  # as staff see the name (or the address)
    assignee: str  # address, "" if nobody
    since: datetime  # its last change (aware): how long it has waited

    @property
    def waiting(self) -> bool:
        return self.status in WAITING


@dataclass(frozen=True)
class Listing:
    tickets: tuple[QueueTicket, ...]
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.tickets)


@dataclass(frozen=True)
class Queue:
    """What one technician's mail lists."""

    recipient: str
    mine: Listing
    unassigned: Listing
    oldest: tuple[QueueTicket, ...]

    @property
    def size(self) -> int:
        """Their own tickets and the unassigned ones: what is theirs to do."""
        return self.mine.total + self.unassigned.total

    @property
    def empty(self) -> bool:
        return self.size == 0


# When ------------------------------------------------------------------------------

def due(schedule: WeeklyAt, zone: ZoneInfo, holidays: Sequence[DateSpan],
        now: datetime) -> datetime | None:
    """The occurrence to send at ``now`` (aware UTC), or None: the latest one at or before
    ``now`` in desk time, if it is still the same day (one missed while the desk was
    down goes out when it is back that day, never a day late) and not a holiday."""
    local = now.astimezone(zone)
    occurrence = schedule.latest(local.replace(tzinfo=None))
    if occurrence.date() != local.date():
        return None
    if any(occurrence.date() in span for span in holidays):
        return None
    return _utc(occurrence, zone)


def next_due(schedule: WeeklyAt, zone: ZoneInfo, now: datetime) -> datetime:
    """The first occurrence after ``now`` (aware UTC): when the daemon should wake."""
    local = now.astimezone(zone).replace(tzinfo=None)
    return _utc(schedule.following(local), zone)


def _utc(wall: datetime, zone: ZoneInfo) -> datetime:
    # Wall-clock time in the desk's zone; a time the clocks skip (02:30 on the night
    # they go forward) is read with the offset before the change, as zoneinfo does.
    return wall.replace(tzinfo=zone).astimezone(UTC)


# What --------------------------------------------------------------------------------

def queues(tickets: Iterable[QueueTicket], recipients: Sequence[str],
           cap: int = CAP, oldest: int = OLDEST) -> dict[str, Queue]:
    """Each recipient's queue, from the desk's active tickets: one pass over them, then
    the ``cap`` first of each list (heapq: no full sort of a long list)."""
    wanted = {address: [] for address in recipients}
    unassigned: list[QueueTicket] = []
    waiting: list[QueueTicket] = []
    for ticket in tickets:
        if ticket.assignee in wanted:
            wanted[ticket.assignee].append(ticket)
        elif not ticket.assignee and ticket.waiting:
            unassigned.append(ticket)
        if ticket.waiting:
            waiting.append(ticket)
    shared = Listing(tuple(heapq.nsmallest(cap, unassigned, key=_unassigned_order)),
                     len(unassigned))
    longest = tuple(heapq.nsmallest(oldest, waiting, key=_age_order))
    return {address: Queue(address, Listing(tuple(heapq.nsmallest(cap, mine, key=_mine_order)),
                                            len(mine)), shared, longest)
            for address, mine in wanted.items()}


def _mine_order(ticket: QueueTicket) -> tuple:
    # Waiting on them before waiting on the requester, then the most urgent, the oldest.
    return (not ticket.waiting, _PRIORITY.get(ticket.priority, 2), ticket.since, ticket.id)


def _unassigned_order(ticket: QueueTicket) -> tuple:
    return (_PRIORITY.get(ticket.priority, 2), ticket.since, ticket.id)


def _age_order(ticket: QueueTicket) -> tuple:
    return (ticket.since, ticket.id)


# How it reads ----------------------------------------------------------------------

def mailto(to: str, subject: str, body: str) -> str:
    """A ``mailto:`` URL (RFC 6068): everything but unreserved characters percent-encoded
    (a ``+`` too, which some clients read as a space), line breaks as ``%0D%0A``."""
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return (f"mailto:{quote(to, safe='@+')}?subject={quote(subject, safe='')}"
            f"&body={quote(body, safe='')}")


def action(help_address: str, tag: str, subject: str, command: str) -> str:
    """The link that composes ``#command`` on the ticket tagged ``tag``: the desk finds
    the ticket by the tag in the subject (there is no In-Reply-To in such a mail)."""
    return mailto(help_address, f"[{tag}] {_short(subject)}", f"#{command}\n")


def age(since: datetime, now: datetime) -> str:
    """How long ago, in the unit a person would say: 40 min, 5 h, 3 days."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _short(subject: str) -> str:
    line = " ".join(str(subject or "").split()) or "(no subject)"
    return line if len(line) <= SUBJECT_CHARS else line[:SUBJECT_CHARS - 1] + "…"


def variables(queue: Queue, *, helpdesk: dict, tag: Callable[[int | str], str], zone: ZoneInfo,
              now: datetime) -> dict:
    """What templates/queue.*.j2 get."""
    address = helpdesk["address"]

    def row(ticket: QueueTicket) -> dict:
        ticket_tag = tag(ticket.id)
        mine = ticket.assignee == queue.recipient
        return {"id": ticket.id, "tag": ticket_tag, "subject": _short(ticket.subject),
                "status": ticket.status, "priority": ticket.priority,
                "requester": ticket.requester, "assignee": ticket.assignee,
                "age": age(ticket.since, now), "waiting": ticket.waiting,
                # Taking one's own ticket would change nothing.
                "take": "" if mine else action(address, ticket_tag, ticket.subject, "take"),
                "resolve": action(address, ticket_tag, ticket.subject, "resolve")}

    def listing(found: Listing) -> dict:
        return {"tickets": [row(t) for t in found.tickets], "total": found.total,
                "more": found.more}

    local = now.astimezone(zone)
    return {"helpdesk": helpdesk, "staff": {"address": queue.recipient}, "tag_example": tag("N"),
            "day": f"{local:%A} {local.day} {local:%B}",
            "mine": listing(queue.mine), "unassigned": listing(queue.unassigned),
            "oldest": [row(t) for t in queue.oldest]}


def sample(helpdesk: dict, tag: Callable[[int | str], str]) -> dict:
    """The variables of a small queue, for `mailhelp check` and template authors."""
    now = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
    ticket = QueueTicket(42, "Projector in room 12", "open", "normal", "Jane Teacher",
                         "tech1@example.org", now - timedelta(days=2))
    other = QueueTicket(43, "Printer jam", "new", "high", "Bob Miller", "",
                        now - timedelta(hours=5))
    found = queues([ticket, other], ["tech1@example.org"])["tech1@example.org"]
    return variables(found, helpdesk=helpdesk, tag=tag, zone=ZoneInfo("UTC"), now=now)
