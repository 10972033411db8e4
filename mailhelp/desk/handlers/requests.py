"""Handlers that make a ticket: a new request (held if its sender is unproven), a
follow-up to a ticket closed long ago; and the outsider who gets none."""

from __future__ import annotations

import logging

from ...db.models import Person, Ticket
from ...states import TicketStatus
from .. import notices, outsiders
from ..categories import categories_of
from ..route import Route
from ..threads import is_help_address, ticket_subject
from ..tickets import add_participant, event, person, ticket_number
from .common import Incoming, Outcome, oversized, record

log = logging.getLogger(__name__)


def new_request(mail: Incoming, route: Route) -> Outcome:
    return new_ticket(mail)


def held_request(mail: Incoming, route: Route) -> Outcome:
    return new_ticket(mail, held=route.reason)


def follow_up(mail: Incoming, route: Route) -> Outcome:
    """A new ticket naming the old one, and the old one naming it (the old one stays
    as it is: its requester moved on to something new)."""
    old = mail.ticket(route.ticket_id)
    outcome = new_ticket(mail, linked=old)
    event(mail.tx, old, mail.now, mail.sender, "followed_up",
          f"#{outcome.ticket_id}: {route.reason}")
    return outcome


def outsider(mail: Incoming, route: Route) -> Outcome:
    return Outcome("outsider", detail=outsiders.turn_away(mail.tx, mail.config, mail.inbound,
                                                          mail.now))


def _describe(mail: Incoming, ticket: Ticket, requester: Person) -> None:
    """What the desk knows of a new ticket before anyone reads it: from the district
    directory, its requester's name (the district's spelling wins over the mail's),
    school and room; from [[categories]], its category."""
    found = mail.ctx.directory.lookup(requester.address) if mail.ctx.directory else None
    if found is not None:
        if found.name and requester.name != found.name:
            requester.name = found.name
        ticket.school, ticket.room = found.school, found.room
    ticket.category = categories_of(mail.config).file(mail.inbound.subject,
                                                      mail.inbound.text)


def new_ticket(mail: Incoming, linked: Ticket | None = None, held: str | None = None) -> Outcome:
    tx, ctx, inbound, now = mail.tx, mail.ctx, mail.inbound, mail.now
    config = ctx.config
    requester = person(tx, inbound.sender, now, flush=False)
    subject = ticket_subject(inbound.subject, config.helpdesk.subject_tag)
    # An empty participant list, not a lazy one: nothing to load for a new ticket.
    # Numbered now, written at the batch's end with the others (or when a query needs it).
    ticket = Ticket(id=ticket_number(tx), subject=subject, status=TicketStatus.NEW,
                    priority="normal", requester=requester, participants=[], created_at=now,
                    updated_at=now, linked_ticket_id=linked.id if linked else None, held=held)
    tx.add(ticket)
    mail.batch.note_new_ticket(ticket)
    _describe(mail, ticket, requester)
    # A held request's CC line is the forger's word too: nobody joins by it.
    for colleague in inbound.cc if held is None else ():
        if is_help_address(colleague.address, config.helpdesk.address):
            continue
        if config.staff.is_staff(colleague.address):
            continue
        add_participant(tx, ticket, person(tx, colleague, now), now)
    record(mail, ticket, "request", "", inbound.text)
    event(tx, ticket, now, requester.address, "created",
          f"continues #{linked.id}" if linked else "")
    dropped = oversized(ctx, inbound)
    if dropped:
        event(tx, ticket, now, "system", "attachments_dropped",
              ", ".join(f"{a.filename} ({a.size} bytes)" for a in dropped))
    if held is None:
        notices.ack(tx, config, ticket, inbound, now, dropped)
    else:
        # Mail in a district address that the receiving server says is not from there:
        # nothing goes back to that address (the desk is no reflector) until staff
        # release it (#release).
        event(tx, ticket, now, "system", "held", held)
        log.warning("ticket=%s message=%s action=held sender=%s reason=%s", ticket.id,
                    inbound.message_id, requester.address, held)
    # The teacher's files go to staff with the notification (within [limits]), as
    # they do with a reply's: staff should not have to ask for the screenshot. Not a
    # held request's: a forger's files would reach staff from the desk's own address.
    notices.staff_notification(tx, config, ticket, inbound, inbound.text, "new",
                               config.staff.addresses, now,
                               attachments=[a for a in inbound.attachments
                                            if a not in dropped] if held is None else (),
                               dropped=dropped)
    log.info("ticket=%s message=%s action=new_ticket requester=%s%s", ticket.id,
             inbound.message_id, requester.address, f" linked={linked.id}" if linked else "")
    return Outcome("new_ticket", ticket.id)
