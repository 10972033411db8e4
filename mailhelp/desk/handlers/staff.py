"""Handlers for staff mail on a ticket: commands and an answer to relay, commands that
fail, and mail in a staff (or district) name that the receiving server did not vouch
for."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...db.models import Ticket
from ...mail.parse import Address
from ...mail.quoting import new_text_of
from ...states import TicketStatus
from .. import notices, schedule, staffmail
from ..route import Route
from ..tickets import add_participant, event, person, set_status
from .common import Incoming, Outcome, oversized, record

if TYPE_CHECKING:
    from .. import commands

log = logging.getLogger(__name__)


def staff_answer(mail: Incoming, route: Route) -> Outcome:
    """Run the commands (all or none), keep the message, relay its text to the
    requester and participants unless it is #note, and take the ticket if nobody has."""
    from .. import commands

    tx, config, inbound, now = mail.tx, mail.config, mail.inbound, mail.now
    ticket = mail.ticket(route.ticket_id)
    reason, parsed = route.thread, route.commands
    actor = inbound.sender.address
    effects, problem = commands.Effects(), ""
    with mail.batch.savepoint(ticket) as savepoint:
        env = _command_env(mail, ticket)
        for command in parsed.commands:
            problem = commands.run(command, env, effects)
            if problem:
                # All or nothing: what the earlier lines changed is undone.
                savepoint.rollback()
                break
    if problem:
        return _command_failed(mail, ticket, reason, problem)
    if effects.merged_into is not None:
        # #merge (always the last command): the ticket's conversation is the survivor's
        # now, and so is this message and the answer in it.
        ticket = mail.ticket(effects.merged_into)
    internal = parsed.internal
    kind = "note" if internal else "staff_reply"
    kept = [a for a in inbound.attachments if a not in oversized(mail.ctx, inbound)]
    if internal and (parsed.text.strip() or inbound.attachments):
        # Sent before the note is kept, so the note stays the ticket's latest message.
        staffmail.note(tx, config, ticket, inbound, parsed.text, now, kept)
    record(mail, ticket, kind, reason, parsed.text)
    relayed = not internal and (parsed.text.strip() or inbound.attachments)
    if effects.assigned:
        staffmail.assignment(tx, config, ticket, effects.assigned, actor, mail.ctx.store,
                           commands.usage(), now)
    if relayed:
        notices.relay(tx, config, ticket, inbound, parsed.text, now, kept)
        if ticket.first_response_at is None:
            ticket.first_response_at = now
        if ticket.assignee_id is None:
            ticket.assignee_id = person(tx, inbound.sender, now).id
            event(tx, ticket, now, actor, "assigned", actor)
        if not effects.status_set:
            set_status(tx, config, ticket, TicketStatus.PENDING, actor, now)
        staffmail.answer_copy(tx, config, ticket, inbound, parsed.text, now, kept)
    if effects.released:
        event(tx, ticket, now, actor, "released", "")
        notices.released_ack(tx, config, ticket, now)
    if effects.resolved:
        notices.resolved(tx, config, ticket, now)
    ticket.updated_at = now
    log.info("ticket=%s message=%s action=%s thread=%s relayed=%s commands=%s", ticket.id,
             inbound.message_id, kind, reason, "yes" if relayed else "no",
             ",".join(c.name for c in parsed.commands) or "-")
    return Outcome("staff_reply", ticket.id, reason)


def command_error(mail: Incoming, route: Route) -> Outcome:
    return _command_failed(mail, mail.ticket(route.ticket_id), route.thread, route.reason)


def unverified(mail: Incoming, route: Route) -> Outcome:
    """A staff or district From: line the receiving server did not vouch for: kept as
    an internal note, not acted on (no relay, no command, no change of state)."""
    inbound, now, why = mail.inbound, mail.now, route.reason
    ticket = mail.ticket(route.ticket_id)
    record(mail, ticket, "note", route.thread,
           f"[unverified sender: {why}]\n\n{new_text_of(inbound)}")
    who = "staff" if mail.config.staff.is_staff(inbound.sender.address) else "district"
    event(mail.tx, ticket, now, inbound.sender.address, f"unverified_{who}_mail", why)
    notices.staff_alert(mail.tx, mail.config, ticket, inbound, why, now)
    log.warning("ticket=%s message=%s action=unverified_%s sender=%s reason=%s", ticket.id,
                inbound.message_id, who, inbound.sender.address, why)
    return Outcome("recorded", ticket.id, f"unverified {who} mail: {why}")


def _command_failed(mail: Incoming, ticket: Ticket, reason: str, error: str) -> Outcome:
    """Nothing is relayed or changed; the staff member is told which line was wrong."""
    from .. import commands

    inbound, now = mail.inbound, mail.now
    record(mail, ticket, "note", reason, inbound.text)
    event(mail.tx, ticket, now, inbound.sender.address, "command_error", error)
    notices.command_error(mail.tx, mail.config, ticket, inbound, error, commands.usage(), now)
    log.warning("ticket=%s message=%s action=command_error error=%s", ticket.id,
                inbound.message_id, error)
    return Outcome("staff_reply", ticket.id, f"command error: {error}")


def _command_env(mail: Incoming, ticket: Ticket) -> commands.Env:
    from .. import commands

    tx, config, now, actor = mail.tx, mail.config, mail.now, mail.sender

    def add(address: str) -> None:
        add_participant(tx, ticket, person(tx, Address("", address), now), now, actor)

    def remove(address: str) -> bool:
        for participant in ticket.participants:
            if participant.person.address == address:
                ticket.participants.remove(participant)
                event(tx, ticket, now, actor, "participant_removed", address)
                return True
        return False

    def assign(address: str) -> None:
        ticket.assignee_id = person(tx, Address("", address), now).id
        event(tx, ticket, now, actor, "assigned", address)
        schedule.reschedule(tx, config, ticket, now)  # taken: no escalation

    return commands.Env(
        tx=tx, ticket=ticket, actor=actor, now=now, is_staff=config.staff.is_staff,
        set_status=lambda status: set_status(tx, config, ticket, status, actor, now),
        add_participant=add, remove_participant=remove, assign=assign, config=config)
