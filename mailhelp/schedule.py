"""Which timed work a ticket needs in its current status, kept as rows of ``jobs``.

Called on every status change: the jobs that no longer apply are cancelled, the
ones that now apply are created with their due time. lifecycle.py runs them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from .config import Config
from .db.models import Job, Survey, Ticket

AUTO = "system:auto-resolve"


def wanted(config: Config, ticket: Ticket, has_survey: bool) -> dict[str, timedelta]:
    """Job kind -> delay from now, for a ticket in its current status."""
    lifecycle, survey = config.lifecycle, config.survey
    jobs: dict[str, timedelta] = {}
    if ticket.status == "pending":
        jobs["reminder"] = lifecycle.pending_reminder_after
        jobs["auto_resolve"] = lifecycle.pending_resolve_after
    if ticket.status == "resolved":
        jobs["auto_close"] = lifecycle.auto_close_after
    surveyable = survey.enabled and not has_survey and (
        ticket.resolved_by != AUTO or survey.after_auto_resolve)
    if ticket.status in ("resolved", "closed") and surveyable:
        jobs["survey"] = survey.delay
    return jobs


def reschedule(tx: Session, config: Config, ticket: Ticket, now: datetime) -> None:
    if "survey" in inspect(ticket).unloaded:
        has_survey = tx.scalar(select(Survey.id).where(Survey.ticket_id == ticket.id)) is not None
    else:  # loaded with the ticket (a reply's), and kept current by lifecycle._survey
        has_survey = ticket.survey is not None
    want = wanted(config, ticket, has_survey)
    open_jobs = list(tx.scalars(select(Job).where(
        Job.ticket_id == ticket.id, Job.done_at.is_(None), Job.cancelled_at.is_(None))))
    for job in open_jobs:
        # A survey already on its way stays when a resolved ticket is closed: it is due
        # "after resolved or closed, whichever comes first".
        if job.kind == "survey" and "survey" in want:
            want.pop("survey")
            continue
        job.cancelled_at = now
    for kind, delay in want.items():
        tx.add(Job(kind=kind, ticket_id=ticket.id, due_at=now + delay, created_at=now))
