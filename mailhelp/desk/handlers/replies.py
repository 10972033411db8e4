"""Handlers for mail on a ticket from its requester or a participant, and for the
automatic mail (auto-replies, out-of-office) that lands on a ticket."""

from __future__ import annotations

import logging

from ...mail.quoting import new_text_of
from ...states import TicketStatus
from .. import notices
from ..route import Route
from ..tickets import event, set_status
from .common import Incoming, Outcome, oversized, record

log = logging.getLogger(__name__)


def requester_reply(mail: Incoming, route: Route) -> Outcome:
    """Reopen the ticket (unless open) and tell its assignee, or every staff address."""
    tx, config, inbound, now = mail.tx, mail.config, mail.inbound, mail.now
    ticket = mail.ticket(route.ticket_id)
    text = new_text_of(inbound)
    record(mail, ticket, "reply", route.thread, text)
    ticket.updated_at = now
    if ticket.status != TicketStatus.OPEN:
        set_status(tx, config, ticket, TicketStatus.OPEN, inbound.sender.address, now)
    recipients = notices.reply_recipients(tx, config, ticket, now)
    dropped = oversized(mail.ctx, inbound)
    notices.staff_notification(tx, config, ticket, inbound, text, "reply", recipients, now,
                               attachments=[a for a in inbound.attachments if a not in dropped],
                               dropped=dropped)
    log.info("ticket=%s message=%s action=reply thread=%s", ticket.id, inbound.message_id,
             route.thread)
    return Outcome("reply", ticket.id, route.thread)


def thanks(mail: Incoming, route: Route) -> Outcome:
    """Kept on the ticket, which stays resolved or closed; nobody is told."""
    inbound = mail.inbound
    ticket = mail.ticket(route.ticket_id)
    record(mail, ticket, "reply", route.thread, new_text_of(inbound))
    ticket.updated_at = mail.now
    event(mail.tx, ticket, mail.now, inbound.sender.address, "thanks", "")
    log.info("ticket=%s message=%s action=thanks thread=%s", ticket.id,
             inbound.message_id, route.thread)
    return Outcome("reply", ticket.id, "thanks")


def automatic_on_ticket(mail: Incoming, route: Route) -> Outcome:
    """An auto-reply is kept on its ticket as a note; it changes nothing."""
    ticket = mail.ticket(route.ticket_id)
    record(mail, ticket, "note", route.thread, mail.inbound.text)
    event(mail.tx, ticket, mail.now, mail.sender, f"received_{route.kind}", route.reason)
    return Outcome("recorded", ticket.id, route.reason)
