"""Which timed work a ticket needs in its current status, kept as rows of ``jobs``.

Called on every status change and on an assignment (``reschedule``): the jobs that no
longer apply are cancelled, the ones that now apply are created with their due time.
A new ticket's escalation is planned apart (``plan_escalations``), once a pass, for all
the new tickets together. lifecycle.py runs them.

Delays are business time: a job is due when the delay has passed in the desk's open
hours (``[calendar]``, mailhelp/worktime.py); with no calendar, in plain elapsed time.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import insert, inspect, select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Job, Survey, Ticket
from ..db.session import Database, transaction
from ..states import TicketStatus
from ..worktime import due
from .batch import Batch

AUTO = "system:auto-resolve"
ESCALATE = "escalate"
# New tickets given their escalation job in one pass; the rest wait for the next.
PLANNED_AT_MOST = 500


def wanted(config: Config, ticket: Ticket, has_survey: bool) -> dict[str, timedelta]:
    """Job kind -> delay from now (business time), for a ticket in its current status."""
    lifecycle, survey = config.lifecycle, config.survey
    jobs: dict[str, timedelta] = {}
    if ticket.merged_into_id is not None:
        return jobs  # merged (desk/merge.py): its survivor has the timed work
    if ticket.status == TicketStatus.PENDING:
        jobs["reminder"] = lifecycle.pending_reminder_after
        jobs["auto_resolve"] = lifecycle.pending_resolve_after
    if ticket.status == TicketStatus.RESOLVED:
        jobs["auto_close"] = lifecycle.auto_close_after
    surveyable = survey.enabled and not has_survey and (
        ticket.resolved_by != AUTO or survey.after_auto_resolve)
    if TicketStatus(ticket.status).is_done and surveyable:
        jobs["survey"] = survey.delay
    return jobs


def reschedule(tx: Session, config: Config, ticket: Ticket, now: datetime) -> None:
    if "survey" in inspect(ticket).unloaded:
        has_survey = tx.scalar(select(Survey.id).where(Survey.ticket_id == ticket.id)) is not None
    else:  # loaded with the ticket (a reply's), and kept current by lifecycle._survey
        has_survey = ticket.survey is not None
    want = wanted(config, ticket, has_survey)
    # The batch's open jobs by ticket; a rollback (a staff command's savepoint) empties
    # it, as the jobs made or cancelled in the work undone are gone or expired.
    known = Batch.of(tx).open_jobs
    if ticket.id in known:
        open_jobs = [job for job in known[ticket.id]
                     if job.done_at is None and job.cancelled_at is None]
    else:
        open_jobs = list(tx.scalars(_open_jobs([ticket.id])))
    for job in open_jobs:
        # A survey already on its way stays when a resolved ticket is closed: it is due
        # "after resolved or closed, whichever comes first". An escalation is never
        # wanted again: a change of status or an assignment means someone took it up.
        if job.kind == "survey" and "survey" in want:
            want.pop("survey")
            continue
        job.cancelled_at = now
    for kind, delay in want.items():
        job = Job(kind=kind, ticket_id=ticket.id, due_at=due(config, now, delay), created_at=now)
        tx.add(job)
        open_jobs.append(job)
    # Kept for the ticket's next change in tx: only this module makes jobs (those done
    # meanwhile, by lifecycle.py, are left out above).
    known[ticket.id] = [job for job in open_jobs if job.cancelled_at is None]


def plan_escalations(db: Database, config: Config, now: datetime) -> int:
    """An ``escalate`` job, due ``[lifecycle] escalate_after`` of business time after
    the ticket came in, for each ticket still new, unassigned and unanswered that never
    had one ("0s": none). Run before the due jobs of every pass (lifecycle.run_due),
    for all new tickets with one query and one INSERT, so that the work on each message
    costs no statement more; a ticket answered or taken before that gets none. Tickets
    that were new before escalation existed get theirs too, those long overdue marked
    done unsent right after (escalation.skip_overdue)."""
    after = config.lifecycle.escalate_after
    if after <= timedelta(0):
        return 0
    had_one = select(Job.id).where(Job.ticket_id == Ticket.id, Job.kind == ESCALATE).exists()
    waiting = select(Ticket.id, Ticket.created_at).where(
        Ticket.status == TicketStatus.NEW, Ticket.assignee_id.is_(None),
        Ticket.first_response_at.is_(None), ~had_one).order_by(Ticket.id)
    with db.sessions() as session:  # read first: most passes have nothing to plan
        if session.execute(waiting.limit(1)).first() is None:
            return 0
    with transaction(db) as tx:  # asked again inside, where a second runner waits
        rows = tx.execute(waiting.limit(PLANNED_AT_MOST)).all()
        if rows:
            tx.execute(insert(Job.__table__), [
                {"kind": ESCALATE, "ticket_id": row.id, "created_at": now, "result": "",
                 "due_at": due(config, row.created_at, after)} for row in rows])
    return len(rows)


def look_ahead(tx: Session, ticket_ids: Collection[int]) -> None:
    """The open jobs of a batch's tickets (those its replies answer), with one query
    instead of one per status change."""
    if ticket_ids:
        known = Batch.of(tx).open_jobs
        unknown = sorted(set(ticket_ids) - known.keys())
        if not unknown:
            return
        for ticket_id in unknown:
            known[ticket_id] = []
        for job in tx.scalars(_open_jobs(unknown)):
            known[job.ticket_id].append(job)


def _open_jobs(ticket_ids: list[int]):
    return select(Job).where(Job.ticket_id.in_(ticket_ids), Job.done_at.is_(None),
                             Job.cancelled_at.is_(None)).order_by(Job.id)

