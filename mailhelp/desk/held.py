"""Mail the limits held back, noted where staff look: on the ticket, as an event, and
once per ticket in a mail to staff (the next held mail on it is only logged and shown
as suppressed in `tickets show`)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Ticket, TicketEvent
from ..delivery.outbox import AUTO_GENERATED, Draft, enqueue
from ..mail.parse import Address
from .batch import Batch
from .notices import variables
from .staffthread import staff_threads
from .tickets import event

log = logging.getLogger(__name__)

ACTION = "mail_suppressed"  # the ticket event's action
_events = TicketEvent.__table__
_NOTED = select(_events.c.id).where(_events.c.action == ACTION).limit(1)


def note_for_staff(tx: Session, config: Config, ticket: Ticket, kind: str, reason: str,
                   now: datetime) -> None:
    """Record that a ``kind`` mail on ``ticket`` was held, and tell staff the first time."""
    first = not _noted(tx, ticket.id)
    event(tx, ticket, now, "system", ACTION, f"{kind}: {reason}")
    if not first:
        return
    threads = staff_threads(tx, ticket, config.staff.addresses)
    for address in config.staff.addresses:
        enqueue(tx, config, ticket, Draft(
            kind="notification",
            template="suppressed",
            to=(Address("", address),),
            variables=variables(config, ticket, for_staff=True, held_kind=kind,
                                reason=reason),
            in_reply_to=threads[address][0],
            references=threads[address][1],
            auto_submitted=AUTO_GENERATED,
            reply_to=config.helpdesk.address,
        ), now)
    log.info("ticket=%s action=suppressed_noted kind=%s staff=%d", ticket.id, kind,
             len(config.staff.addresses))


def _noted(tx: Session, ticket_id: int) -> bool:
    """Whether a held mail on this ticket was noted already (in this batch or before)."""
    if any(row["ticket_id"] == ticket_id and row["action"] == ACTION
           for row in Batch.of(tx).waiting.events):
        return True
    return tx.connection().execute(
        _NOTED.where(_events.c.ticket_id == ticket_id)).first() is not None
