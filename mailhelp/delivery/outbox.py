"""Compose outgoing mail and enqueue it in the caller's transaction.

Nothing here talks to a mail server: the outbox row is written together with
the ticket change that caused it, and the worker (worker.py) delivers it later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import format_datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Outbox, Suppression, Ticket
from ..desk.batch import Batch
from ..errors import TemplateError
from ..mail import composer, signing
from ..mail.parse import Address, Attachment
from ..states import OutboxStatus
from . import branding, loops
from .templating import Rendered, render

log = logging.getLogger(__name__)

# Mail we send in answer to someone's message, versus mail we start ourselves (RFC 3834).
AUTO_REPLIED = "auto-replied"
AUTO_GENERATED = "auto-generated"
LOOP_HEADER = "X-Mailhelp-Loop"
# Mail the help desk sends by itself to requesters: the only mail a loop can feed on, so
# the only mail the limits hold. Staff mail (notifications, notes, assignments, alerts)
# goes to people who need it, and relays carry a person's answer: neither is ever held.
TO_REQUESTERS = ("ack", "status", "reminder", "survey")
RATE_LIMITED = TO_REQUESTERS


# hold_reason's queries, built once and run on the transaction's connection.
_outbox, _suppressions = Outbox.__table__, Suppression.__table__
_BOUNCED = select(_suppressions.c.address).where(
    _suppressions.c.address.in_(bindparam("addresses", expanding=True)),
    _suppressions.c.until > bindparam("now"))
_RECENT = select(func.count()).select_from(_outbox).where(
    _outbox.c.created_at >= bindparam("since"), _outbox.c.status != OutboxStatus.SUPPRESSED)
_RECENT_ON_TICKET = _RECENT.where(_outbox.c.ticket_id == bindparam("ticket_id"),
                                  _outbox.c.kind.in_(RATE_LIMITED))
_RECENT_BY_TICKET = select(_outbox.c.ticket_id, func.count()).where(
    _outbox.c.created_at >= bindparam("since"), _outbox.c.status != OutboxStatus.SUPPRESSED,
    _outbox.c.ticket_id.in_(bindparam("ticket_ids", expanding=True)),
    _outbox.c.kind.in_(RATE_LIMITED)).group_by(_outbox.c.ticket_id)
_RECENT_BY_ADDRESS = select(_outbox.c.to_address, func.count()).where(
    _outbox.c.created_at >= bindparam("since"), _outbox.c.status != OutboxStatus.SUPPRESSED,
    _outbox.c.to_address.in_(bindparam("addresses", expanding=True)),
    _outbox.c.kind.in_(TO_REQUESTERS)).group_by(_outbox.c.to_address)
_RECENT_TO_ADDRESS = _RECENT.where(_outbox.c.to_address == bindparam("address"),
                                   _outbox.c.kind.in_(TO_REQUESTERS))


@dataclass(frozen=True)
class Draft:
    """What one outgoing mail needs besides its rendered text."""

    kind: str
    to: tuple[Address, ...]
    variables: dict
    cc: tuple[Address, ...] = ()
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    auto_submitted: str = AUTO_REPLIED
    from_name: str = ""
    reply_to: str = ""
    template: str = ""  # the template's name where it is not the kind's
    attachments: tuple[Attachment, ...] = ()


def subject_tag(config: Config, ticket_id: int) -> str:
    return config.helpdesk.subject_tag.format(id=ticket_id)


def header_block(config: Config, ticket: Ticket, draft: Draft, now: datetime,
                 subject: str, key: bytes) -> tuple[str, bytes]:
    """A new Message-ID (signed with ``key``) and the header lines of the mail that
    carries it."""
    helpdesk = config.helpdesk
    message_id = signing.message_id(key, ticket.id, helpdesk.domain)
    fields = [("From", Address(draft.from_name or helpdesk.name, helpdesk.address).formatted()),
              ("To", ", ".join(a.formatted() for a in draft.to))]
    if draft.cc:
        fields.append(("Cc", ", ".join(a.formatted() for a in draft.cc)))
    if draft.reply_to:
        fields.append(("Reply-To", draft.reply_to))
    fields += [("Subject", subject), ("Date", format_datetime(now)), ("Message-ID", message_id)]
    if draft.in_reply_to:
        fields.append(("In-Reply-To", draft.in_reply_to))
    head = composer.headers(fields)
    references = _dedupe([*draft.references, draft.in_reply_to])
    if references:
        head += composer.id_list("References", references[-20:])
    # Loop protection for every receiver that honours either convention.
    head += composer.headers([("Auto-Submitted", draft.auto_submitted),
                              ("X-Auto-Response-Suppress", "All"),
                              (LOOP_HEADER, helpdesk.address),
                              ("X-Mailhelp-Ticket", str(ticket.id))])
    return message_id, head


def enqueue(
    tx: Session, config: Config, ticket: Ticket, draft: Draft, now: datetime
) -> str | None:
    """Compose a draft and record it on the ticket and in the outbox, in ``tx``.

    Returns the mail's Message-ID (None: no one to send it to). The two rows are held
    back by the transaction's batch and written with the rest of its mail, with one
    statement for the messages and one for the outbox rows (``Batch.write``).
    """
    if not draft.to and not draft.cc:
        log.warning("ticket=%s action=not_sent kind=%s reason=no deliverable recipient",
                    ticket.id, draft.kind)
        return None
    if not draft.to:
        draft = replace(draft, to=draft.cc[:1], cc=draft.cc[1:])
    rendered = _render(tx, config, draft, now)
    message_id, raw = header_block(config, ticket, draft, now, rendered.subject,
                                   signing.desk_key(tx))
    text = html = None
    logo = branding.logo(config)
    if draft.attachments or logo is not None:
        raw += _content(tx, rendered, draft.attachments, logo)
    else:
        # Building the MIME body costs more than the rest of a mail together: the sender
        # builds it, in its own process, from the words stored with the header block.
        text, html = rendered.text, rendered.html
    held = hold_reason(tx, config, ticket, draft, now)
    recipients = [a.address for a in (*draft.to, *draft.cc)]
    Batch.of(tx).hold_mail({
        "ticket_id": ticket.id, "direction": "out", "kind": draft.kind,
        "message_id": message_id, "in_reply_to": draft.in_reply_to,
        "references": list(draft.references), "from_address": config.helpdesk.address,
        "from_name": draft.from_name or config.helpdesk.name,
        "to": [a.address for a in draft.to], "cc": [a.address for a in draft.cc],
        "subject": rendered.subject, "date": now, "text": rendered.text,
        "body": rendered.text, "created_at": now,
    }, {
        "ticket_id": ticket.id, "kind": draft.kind,
        "message_id": message_id, "mail_from": envelope_sender(config, message_id),
        "recipients": recipients, "to_address": draft.to[0].address, "raw": raw,
        "body_text": text, "body_html": html, "last_error": held or None,
        "status": OutboxStatus.SUPPRESSED if held else OutboxStatus.QUEUED,
        "attempts": 0, "next_attempt_at": now, "created_at": now,
    })
    if held:
        log.warning("ticket=%s message=%s action=suppressed kind=%s to=%s reason=%s",
                    ticket.id, message_id, draft.kind, ",".join(recipients), held)
        from ..desk.held import note_for_staff

        note_for_staff(tx, config, ticket, draft.kind, held, now)
    else:
        _count_queued(tx, ticket, draft)
        log.info("ticket=%s message=%s action=enqueue kind=%s to=%s", ticket.id,
                 message_id, draft.kind, ",".join(recipients))
    return message_id


def envelope_sender(config: Config, message_id: str) -> str:
    """The envelope sender: a signed address of its own where bounces are wanted."""
    if config.smtp is not None and not config.smtp.verp:
        return config.helpdesk.address
    return signing.return_path(config.helpdesk.address, message_id)


def write_pending(tx: Session) -> None:
    """Write what ``tx``'s batch holds back (mail, incoming messages, events): before a
    query reads a ticket's messages."""
    batch = Batch.current(tx)
    if batch is not None:
        batch.write()


