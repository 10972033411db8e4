"""Whether a ticket is surveyed now, and the Survey row that records it.

Two paths send a survey: the survey job (lifecycle.py), ``[survey] delay`` after a
ticket is resolved, and, with ``delay = "0s"``, the resolved notice itself
(notices.resolved), so that a teacher gets one mail where there were two. Both ask
``refusal`` and make the row with ``start`` in the transaction that queues the mail;
the other path then finds the row and sends nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Survey, Ticket
from ..states import DONE
from . import surveys
from .tickets import event

log = logging.getLogger(__name__)

SYSTEM = "system"


def refusal(tx: Session, config: Config, ticket: Ticket, now: datetime) -> str:
    """Why ``ticket`` gets no survey now, or '' if it does."""
    if ticket.status not in DONE:
        return f"ticket is {ticket.status}"
    if not config.survey.enabled:
        return "surveys are disabled"
    if tx.scalar(select(Survey.id).where(Survey.ticket_id == ticket.id)) is not None:
        return "already surveyed"
    recent = tx.scalar(select(Survey.ticket_id).join(Ticket, Ticket.id == Survey.ticket_id)
                       .where(Ticket.requester_id == ticket.requester_id,
                              Survey.sent_at > now - config.survey.min_interval).limit(1))
    if recent is not None:
        return f"requester was surveyed on #{recent} lately"
    return ""


def start(tx: Session, ticket: Ticket, now: datetime, detail: str = "") -> Survey:
    """The ticket's Survey row, with a new token: its survey is being sent now."""
    survey = Survey(token=surveys.new_token(), sent_at=now)
    ticket.survey = survey  # the ticket's loaded state stays true (schedule.reschedule)
    tx.flush()
    event(tx, ticket, now, SYSTEM, "survey_sent", detail)
    return survey


def in_resolved_notice(tx: Session, config: Config, ticket: Ticket, now: datetime,
                       automatic: bool) -> Survey | None:
    """The survey that goes in the resolved notice being queued, or None: only with
    ``[survey] delay = "0s"``, only if the ticket gets one now (a requester surveyed
    within ``min_interval`` does not), and after an automatic resolve only with
    ``after_auto_resolve``."""
    if config.survey.delay > timedelta(0) or not config.survey.enabled:
        return None
    if automatic and not config.survey.after_auto_resolve:
        return None
    why = refusal(tx, config, ticket, now)
    if why:
        log.info("ticket=%s action=no_survey_in_notice reason=%s", ticket.id, why)
        return None
    return start(tx, ticket, now, "with the resolved notice")
