"""Timed work: reminders, auto-resolve, auto-close, surveys and escalations, run when due.

The daemon runs ``run_due`` after every pass over the mailbox and whenever a job
falls due; ``mailhelp run --once --now T`` runs everything due at T. Each job is
done in one transaction together with the change and the mail it causes, so a
restart loses none and a second runner does none twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Job, Ticket
from ..db.session import Database, transaction
from ..states import TicketStatus
from . import notices, survey_due
from .escalation import escalate, skip_overdue
from .schedule import AUTO, plan_escalations
from .tickets import event, set_status

log = logging.getLogger(__name__)

SYSTEM = "system"


def next_due(db: Database) -> datetime | None:
    with db.sessions() as session:
        return session.scalar(select(Job.due_at).where(
            Job.done_at.is_(None), Job.cancelled_at.is_(None)).order_by(Job.due_at).limit(1))


def run_due(db: Database, config: Config, clock: Callable[[], datetime]) -> int:
    """Run every job due now; return how many ran."""
    now = clock()
    plan_escalations(db, config, now)  # the new tickets' escalations, before the due
    skip_overdue(db, config, now)  # an old backlog's are not mailed one by one
    with db.sessions() as session:
        due = list(session.scalars(select(Job.id).where(
            Job.done_at.is_(None), Job.cancelled_at.is_(None), Job.due_at <= now)
            .order_by(Job.due_at, Job.id).limit(1000)))
    ran = 0
    for job_id in due:
        with transaction(db) as tx:
            job = tx.get(Job, job_id, with_for_update=True)
            if job.done_at is not None or job.cancelled_at is not None:
                continue  # another runner was first
            ticket = tx.get(Ticket, job.ticket_id)
            job.result = HANDLERS[job.kind](tx, config, ticket, now)
            job.done_at = now
            ran += 1
            log.info("ticket=%s job=%s action=job kind=%s result=%s", ticket.id, job.id,
                     job.kind, job.result)
    return ran


def _reminder(tx: Session, config: Config, ticket: Ticket, now: datetime) -> str:
    if ticket.status != TicketStatus.PENDING:
        return f"skipped: ticket is {ticket.status}"
    notices.status_notice(tx, config, ticket, "reminder", now, kind="reminder")
    event(tx, ticket, now, SYSTEM, "reminder_sent", "")
    return "sent"


def _auto_resolve(tx: Session, config: Config, ticket: Ticket, now: datetime) -> str:
    if ticket.status != TicketStatus.PENDING:
        return f"skipped: ticket is {ticket.status}"
    set_status(tx, config, ticket, TicketStatus.RESOLVED, AUTO, now)
    notices.resolved(tx, config, ticket, now, automatic=True)
    return "resolved"


def _auto_close(tx: Session, config: Config, ticket: Ticket, now: datetime) -> str:
    if ticket.status != TicketStatus.RESOLVED:
        return f"skipped: ticket is {ticket.status}"
    set_status(tx, config, ticket, TicketStatus.CLOSED, "system:auto-close", now)
    return "closed"


def _survey(tx: Session, config: Config, ticket: Ticket, now: datetime) -> str:
    # "already surveyed" too when the resolved notice carried it ([survey] delay "0s").
    why = survey_due.refusal(tx, config, ticket, now)
    if why:
        return f"skipped: {why}"
    notices.survey(tx, config, ticket, survey_due.start(tx, ticket, now), now)
    return "sent"


HANDLERS: dict[str, Callable[[Session, Config, Ticket, datetime], str]] = {
    "reminder": _reminder,
    "auto_resolve": _auto_resolve,
    "auto_close": _auto_close,
    "survey": _survey,
    "escalate": escalate,
}
