"""Escalation: a ticket nobody has answered is brought to the leads, once.

A new ticket gets an ``escalate`` job (schedule.plan_escalations, before the due jobs
of each pass), due ``[lifecycle] escalate_after`` of business time after it arrived. A
staff answer, any change of status or an assignment cancels it (schedule.reschedule);
should the job run all the same, ``why_not`` says so and nothing is sent. Otherwise
``[staff] leads`` (every staff address if none are named) get one mail each, in the
ticket's staff thread, and the ticket records an ``escalated`` event.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Job, Message, Ticket
from ..delivery.outbox import AUTO_GENERATED, Draft, enqueue, write_pending
from ..durations import format_duration
from ..mail.parse import Address
from ..states import TicketStatus
from . import staffmail
from .notices import variables
from .tickets import event

log = logging.getLogger(__name__)

SYSTEM = "system"
SHOWN_CHARS = 4000  # of the request's text in the escalation mail


def leads(config: Config) -> tuple[str, ...]:
    return config.staff.leads or config.staff.addresses


def why_not(ticket: Ticket) -> str:
    """Why ``ticket`` is not escalated now ('' if it is): it is no longer waiting."""
    if ticket.status != TicketStatus.NEW:
        return f"ticket is {ticket.status}"
    if ticket.assignee_id is not None:
        return "ticket is assigned"
    if ticket.first_response_at is not None:
        return "staff answered"
    return ""


def escalate(tx: Session, config: Config, ticket: Ticket, now: datetime) -> str:
    """The ``escalate`` job: one mail to each lead, unless the ticket was taken up."""
    why = why_not(ticket)
    if why:
        return f"skipped: {why}"
    if tx.scalar(select(Job.id).where(Job.ticket_id == ticket.id, Job.kind == "escalate",
                                      Job.done_at.is_not(None)).limit(1)) is not None:
        return "skipped: escalated already"  # by a second runner's job
    to = leads(config)
    if not to:
        return "skipped: no staff addresses"
    request = _request_text(tx, ticket)
    waited = format_duration(config.lifecycle.escalate_after)
    for address in to:
        in_reply_to, references = staffmail.staff_thread(tx, ticket, address)
        enqueue(tx, config, ticket, Draft(
            kind="notification", template="escalation", to=(Address("", address),),
            variables=variables(config, ticket, for_staff=True, event="escalated",
                                waited=waited, created_at=ticket.created_at.isoformat(),
                                business_time=config.calendar.hours is not None,
                                message={"text": request}),
            in_reply_to=in_reply_to, references=references,
            auto_submitted=AUTO_GENERATED, reply_to=config.helpdesk.address), now)
    event(tx, ticket, now, SYSTEM, "escalated", ", ".join(to))
    log.info("ticket=%s action=escalated leads=%s waited=%s created=%s", ticket.id,
             ",".join(to), waited, ticket.created_at.isoformat())
    return f"escalated to {len(to)}"


def _request_text(tx: Session, ticket: Ticket) -> str:
    write_pending(tx)
    text = tx.scalar(select(Message.text).where(Message.ticket_id == ticket.id,
                                                Message.kind == "request")
                     .order_by(Message.id).limit(1)) or ""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\n[...]"
