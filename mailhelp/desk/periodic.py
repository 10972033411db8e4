"""Mail on a schedule, sent once per occurrence: the morning queue (``[staff]
queue_digest``) to each technician, and the rule every such mail keeps (``unsent``,
``once``; the weekly digest, reports/mailing.py, uses them too).

The daemon asks ``run_due`` after each pass and wakes for ``next_due``; ``run --once
--now T`` asks it at T. An occurrence goes out that day, never a day late
(digest.due), and never twice: it is recorded (``periodic_mail``) in the same
transaction as the mail's outbox row, and the row's unique index (kind, recipient,
occurrence) stops a second runner: its copy of the row fails, and its mail with it.
What goes in the morning queue is decided in digest.py; this module reads the tickets
and logs one line per technician.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from ..config import Config
from ..db.models import PeriodicMail, Person, Ticket
from ..db.session import Database, transaction
from ..delivery import unticketed
from ..delivery.outbox import _render_or_bundled, subject_tag
from ..mail.parse import Address
from ..weekly import DateSpan, WeeklyAt
from . import digest

log = logging.getLogger(__name__)

QUEUE_KIND = "queue"  # the outbox kind (and template) of the morning queue: staff mail
NOTHING = "nothing in the queue"

# mail(tx, recipient) -> (result, Message-ID, or None when nothing was sent)
Compose = Callable[[Session, str], tuple[str, str | None]]


def unsent(db: Database, kind: str, schedule: WeeklyAt, zone: ZoneInfo,
           holidays: Sequence[DateSpan], recipients: Sequence[str],
           now: datetime) -> tuple[datetime | None, list[str]]:
    """The occurrence of ``schedule`` due at ``now`` (None: not today, a holiday, or
    today's went out on an earlier day's run) and those of ``recipients`` who have no
    ``kind`` row for it yet."""
    due_at = digest.due(schedule, zone, holidays, now)
    if due_at is None:
        return None, []
    with db.sessions() as session:
        done = set(session.scalars(select(PeriodicMail.recipient).where(
            PeriodicMail.kind == kind, PeriodicMail.due_at == due_at)))
    return due_at, [address for address in recipients if address not in done]


def once(db: Database, kind: str, recipient: str, due_at: datetime, now: datetime,
         mail: Compose, action: str) -> tuple[str, str | None] | None:
    """Record the occurrence ``due_at`` of ``kind`` for ``recipient`` and make its mail
    (``mail(tx, recipient)`` enqueues it) in one transaction; return the mail's result
    and Message-ID, or None, with a log line, if a second runner recorded it first."""
    try:
        with transaction(db) as tx:
            record = PeriodicMail(kind=kind, recipient=recipient, due_at=due_at,
                                  done_at=now, result="")
            tx.add(record)
            tx.flush()  # a second runner's row fails here, before its mail is made
            result, message_id = mail(tx, recipient)
            record.result, record.message_id = result, message_id
    except IntegrityError:
        log.info("action=%s to=%s due=%s sent=no reason=another runner sent it", action,
                 recipient, due_at.isoformat())
        return None
    return result, message_id


def next_due(config: Config, now: datetime) -> datetime | None:
    """When the next scheduled mail (the morning queue, the director's weekly digest)
    is due (aware UTC), or None if none is set up."""
    from ..reports import mailing

    dues = [due for due in (_queue_next_due(config, now), mailing.next_due(config, now))
            if due is not None]
    return min(dues) if dues else None


def run_due(db: Database, config: Config, now: datetime) -> int:
    """The scheduled mail due at ``now``: the morning queue, then the weekly digest
    (reports/mailing.py, recorded here too as kind "digest"); how many were queued."""
    from ..reports import mailing

    return _queue_run_due(db, config, now) + mailing.run_due(db, config, now)


def _queue_next_due(config: Config, now: datetime) -> datetime | None:
    schedule = config.staff.queue_digest
    if schedule is None or not config.staff.addresses:
        return None
    return digest.next_due(schedule, config.helpdesk.zone, now)


def _queue_run_due(db: Database, config: Config, now: datetime) -> int:
    """Send the morning queue due at ``now`` to each technician who has not had it;
    return how many mails were queued."""
    schedule = config.staff.queue_digest
    if schedule is None or not config.staff.addresses:
        return 0
    due_at, todo = unsent(db, digest.KIND, schedule, config.helpdesk.zone,
                          config.calendar.holidays, config.staff.addresses, now)
    if not todo:
        return 0
    with db.sessions() as session:
        tickets = _active_tickets(session)
    queued = 0
    for queue in digest.queues(tickets, todo).values():
        queued += _send(db, config, queue, due_at, now)
    return queued


def _active_tickets(session) -> list[digest.QueueTicket]:
    """Every ticket that is new, open or pending: one query, one pass."""
    requester, assignee = aliased(Person), aliased(Person)
    rows = session.execute(
        select(Ticket.id, Ticket.subject, Ticket.status, Ticket.priority, Ticket.updated_at,
               requester.name, requester.address, assignee.address)
        .join(requester, Ticket.requester_id == requester.id)
        .outerjoin(assignee, Ticket.assignee_id == assignee.id)
        .where(Ticket.status.in_(digest.ACTIVE)))
    return [digest.QueueTicket(id=row[0], subject=row[1] or "", status=row[2],
                               priority=row[3], requester=" ".join((row[5] or "").split())
                               or row[6], assignee=row[7] or "", since=row[4])
            for row in rows]


def _send(db: Database, config: Config, queue: digest.Queue, due_at: datetime,
          now: datetime) -> int:
    def mail(tx: Session, address: str) -> tuple[str, str | None]:
        if queue.empty:
            return NOTHING, None
        variables = digest.variables(
            queue, helpdesk={"name": config.helpdesk.name, "address": config.helpdesk.address},
            tag=lambda number: subject_tag(config, number), zone=config.helpdesk.zone, now=now)
        rendered = _render_or_bundled(tx, config, QUEUE_KIND, variables, now)
        return f"sent: {queue.size} tickets", unticketed.enqueue(
            tx, config, QUEUE_KIND, Address("", address), rendered, now)

    address = queue.recipient
    sent = once(db, digest.KIND, address, due_at, now, mail, "queue_digest")
    if sent is None:
        return 0
    message_id = sent[1]
    if message_id is None:
        log.info("action=queue_digest to=%s tickets=0 due=%s sent=no reason=%s",
                 address, due_at.isoformat(), NOTHING)
        return 0
    log.info("action=queue_digest to=%s tickets=%d due=%s message=%s", address, queue.size,
             due_at.isoformat(), message_id)
    return 1
