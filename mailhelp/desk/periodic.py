"""Mail on a schedule, sent once per occurrence: the morning queue (``[staff]
queue_digest``) to each technician.

The daemon asks ``run_due`` after each pass and wakes for ``next_due``; ``run --once
--now T`` asks it at T. What goes in the mail is decided in digest.py; this module
reads the tickets, records the occurrence (``periodic_mail``) in the same transaction
as the mail's outbox row, and logs one line per technician. The row's unique index
(kind, recipient, occurrence) is what stops a second runner: its copy of the row
fails, and its mail with it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ..config import Config
from ..db.models import PeriodicMail, Person, Ticket
from ..db.session import Database, transaction
from ..delivery import unticketed
from ..delivery.outbox import _render_or_bundled, subject_tag
from ..mail.parse import Address
from . import digest

log = logging.getLogger(__name__)

QUEUE_KIND = "queue"  # the outbox kind (and template) of the morning queue: staff mail
NOTHING = "nothing in the queue"


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
    due_at = digest.due(schedule, config.helpdesk.zone, config.calendar.holidays, now)
    if due_at is None:
        return 0  # not today, a holiday, or today's went out on an earlier day's run
    with db.sessions() as session:
        done = set(session.scalars(select(PeriodicMail.recipient).where(
            PeriodicMail.kind == digest.KIND, PeriodicMail.due_at == due_at)))
        todo = [a for a in config.staff.addresses if a not in done]
        if not todo:
            return 0
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
    address = queue.recipient
    try:
        with transaction(db) as tx:
            record = PeriodicMail(kind=digest.KIND, recipient=address, due_at=due_at,
                                  done_at=now, result=NOTHING)
            tx.add(record)
            tx.flush()  # a second runner's row fails here, before its mail is made
            if queue.empty:
                log.info("action=queue_digest to=%s tickets=0 due=%s sent=no reason=%s",
                         address, due_at.isoformat(), NOTHING)
                return 0
            variables = digest.variables(
                queue, helpdesk={"name": config.helpdesk.name,
                                 "address": config.helpdesk.address},
                tag=lambda number: subject_tag(config, number), zone=config.helpdesk.zone,
                now=now)
            rendered = _render_or_bundled(tx, config, QUEUE_KIND, variables, now)
            message_id = unticketed.enqueue(tx, config, QUEUE_KIND, Address("", address),
                                            rendered, now)
            record.message_id = message_id
            record.result = f"sent: {queue.size} tickets"
    except IntegrityError:
        log.info("action=queue_digest to=%s due=%s sent=no reason=another runner sent it",
                 address, due_at.isoformat())
        return 0
    log.info("action=queue_digest to=%s tickets=%d due=%s message=%s", address, queue.size,
             due_at.isoformat(), message_id)
    return 1
