"""Handlers for mail on a ticket from its requester or a participant, and for the
automatic mail (auto-replies, out-of-office) that lands on a ticket."""

from __future__ import annotations

import logging

from sqlalchemy import select

from ...db.models import Person, Ticket
from ...mail.quoting import new_text_of
from ...states import DONE, TicketStatus
from .. import notices
from ..route import Route
from ..tickets import event, set_status
from .common import Incoming, Outcome, oversized, record

log = logging.getLogger(__name__)

# A staff member's out-of-office on no ticket is noted on this many of the tickets
# assigned to them that are still open (the latest).
AWAY_ON_AT_MOST = 50


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
    if route.new_subject:
        # The ticket keeps its subject; staff see the one the requester wrote.
        event(tx, ticket, now, inbound.sender.address, "new_subject", route.new_subject)
    dropped = oversized(mail.ctx, inbound)
    notices.staff_notification(tx, config, ticket, inbound, text,
                               "new_subject" if route.new_subject else "reply", recipients, now,
                               attachments=[a for a in inbound.attachments if a not in dropped],
                               dropped=dropped)
    log.info("ticket=%s message=%s action=reply thread=%s%s", ticket.id, inbound.message_id,
             route.thread, " new_subject=yes" if route.new_subject else "")
    return Outcome("reply", ticket.id, route.thread)


def thanks(mail: Incoming, route: Route) -> Outcome:
    """Kept on the ticket, which stays as it is. Nobody is told of thanks on a resolved
    or closed ticket; on a pending one, its assignee is (or all staff), to resolve it."""
    tx, inbound, now = mail.tx, mail.inbound, mail.now
    ticket = mail.ticket(route.ticket_id)
    text = new_text_of(inbound)
    record(mail, ticket, "reply", route.thread, text)
    ticket.updated_at = now
    event(tx, ticket, now, inbound.sender.address, "thanks", "")
    if ticket.status == TicketStatus.PENDING:
        notices.staff_notification(tx, mail.config, ticket, inbound, text, "thanks",
                                   notices.reply_recipients(tx, mail.config, ticket, now), now)
    log.info("ticket=%s message=%s action=thanks thread=%s status=%s", ticket.id,
             inbound.message_id, route.thread, ticket.status)
    return Outcome("reply", ticket.id, "thanks")


def automatic_on_ticket(mail: Incoming, route: Route) -> Outcome:
    """An auto-reply is kept on its ticket as a note; it changes nothing."""
    ticket = mail.ticket(route.ticket_id)
    record(mail, ticket, "note", route.thread, mail.inbound.text)
    event(mail.tx, ticket, mail.now, mail.sender, f"received_{route.kind}", route.reason)
    return Outcome("recorded", ticket.id, route.reason)


def staff_away(mail: Incoming, route: Route) -> Outcome:
    """A staff member's auto-reply that names no ticket still says they are away
    (notices.away reads it for ``[staff] away_after``). A ticket event is the only record
    of it the tables allow (an event needs a ticket): it is noted on the tickets assigned
    to them that are not done, where it matters. The message itself is kept on none."""
    tx, sender, now = mail.tx, mail.sender, mail.now
    theirs = list(tx.scalars(
        select(Ticket).join(Person, Ticket.assignee_id == Person.id)
        .where(Person.address == sender, Ticket.status.not_in(sorted(DONE)))
        .order_by(Ticket.id.desc()).limit(AWAY_ON_AT_MOST)))
    for ticket in theirs:
        event(tx, ticket, now, sender, f"received_{route.kind}",
              f"{route.reason} (on no ticket)")
    log.info("message=%s action=staff_away sender=%s tickets=%s", mail.inbound.message_id,
             sender, ",".join(str(t.id) for t in theirs) or "none assigned: not recorded")
    return Outcome("ignored", detail=f"{route.reason}; staff away, noted on "
                                     f"{len(theirs)} ticket(s)")
