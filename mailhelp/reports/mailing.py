"""The weekly digest (``[report] digest_to``, ``digest_schedule``): the report of the
seven whole days before the occurrence's day (local midnight to local midnight, desk
time; with "Mon 07:00", the previous calendar week, Monday to Sunday), mailed as HTML
with a text part through the outbox to each address, once per occurrence.

Sent once per occurrence by the morning queue's rule (desk/periodic.py: ``unsent``,
``once``): each mail is recorded in ``periodic_mail`` (kind "digest", the occurrence
as due_at) in the same transaction as its outbox row, so a second run, a restart or a
second runner sends nothing; an occurrence missed while the desk was down goes out
when it is back, that day, never a day late. ``report --mail`` queues one at once
(kind "digest_now", due_at the moment): explicit, so a second one is sent too.
Staff-like mail: no ticket, not rate-limited.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..db.session import Database
from ..delivery import unticketed
from ..delivery.outbox import _render_or_bundled
from ..mail.parse import Address
from .periods import Period, midnight

log = logging.getLogger(__name__)

KIND = "digest"  # the outbox kind, the template, and periodic_mail.kind when scheduled
NOW_KIND = "digest_now"  # periodic_mail.kind of `report --mail`


def week_before(config, occurrence: datetime) -> Period:
    """The seven whole local days before ``occurrence``'s day."""
    zone = config.helpdesk.zone
    day = occurrence.astimezone(zone).date()
    first = day - timedelta(days=7)
    return Period(midnight(first, zone), midnight(day, zone), zone,
                  f"{first.isoformat()} to {(day - timedelta(days=1)).isoformat()}")


def next_due(config, now: datetime) -> datetime | None:
    from ..desk import digest

    schedule = config.report.digest_schedule
    if schedule is None or not config.report.digest_to:
        return None
    return digest.next_due(schedule, config.helpdesk.zone, now)


def run_due(db: Database, config, now: datetime) -> int:
    """Queue the digest due at ``now`` to each address that has not had it."""
    from ..desk import periodic

    schedule = config.report.digest_schedule
    if schedule is None or not config.report.digest_to:
        return 0
    # Holidays do not stop it: the director's week is reported, open or not.
    due_at, todo = periodic.unsent(db, KIND, schedule, config.helpdesk.zone, (),
                                   config.report.digest_to, now)
    if not todo:
        return 0
    return send(db, config, week_before(config, due_at), todo, KIND, due_at, now)


def send(db: Database, config, period: Period, recipients, record_kind: str,
         due_at: datetime, now: datetime, by: str | None = None) -> int:
    """The report over ``period`` to each of ``recipients``; how many were queued."""
    from ..desk import periodic
    from . import build
    from .html import variables

    with db.sessions() as session:
        data = build(session, config, period, by)
    helpdesk = {"name": config.helpdesk.name, "address": config.helpdesk.address,
                "timezone": config.helpdesk.timezone}

    def mail(tx: Session, address: str) -> tuple[str, str | None]:
        rendered = _render_or_bundled(tx, config, KIND, variables(data, helpdesk), now)
        return f"sent: {data['opened']} opened in {period.label}", unticketed.enqueue(
            tx, config, KIND, Address("", address), rendered, now)

    queued = 0
    for address in recipients:
        sent = periodic.once(db, record_kind, address, due_at, now, mail, "digest")
        if sent is None:
            continue
        log.info("action=digest to=%s due=%s period=%s opened=%d message=%s", address,
                 due_at.isoformat(), period.label.replace(" ", ""), data["opened"], sent[1])
        queued += 1
    return queued
