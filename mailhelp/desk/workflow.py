"""Apply one incoming message to the help desk: gather its facts, route it, handle it.

route.py decides what the message is (pure); handlers/ carry the decision out, in the
caller's transaction, which also holds the outbox rows for the mail the change causes
(notices.py); the caller commits once. The pipeline calls ``apply`` with a Context that
carries the transaction's Batch (batch.py).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from ..mail.parse import Inbound
from .facts import gather
from .handlers import HANDLERS, Context, Incoming, Outcome, Stored
from .route import is_thanks, route

__all__ = ["Context", "Outcome", "Stored", "apply", "is_thanks"]

log = logging.getLogger(__name__)


def apply(tx: Session, ctx: Context, inbound: Inbound, raw: Stored, now: datetime) -> Outcome:
    """Record ``inbound`` on a ticket (a new one or the one it threads to)."""
    mail = Incoming(tx, ctx, inbound, raw, now)
    decided = route(inbound, gather(mail))
    if decided.refused is not None:
        log.warning("ticket=%s message=%s action=refuse_join sender=%s reason=%s",
                    decided.refused.ticket_id, inbound.message_id, inbound.sender.address,
                    decided.refused.reason)
    return HANDLERS[decided.name](mail, decided)
