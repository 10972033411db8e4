"""Mail to the desk's admin about a problem that needs a person: a template that
fails, a sign-in that no longer works. At most one mail a day for each problem.

An alert belongs to no ticket. It is rendered from the bundled template only (an
alert about a broken override must not depend on the override) and queued in the
caller's transaction like any other mail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import format_datetime

from sqlalchemy.orm import Session

from . import composer, signing
from .config import Config
from .db.models import Alert, Outbox
from .outbox import AUTO_GENERATED, LOOP_HEADER
from .parse import Address
from .templating import render

log = logging.getLogger(__name__)

EVERY = timedelta(days=1)


def admin_alert(tx: Session, config: Config, key: str, problem: str, detail: str,
                now: datetime, every: timedelta = EVERY) -> bool:
    """Queue a mail to ``[helpdesk] admin`` about ``key`` unless one went out within
    ``every``; True if one was queued. The problem is logged either way."""
    log.error("action=admin_alert key=%s problem=%s", key, " ".join(problem.split()))
    admin = config.helpdesk.admin
    if not admin:
        return False
    seen = tx.get(Alert, key)
    if seen is not None and now - seen.sent_at < every:
        return False
    if seen is None:
        tx.add(Alert(key=key, sent_at=now, detail=detail))
    else:
        seen.sent_at, seen.detail = now, detail
    rendered = render("alert", {"helpdesk": {"name": config.helpdesk.name,
                                             "address": config.helpdesk.address},
                                "problem": problem, "detail": detail, "key": key})
    helpdesk = config.helpdesk
    message_id = signing.message_id(signing.desk_key(tx), 0, helpdesk.domain)
    head = composer.headers([
        ("From", Address(helpdesk.name, helpdesk.address).formatted()), ("To", admin),
        ("Subject", rendered.subject), ("Date", format_datetime(now)),
        ("Message-ID", message_id), ("Auto-Submitted", AUTO_GENERATED),
        ("X-Auto-Response-Suppress", "All"), (LOOP_HEADER, helpdesk.address)])
    tx.add(Outbox(ticket_id=None, kind="alert", message_id=message_id,
                  mail_from=helpdesk.address, recipients=[admin], to_address=admin, raw=head,
                  body_text=rendered.text, body_html=rendered.html, status="queued",
                  attempts=0, next_attempt_at=now, created_at=now))
    log.warning("message=%s action=enqueue kind=alert to=%s key=%s", message_id, admin, key)
    return True
