"""The weekly digest (``[report] digest_to``, ``digest_schedule``): the report of the
seven whole days before the occurrence's day (local midnight to local midnight, desk
time; with "Mon 07:00", the previous calendar week, Monday to Sunday), mailed as HTML
with a text part through the outbox to each address, once per occurrence.

Each mail is recorded in ``periodic_mail`` (kind "digest", the occurrence as due_at)
in the same transaction as its outbox row: a second run, a restart or a second runner
finds the row (or fails on the unique index) and sends nothing. An occurrence missed
while the desk was down goes out when it is back, that day (desk/digest.due), never a
day late. ``report --mail`` queues one at once (kind "digest_now", due_at the
moment): explicit, so a second one is sent too. Staff-like mail: no ticket, not
rate-limited.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..db.models import PeriodicMail
from ..db.session import Database, transaction
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
    from ..desk import digest

    schedule = config.report.digest_schedule
    if schedule is None or not config.report.digest_to:
        return 0
    # Holidays do not stop it: the director's week is reported, open or not.
    due_at = digest.due(schedule, config.helpdesk.zone, (), now)
    if due_at is None:
        return 0
    with db.sessions() as session:
        done = set(session.scalars(select(PeriodicMail.recipient).where(
            PeriodicMail.kind == KIND, PeriodicMail.due_at == due_at)))
    todo = [a for a in config.report.digest_to if a not in done]
    if not todo:
        return 0
    return send(db, config, week_before(config, due_at), todo, KIND, due_at, now)


def send(db: Database, config, period: Period, recipients, record_kind: str,
         due_at: datetime, now: datetime, by: str | None = None) -> int:
    """The report over ``period`` to each of ``recipients``; how many were queued."""
    from . import build
    from .html import variables

    with db.sessions() as session:
        data = build(session, config, period, by)
    helpdesk = {"name": config.helpdesk.name, "address": config.helpdesk.address,
                "timezone": config.helpdesk.timezone}
    queued = 0
    for address in recipients:
        try:
            with transaction(db) as tx:
                record = PeriodicMail(kind=record_kind, recipient=address, due_at=due_at,
                                      done_at=now, result="")
                tx.add(record)
                tx.flush()  # a second runner's row fails here, before its mail is made
                rendered = _render_or_bundled(tx, config, KIND, variables(data, helpdesk),
                                              now)
                message_id = unticketed.enqueue(tx, config, KIND, Address("", address),
                                                rendered, now)
                record.message_id = message_id
                record.result = f"sent: {data['opened']} opened in {period.label}"
        except IntegrityError:
            log.info("action=digest to=%s due=%s sent=no reason=another runner sent it",
                     address, due_at.isoformat())
            continue
        log.info("action=digest to=%s due=%s period=%s opened=%d message=%s", address,
                 due_at.isoformat(), period.label.replace(" ", ""), data["opened"], message_id)
        queued += 1
    return queued
