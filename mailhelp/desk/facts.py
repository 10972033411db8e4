"""The facts routing reads, found in the database and the configuration.

``gather`` answers the cheap questions at once and leaves the others (the ticket a reply
threads to, the survey it answers, the proof) as lookups that run only when route.py
asks them, in its order; the rows they load are kept on the Incoming for the handler.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db.models import Message, Survey, Ticket
from ..mail import classify as verdicts
from ..mail.parse import Inbound
from . import outsiders
from .batch import TICKET_AND_PEOPLE
from .handlers.common import Incoming
from .merge import survivor_of
from .route import Facts, SurveyFacts, Thread, TicketFacts
from .threads import Match, find_ticket

if TYPE_CHECKING:
    from ..mail import authenticity

log = logging.getLogger(__name__)


def gather(mail: Incoming) -> Facts:
    config, inbound, sender = mail.config, mail.inbound, mail.sender
    return Facts(
        recorded=mail.batch.recorded(inbound.message_id),
        verdict=verdicts.classify(inbound, config.helpdesk.address,
                                  config.spam.score_header, config.spam.score_threshold),
        sender_is_staff=config.staff.is_staff(sender),
        outsider=outsiders.is_outsider(config, sender),
        unauthenticated_staff=config.authentication.unauthenticated_staff,
        auto_close_after=config.lifecycle.auto_close_after,
        now=mail.now,
        subject_tag=config.helpdesk.subject_tag,
        thread=lambda: _thread(mail),
        survey=lambda token, ticket_id: _survey(mail, token, ticket_id),
        proof=lambda: _proof(mail),
    )


def _thread(mail: Incoming) -> Thread | None:
    """The ticket the message names (by its references, subject tag or plus address)."""
    tx, config = mail.tx, mail.config
    match = find_ticket(mail.inbound, mail.batch.ticket_of_ids,
                        config.helpdesk.subject_tag, config.helpdesk.address)
    ticket = tx.get(Ticket, match.ticket_id, options=TICKET_AND_PEOPLE) if match else None
    if ticket is None:
        return None
    merged = ticket.merged_into_id is not None
    if merged:
        ticket, match = _survivor(mail, ticket, match)
    mail.tickets[ticket.id] = ticket
    # Mail about a merged ticket keeps its own subject: not a new one on the survivor.
    return Thread(match, TicketFacts(ticket.id, ticket.status, ticket.closed_at,
                                     _may_join(mail, ticket), "" if merged else ticket.subject))


def _survivor(mail: Incoming, ticket: Ticket, match: Match) -> tuple[Ticket, Match]:
    """A merged ticket's mail goes to the ticket it was merged into (desk/merge.py), and
    who may join is asked of that one: the merged ticket's people moved there."""
    tx = mail.tx
    survivor_id = survivor_of(tx, ticket.id)
    survivor = tx.get(Ticket, survivor_id, options=TICKET_AND_PEOPLE)
    log.info("message=%s action=follow_merge ticket=%s survivor=%s thread=%s",
             mail.inbound.message_id, ticket.id, survivor_id, match.reason)
    return survivor, replace(match, ticket_id=survivor_id)


def _may_join(mail: Incoming, ticket: Ticket) -> bool:
    sender = mail.sender
    if mail.config.staff.is_staff(sender):
        return True
    if ticket.requester.address == sender:
        return True
    return any(p.person.address == sender for p in ticket.participants)


def _survey(mail: Incoming, token: str, ticket_id: int | None) -> SurveyFacts | None:
    tx = mail.tx
    record = tx.scalar(select(Survey).where(Survey.token == token)) if token else None
    ticket = mail.tickets[ticket_id] if ticket_id is not None else None
    if record is None and ticket is not None and ticket.survey is not None \
            and _answers_survey(tx, ticket, mail.inbound):
        record = ticket.survey
    if record is None:
        return None
    ticket = mail.tickets[record.ticket_id] = mail.ticket(record.ticket_id)
    mail.surveys[record.id] = record
    survivor = survivor_of(tx, ticket.id) if ticket.merged_into_id is not None else None
    return SurveyFacts(record.id, ticket.id, ticket.requester.address, survivor)


def _answers_survey(tx: Session, ticket: Ticket, inbound: Inbound) -> bool:
    """Is this a reply to the ticket's survey mail (by its threading headers)?"""
    ids = [i for i in (inbound.in_reply_to, *inbound.references) if i]
    return bool(ids) and tx.scalar(select(Message.id).where(
        Message.ticket_id == ticket.id, Message.kind == "survey",
        Message.message_id.in_(ids)).limit(1)) is not None


def _proof(mail: Incoming) -> authenticity.Verdict | None:
    """How the receiving server vouches for mail from a staff member or the district's
    own domains (None for anyone else: their mail is judged by what it says)."""
    config, sender = mail.config, mail.sender
    if not (config.staff.is_staff(sender) or config.own_domain(sender)):
        return None
    from ..mail import authenticity  # only the district's own mail needs it (and its parser)

    return authenticity.check(mail.raw.raw, sender, config.authentication.trusted_authserv_ids)
