"""Survey answers, by mail and on the web (web/site.py calls ``keep_answer`` too). An
answer never reopens its ticket and never makes one."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from ...config import Config
from ...db.models import Survey, Ticket
from ...mail.parse import Inbound
from ...mail.quoting import new_text_of
from .. import notices
from ..route import Route
from ..tickets import event
from .common import Incoming, Outcome, record

log = logging.getLogger(__name__)


def survey_answer(mail: Incoming, route: Route) -> Outcome:
    """A rating (with a comment, or none), or a comment alone, mailed by the requester."""
    inbound, answer = mail.inbound, route.answer
    survey = mail.surveys[route.survey_id]
    ticket = mail.ticket(route.ticket_id)
    comment = answer.comment if answer else new_text_of(inbound, signature=False).strip()
    record(mail, ticket, "survey_response", "survey", comment)
    keep_answer(mail.tx, mail.config, ticket, survey, answer.rating if answer else None,
                comment, "mail", mail.now, inbound)
    return Outcome("recorded", ticket.id, f"survey answer {survey.rating}")


def survey_refused(mail: Incoming, route: Route) -> Outcome:
    log.warning("ticket=%s message=%s action=survey_refused sender=%s", route.ticket_id,
                mail.inbound.message_id, mail.sender)
    return Outcome("ignored", detail=route.reason)


def keep_answer(tx: Session, config: Config, ticket: Ticket, survey: Survey,
                rating: int | None, comment: str, via: str, now: datetime,
                inbound: Inbound | None = None) -> None:
    """Record the requester's answer (``via`` "mail" or "web"): the rating and comment, an
    event, and a thank-you mail for a rating unless ``[survey] thank_you = false``. A
    comment alone keeps the rating. ``ticket`` is where the answer is recorded: the
    survey's own, or the ticket that one was merged into (desk/merge.survivor_of); the
    rating stays on the survey, of the ticket it asked about."""
    if rating is not None:
        survey.rating, survey.comment = rating, comment
    elif comment:
        survey.comment = comment
    survey.answered_at, survey.answered_via = now, via
    asked = tx.get(Ticket, survey.ticket_id)  # ``ticket`` itself unless merged since
    detail = f"rating {survey.rating}" if rating is not None else "comment"
    if asked is not ticket:
        detail += f", the survey of #{asked.id}"
    event(tx, ticket, now, asked.requester.address, "survey_answer",
          detail if via == "mail" else f"{detail} ({via})")
    if rating is not None and config.survey.thank_you:
        notices.survey_thanks(tx, config, ticket, inbound, survey, now)
    if inbound is not None:
        log.info("ticket=%s message=%s action=survey_answer rating=%s", ticket.id,
                 inbound.message_id, survey.rating)
    else:
        log.info("ticket=%s action=survey_answer via=%s rating=%s", ticket.id, via,
                 survey.rating)
