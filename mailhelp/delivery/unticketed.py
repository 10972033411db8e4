"""Mail that belongs to no ticket: alerts to the admin, the answer to an outsider.

Queued in the caller's transaction like every other mail, with a signed Message-ID
and return path of its own; the sender treats it as any outbox row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime

from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Outbox
from ..mail import composer, signing
from ..mail.parse import Address
from ..states import OutboxStatus
from . import branding
from .outbox import AUTO_GENERATED, LOOP_HEADER, envelope_sender
from .templating import Rendered

log = logging.getLogger(__name__)


def enqueue(tx: Session, config: Config, kind: str, to: Address, rendered: Rendered,
            now: datetime, in_reply_to: str = "", references: Sequence[str] = (),
            auto_submitted: str = AUTO_GENERATED) -> str:
    """Queue one mail to ``to``; returns its Message-ID."""
    helpdesk = config.helpdesk
    message_id = signing.message_id(signing.desk_key(tx), 0, helpdesk.domain)
    fields = [("From", Address(helpdesk.name, helpdesk.address).formatted()),
              ("To", to.formatted()), ("Subject", rendered.subject),
              ("Date", format_datetime(now)), ("Message-ID", message_id)]
    if in_reply_to:
        fields.append(("In-Reply-To", in_reply_to))
    head = composer.headers(fields)
    thread = [i for i in (*references, in_reply_to) if i][-10:]
    if thread:
        head += composer.id_list("References", thread)
    head += composer.headers([("Auto-Submitted", auto_submitted),
                              ("X-Auto-Response-Suppress", "All"),
                              (LOOP_HEADER, helpdesk.address)])
    text, html = rendered.text, rendered.html
    logo = branding.logo(config)
    if logo is not None and f"cid:{logo.cid}" in html:
        # The layout shows the logo (templates rendered with branding.brand): it goes
        # with the mail, which the sender's plain text-and-HTML body would not carry.
        head += composer.body(rendered, (), logo)
        text = html = None
    tx.add(Outbox(ticket_id=None, kind=kind, message_id=message_id,
                  mail_from=envelope_sender(config, message_id), recipients=[to.address],
                  to_address=to.address, raw=head, body_text=text,
                  body_html=html, status=OutboxStatus.QUEUED, attempts=0,
                  next_attempt_at=now, created_at=now))
    log.info("message=%s action=enqueue kind=%s to=%s", message_id, kind, to.address)
    return message_id