def hold_reason(tx: Session, config: Config, ticket: Ticket, draft: Draft, now: datetime) -> str:
    """Why an automatic mail must not go out now, or '' (human answers are never held).

    The counts are read once per transaction and kept up to date in its batch as mail
    is queued: one message causes several mails, and each used to ask again.
    """
    if draft.kind not in RATE_LIMITED:
        return ""
    # The rows counted here are written by the batch's INSERTs (enqueue) and suppressions
    # are flushed where they are made (Batch.forget_limits): the ORM's pending objects
    # (the ticket's new message and events) need not be flushed for these queries.
    with tx.no_autoflush:
        return _hold_reason(tx, config, ticket, draft, now)


def _hold_reason(tx: Session, config: Config, ticket: Ticket, draft: Draft,
                 now: datetime) -> str:
    limits, memo = config.limits, Batch.of(tx).limits
    since = now - timedelta(hours=1)
    run = tx.connection().execute
    if draft.kind in TO_REQUESTERS:
        recipients = [a.address for a in (*draft.to, *draft.cc)]
        _look_up_bounced(tx, recipients, now)
        bounced = next((r for r in recipients if memo["bounced"][r]), None)
        if bounced:
            return f"{bounced} bounced lately: no automatic mail until the suppression ends"
    address = draft.to[0].address
    if address not in memo["address"]:
        memo["address"][address] = run(_RECENT_TO_ADDRESS, {
            "since": since, "address": address}).scalar_one()
    to_address = memo["address"][address]
    # Never below the limit for mail that looks like a loop: a desk that allows more of
    # that (a bulk import, a benchmark) allows as many of the rest.
    if to_address >= max(limits.auto_mails_per_address_cap, limits.auto_mails_per_address):
        return (f"rate limit: {to_address} automatic mails to {address} in the last hour, "
                "far more than a person writes")
    if ticket.id not in memo["ticket"]:
        memo["ticket"][ticket.id] = run(_RECENT_ON_TICKET, {
            "since": since, "ticket_id": ticket.id}).scalar_one()
    on_ticket = memo["ticket"][ticket.id]
    if on_ticket >= limits.auto_mails_per_ticket:
        over = f"{on_ticket} automatic mails on this ticket in the last hour"
    elif to_address >= limits.auto_mails_per_address:
        over = f"{to_address} automatic mails to {address} in the last hour"
    else:
        return ""
    # Over a limit, but a person's separate requests are still answered: only mail that
    # answers what looks like a loop is held (asked here, past a limit, so that the
    # usual mail costs no statement more).
    sign = loops.loop_sign(tx, draft.in_reply_to, address, since)
    if not sign:
        log.info("ticket=%s action=not_held kind=%s to=%s reason=%s, but no sign of a loop",
                 ticket.id, draft.kind, address, over)
        return ""
    return f"rate limit: {over}, and {sign}"


