"""The handler for bounces: believed for the desk's own mail only."""

from __future__ import annotations

import logging

from sqlalchemy import select

from ...db.models import Outbox, Suppression, Ticket
from ...states import OutboxStatus
from ..merge import survivor_of
from ..route import Route
from ..tickets import event
from .common import Incoming, Outcome, record

log = logging.getLogger(__name__)


def bounce(mail: Incoming, route: Route) -> Outcome:
    """A bounce of mail we sent (by its signed return path or Message-ID): mark it, note
    it on its ticket (or the ticket that one was merged into), rest the failed addresses
    that mail went to. Anything else is dropped: a bounce's own word about who failed is
    believed for our mail only."""
    from ...mail import bounces, signing

    tx, inbound, now, reason = mail.tx, mail.inbound, mail.now, route.reason
    helpdesk = mail.config.helpdesk
    delivered = (*inbound.headers.get("delivered-to", ()),
                 *inbound.headers.get("x-original-to", ()),
                 *(a.address for a in (*inbound.to, *inbound.cc)))
    report = bounces.analyse(mail.raw.raw, signing.desk_key(tx), helpdesk.address, delivered)
    returned = list(tx.scalars(select(Outbox).where(Outbox.message_id.in_(report.returned_ids))
                               .order_by(Outbox.id))) if report.returned_ids else []
    if not returned:
        log.warning("message=%s action=bounce_dropped reason=not a bounce of our mail "
                    "(no signed return path or Message-ID)", inbound.message_id)
        return Outcome("ignored", detail=f"{reason}; not a bounce of our mail")
    sent_to = {r.lower() for row in returned for r in row.recipients}
    failed = [r for r in report.recipients if r in sent_to]
    for row in returned:
        row.status = OutboxStatus.BOUNCED
        row.last_error = f"bounced: {', '.join(failed) or reason}"
    ticket_id = next((row.ticket_id for row in returned if row.ticket_id), None)
    if ticket_id is not None:
        # Mail sent on a ticket merged since: noted on the survivor, where its
        # conversation went and staff look (the outbox row stays the merged ticket's).
        ticket_id = survivor_of(tx, ticket_id)
    if failed and report.permanent:
        until = now + mail.config.limits.bounce_suppression
        why = f"bounce on #{ticket_id}" if ticket_id else "bounce"
        for address in failed:
            tx.add(Suppression(address=address, until=until, reason=why, created_at=now))
        mail.batch.forget_limits()
    ticket = tx.get(Ticket, ticket_id) if ticket_id else None
    if ticket is None:
        # Mail of no ticket's (an outsider's answer, an alert): marked, and the address
        # rests; there is no ticket to note it on.
        log.warning("message=%s action=bounce recipients=%s returned=%s ticket=-",
                    inbound.message_id, ",".join(failed) or "-",
                    ",".join(str(r.id) for r in returned))
        return Outcome("ignored", detail=f"bounce of mail without a ticket: "
                                          f"{', '.join(failed) or reason}")
    record(mail, ticket, "bounce", "bounce", inbound.text)
    event(tx, ticket, now, "system", "bounced",
          f"{', '.join(failed) or 'unknown recipient'} ({', '.join(r.kind for r in returned)})")
    log.warning("ticket=%s message=%s action=bounce recipients=%s returned=%s", ticket.id,
                inbound.message_id, ",".join(failed) or "-",
                ",".join(str(r.id) for r in returned) or "-")
    return Outcome("recorded", ticket.id, f"bounce: {', '.join(failed) or reason}")
