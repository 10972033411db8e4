"""Who may open a ticket: with ``[helpdesk] requester_domains`` set, people of those
domains (and staff); anyone else is an outsider.

An outsider's mail makes no ticket. With ``outsiders = "reply"`` they get one polite
answer a day at most (an autoresponder answering it gets none: automatic mail never
reaches here), and the message goes to ``[imap] outsiders_folder``, where staff can
still read it in any mail client. A participant a staff member CC'd is never an
outsider: their replies thread to the ticket before this is asked.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Outbox, Suppression
from ..delivery import unticketed
from ..delivery.outbox import AUTO_REPLIED
from ..delivery.templating import render
from ..mail.parse import Address, Inbound

log = logging.getLogger(__name__)

ONE_ANSWER_PER = timedelta(days=1)


def is_outsider(config: Config, address: str) -> bool:
    helpdesk = config.helpdesk
    return (bool(helpdesk.requester_domains) and helpdesk.outsiders != "accept"
            and not config.staff.is_staff(address) and not config.own_domain(address))


def turn_away(tx: Session, config: Config, inbound: Inbound, now: datetime) -> str:
    """No ticket; the polite answer where it is due. Returns what was done, for the log."""
    sender = inbound.sender
    answered = "no answer (outsiders = \"ignore\")"
    if config.helpdesk.outsiders == "reply":
        answered = _answer(tx, config, inbound, now)
    log.info("message=%s action=outsider sender=%s answer=%s", inbound.message_id,
             sender.address, answered)
    return f"outsider ({sender.address}): {answered}"


def _answer(tx: Session, config: Config, inbound: Inbound, now: datetime) -> str:
    sender = inbound.sender
    if not sender.deliverable:
        return "none (no address to answer)"
    recent = tx.scalar(select(func.count()).select_from(Outbox).where(
        Outbox.kind == "outsider", Outbox.to_address == sender.address,
        Outbox.created_at >= now - ONE_ANSWER_PER))
    if recent:
        return "none (answered within a day)"
    if tx.scalar(select(Suppression.id).where(Suppression.address == sender.address,
                                              Suppression.until > now).limit(1)):
        return "none (the address bounced lately)"
    from ..delivery import branding

    rendered = render("outsider", {
        "helpdesk": {"name": config.helpdesk.name, "address": config.helpdesk.address},
        "domains": list(config.helpdesk.requester_domains)},
        config.templates.dir, branding.brand(config))
    unticketed.enqueue(tx, config, "outsider", Address("", sender.address), rendered, now,
                       in_reply_to=inbound.message_id, references=inbound.references,
                       auto_submitted=AUTO_REPLIED)
    return "sent"
