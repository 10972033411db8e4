"""Mail to the desk's admin about a problem that needs a person: a template that
fails, a sign-in that no longer works. At most one mail a day for each problem.

An alert belongs to no ticket. It is rendered from the bundled template only (an
alert about a broken override must not depend on the override) and queued in the
caller's transaction like any other mail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Alert
from ..delivery import unticketed
from ..delivery.templating import render
from ..mail.parse import Address

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
    unticketed.enqueue(tx, config, "alert", Address("", admin), rendered, now)
    return True