def _render(tx: Session, config: Config, draft: Draft, now: datetime) -> Rendered:
    """The draft's words; mails of one change that say the same (a notification to each
    staff member) are rendered once. An override that fails to render gives way to the
    bundled template, so that the mail still goes out, and the admin hears of it."""
    name = draft.template or draft.kind
    return _latest(tx, "rendered", (name, draft.variables),
                   lambda: _render_or_bundled(tx, config, name, draft.variables, now))


def _render_or_bundled(tx: Session, config: Config, name: str, variables: dict,
                       now: datetime) -> Rendered:
    brand = branding.brand(config)
    try:
        return render(name, variables, config.templates.dir, brand)
    except TemplateError as error:
        if not config.templates.dir:
            raise
        from ..desk.alerts import admin_alert

        admin_alert(tx, config, f"template:{name}",
                    f"the template {name} in {config.templates.dir} fails",
                    f"{error}\n\nThe built-in template was used instead until it is fixed; "
                    "`mailhelp check` names the line.", now)
        return render(name, variables, "", brand)


def look_ahead(tx: Session, addresses: Sequence[str], now: datetime,
               ticket_ids: Sequence[int] = ()) -> None:
    """Suppressions of, and last hour's automatic mail to, a batch's senders (whom its
    acknowledgements go to), and last hour's automatic mail on the tickets its replies
    answer: three queries instead of up to three per message. Asked before the batch
    enqueues anything (enqueue keeps the counts current from then on)."""
    memo = Batch.of(tx).limits
    since = now - timedelta(hours=1)
    _look_up_bounced(tx, addresses, now)
    uncounted = sorted({a for a in addresses if a not in memo["address"]})
    if uncounted:
        counts = dict(tx.connection().execute(_RECENT_BY_ADDRESS, {
            "addresses": uncounted, "since": since}).all())
        memo["address"].update({a: counts.get(a, 0) for a in uncounted})
    uncounted = sorted({t for t in ticket_ids if t not in memo["ticket"]})
    if uncounted:
        counts = dict(tx.connection().execute(_RECENT_BY_TICKET, {
            "ticket_ids": uncounted, "since": since}).all())
        memo["ticket"].update({t: counts.get(t, 0) for t in uncounted})


def _look_up_bounced(tx: Session, addresses: Sequence[str], now: datetime) -> None:
    """Whether these addresses are suppressed now, for those the memo does not know."""
    memo = Batch.of(tx).limits["bounced"]
    unknown = sorted({a for a in addresses if a not in memo})
    if unknown:
        found = set(tx.connection().execute(
            _BOUNCED, {"addresses": unknown, "now": now}).scalars())
        memo.update({a: a in found for a in unknown})


def _content(tx: Session, rendered: Rendered, attachments: Sequence[Attachment],
             logo: branding.Logo | None = None) -> bytes:
    """The MIME body for these words, built once for all the mails of ``tx`` that share
    them (a notification to each staff member, say); only the latest is kept."""
    return _latest(tx, "content", (rendered, tuple(attachments)),
                   lambda: composer.body(rendered, attachments, logo))


def _latest(tx: Session, name: str, key, make):
    """``make()`` for ``key``, kept by ``tx``'s batch while the next caller asks for an
    equal key (only the latest is kept: the mails of one change follow one another)."""
    latest = Batch.of(tx).latest
    memo = latest.get(name)
    if memo is None or memo[0] != key:
        memo = latest[name] = (key, make())
    return memo[1]


def _count_queued(tx: Session, ticket: Ticket, draft: Draft) -> None:
    memo = Batch.of(tx).limits
    if draft.kind in RATE_LIMITED and ticket.id in memo["ticket"]:
        memo["ticket"][ticket.id] += 1
    if draft.kind in TO_REQUESTERS and draft.to[0].address in memo["address"]:
        memo["address"][draft.to[0].address] += 1


def _dedupe(ids: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in ids:
        if value:
            seen.setdefault(value, None)
    return list(seen)
