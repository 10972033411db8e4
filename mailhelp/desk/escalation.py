"""Escalation: a ticket nobody has answered is brought to the leads, once.

A new ticket gets an ``escalate`` job (schedule.plan_escalations, before the due jobs
of each pass), due ``[lifecycle] escalate_after`` of business time after it arrived. A
staff answer, any change of status or an assignment cancels it (schedule.reschedule);
should the job run all the same, ``why_not`` says so and nothing is sent. Otherwise
``[staff] leads`` (every staff address if none are named) get one mail each, in the
ticket's staff thread, and the ticket records an ``escalated`` event.

An old backlog is not mailed ticket by ticket: the escalations that fell due more than
an open day before a pass (``overdue_long_ago``: after an upgrade to a version with
escalation, or a desk stopped for a day or more) are marked done unsent by
``skip_overdue``, with one log line; those tickets head the morning queue digest's
longest waiting instead.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Job, Message, Ticket
from ..db.session import Database, transaction
from ..delivery.outbox import AUTO_GENERATED, Draft, enqueue, write_pending
from ..durations import format_duration
from ..mail.parse import Address
from ..states import TicketStatus
from ..worktime import due, work_calendar
from . import staffmail
from .notices import variables
from .schedule import ESCALATE
from .tickets import event

log = logging.getLogger(__name__)

SYSTEM = "system"
SHOWN_CHARS = 4000  # of the request's text in the escalation mail
SKIPPED_PER_STATEMENT = 500  # job ids in one UPDATE's IN list
BACKLOG_AGE = timedelta(days=1)  # overdue by more (an open day): an old backlog


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
    if tx.scalar(select(Job.id).where(Job.ticket_id == ticket.id, Job.kind == ESCALATE,
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


def backlog_age(config: Config) -> timedelta:
    """How long past its due time an escalation is an old backlog: an open day (or
    ``escalate_after``, if longer). Longer than any gap between passes a desk run from
    cron or briefly stopped has, so those only delay an escalation."""
    return max(config.lifecycle.escalate_after, BACKLOG_AGE)


def overdue_long_ago(config: Config, due_at: datetime, now: datetime) -> bool:
    """Whether an escalation due at ``due_at`` is part of an old backlog at ``now``: it
    fell due more than ``backlog_age`` before ``now``, counted in business time like the
    delay itself (a whole day counts an open day). Passes come every few minutes from
    the daemon, every hour or so from cron, so a job that late fell due while nothing
    ran: before the upgrade that brought escalation (those tickets are planned from when
    they came in) or while the desk was stopped for a day or more. With hours 07:30-16:00
    Friday 15:00's escalation is still mailed on Monday until 15:00."""
    after = config.lifecycle.escalate_after
    return after > timedelta(0) and due(config, due_at, backlog_age(config)) < now


def skip_overdue(db: Database, config: Config, now: datetime) -> int:
    """Mark the open escalations ``overdue_long_ago`` done, unsent, with the reason as
    their result, and log one line with how many; return it. Run before the due jobs of
    a pass (lifecycle.run_due), after plan_escalations, so none of them is mailed."""
    if config.lifecycle.escalate_after <= timedelta(0):
        return 0
    open_due = select(Job.id, Job.due_at).where(
        Job.kind == ESCALATE, Job.done_at.is_(None), Job.cancelled_at.is_(None),
        Job.due_at < now).order_by(Job.due_at, Job.id)
    with db.sessions() as session:  # read first: most passes have none
        stale = [(row.id, row.due_at) for row in session.execute(open_due)
                 if overdue_long_ago(config, row.due_at, now)]
    if not stale:
        return 0
    waited = format_duration(config.lifecycle.escalate_after)
    open_time = "" if work_calendar(config).elapsed else " of open time"
    age = format_duration(backlog_age(config))
    result = f"skipped: overdue by more than {age}{open_time} (an old backlog)"
    skipped = 0
    with transaction(db) as tx:
        for start in range(0, len(stale), SKIPPED_PER_STATEMENT):
            ids = [job_id for job_id, _ in stale[start:start + SKIPPED_PER_STATEMENT]]
            # Done or cancelled meanwhile (a second runner, a staff answer): left alone.
            skipped += tx.execute(
                update(Job).where(Job.id.in_(ids), Job.done_at.is_(None),
                                  Job.cancelled_at.is_(None))
                .values(done_at=now, result=result)
                .execution_options(synchronize_session=False)).rowcount
    if skipped:
        log.warning("action=escalations_skipped count=%d reason=overdue escalate_after=%s "
                    "oldest_due=%s newest_due=%s", skipped, waited,
                    stale[0][1].isoformat(), stale[-1][1].isoformat())
    return skipped


def _request_text(tx: Session, ticket: Ticket) -> str:
    write_pending(tx)
    text = tx.scalar(select(Message.text).where(Message.ticket_id == ticket.id,
                                                Message.kind == "request")
                     .order_by(Message.id).limit(1)) or ""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\n[...]"
