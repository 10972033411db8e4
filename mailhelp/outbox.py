"""Compose outgoing mail and enqueue it in the caller's transaction.

Nothing here talks to a mail server: the outbox row is written together with
the ticket change that caused it, and smtp.py delivers it later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .config import Config
from .db.models import Message, Outbox, Suppression, Ticket
from .parse import Address, Attachment
from .storage import safe_filename
from .templating import Rendered, render

log = logging.getLogger(__name__)

# Mail we send in answer to someone's message, versus mail we start ourselves (RFC 3834).
AUTO_REPLIED = "auto-replied"
AUTO_GENERATED = "auto-generated"
LOOP_HEADER = "X-Mailhelp-Loop"
# Mail the help desk sends by itself to requesters, limited per address and per ticket;
# staff notifications are limited per ticket only. Relays of a person's answer never.
TO_REQUESTERS = ("ack", "status", "reminder", "survey")
RATE_LIMITED = (*TO_REQUESTERS, "notification")
LIMITS_MEMO = "mailhelp_limits"


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


def compose(config: Config, ticket: Ticket, draft: Draft, now: datetime,
            rendered: Rendered | None = None) -> EmailMessage:
    """Render a draft into a complete message (text and HTML parts, threading headers)."""
    rendered = rendered or render(draft.template or draft.kind, draft.variables,
                                  config.templates.dir)
    helpdesk = config.helpdesk
    mail = EmailMessage()
    sender = Address(draft.from_name or helpdesk.name, helpdesk.address)
    mail["From"] = sender.formatted()
    mail["To"] = ", ".join(a.formatted() for a in draft.to)
    if draft.cc:
        mail["Cc"] = ", ".join(a.formatted() for a in draft.cc)
    if draft.reply_to:
        mail["Reply-To"] = draft.reply_to
    mail["Subject"] = rendered.subject
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = make_msgid(idstring=f"mailhelp.t{ticket.id}", domain=helpdesk.domain)
    if draft.in_reply_to:
        mail["In-Reply-To"] = draft.in_reply_to
    references = _dedupe([*draft.references, draft.in_reply_to])
    if references:
        mail["References"] = " ".join(references[-20:])
    # Loop protection for every receiver that honours either convention.
    mail["Auto-Submitted"] = draft.auto_submitted
    mail["X-Auto-Response-Suppress"] = "All"
    mail[LOOP_HEADER] = helpdesk.address
    mail["X-Mailhelp-Ticket"] = str(ticket.id)
    mail.set_content(rendered.text)
    mail.add_alternative(rendered.html, subtype="html")
    for attachment in draft.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        mail.add_attachment(attachment.payload, maintype=maintype or "application",
                            subtype=subtype or "octet-stream",
                            filename=safe_filename(attachment.filename))
    return mail


def enqueue(
    tx: Session, config: Config, ticket: Ticket, draft: Draft, now: datetime
) -> Outbox | None:
    """Compose a draft and record it on the ticket and in the outbox, in ``tx``."""
    if not draft.to and not draft.cc:
        log.warning("ticket=%s action=not_sent kind=%s reason=no deliverable recipient",
                    ticket.id, draft.kind)
        return None
    if not draft.to:
        draft = replace(draft, to=draft.cc[:1], cc=draft.cc[1:])
    rendered = render(draft.template or draft.kind, draft.variables, config.templates.dir)
    mail = compose(config, ticket, draft, now, rendered)
    held = hold_reason(tx, config, ticket, draft, now)
    message = Message(
        ticket_id=ticket.id,
        direction="out",
        kind=draft.kind,
        message_id=mail["Message-ID"],
        in_reply_to=draft.in_reply_to,
        references=list(draft.references),
        from_address=config.helpdesk.address,
        from_name=draft.from_name or config.helpdesk.name,
        to=[a.address for a in draft.to],
        cc=[a.address for a in draft.cc],
        subject=rendered.subject,
        date=now,
        text=rendered.text,
        body=rendered.text,
        created_at=now,
    )
    row = Outbox(
        ticket_id=ticket.id,
        message_row=message,
        kind=draft.kind,
        message_id=message.message_id,
        mail_from=config.helpdesk.address,
        recipients=[a.address for a in (*draft.to, *draft.cc)],
        to_address=draft.to[0].address,
        raw=mail.as_bytes(policy=SMTP_POLICY),
        status="suppressed" if held else "queued",
        last_error=held or None,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    tx.add(row)
    tx.flush()
    if not held:
        _count_queued(tx, ticket, draft)
    if held:
        log.warning("ticket=%s message=%s action=suppressed kind=%s to=%s outbox=%s reason=%s",
                    ticket.id, message.message_id, draft.kind, ",".join(row.recipients), row.id,
                    held)
    else:
        log.info("ticket=%s message=%s action=enqueue kind=%s to=%s outbox=%s", ticket.id,
                 message.message_id, draft.kind, ",".join(row.recipients), row.id)
    return row


def hold_reason(tx: Session, config: Config, ticket: Ticket, draft: Draft, now: datetime) -> str:
    """Why an automatic mail must not go out now, or '' (human answers are never held).

    The counts are read once per transaction and kept up to date in ``tx.info`` as
    mail is queued: one message causes several mails, and each used to ask again.
    """
    if draft.kind not in RATE_LIMITED:
        return ""
    limits, memo = config.limits, _limits_memo(tx)
    since = now - timedelta(hours=1)
    recent = select(func.count()).select_from(Outbox).where(
        Outbox.created_at >= since, Outbox.status != "suppressed")
    if draft.kind in TO_REQUESTERS:
        recipients = [a.address for a in (*draft.to, *draft.cc)]
        unknown = [r for r in recipients if r not in memo["bounced"]]
        if unknown:
            found = set(tx.scalars(select(Suppression.address).where(
                Suppression.address.in_(unknown), Suppression.until > now)))
            memo["bounced"].update({r: r in found for r in unknown})
        bounced = next((r for r in recipients if memo["bounced"][r]), None)
        if bounced:
            return f"{bounced} bounced lately: no automatic mail until the suppression ends"
    if ticket.id not in memo["ticket"]:
        memo["ticket"][ticket.id] = tx.scalar(recent.where(
            Outbox.ticket_id == ticket.id, Outbox.kind.in_(RATE_LIMITED)))
    on_ticket = memo["ticket"][ticket.id]
    if on_ticket >= limits.auto_mails_per_ticket:
        return f"rate limit: {on_ticket} automatic mails on this ticket in the last hour"
    if draft.kind in TO_REQUESTERS:
        address = draft.to[0].address
        if address not in memo["address"]:
            memo["address"][address] = tx.scalar(recent.where(
                Outbox.to_address == address, Outbox.kind.in_(TO_REQUESTERS)))
        if memo["address"][address] >= limits.auto_mails_per_address:
            return (f"rate limit: {memo['address'][address]} automatic mails to {address} "
                    "in the last hour")
    return ""


def _limits_memo(tx: Session) -> dict:
    return tx.info.setdefault(LIMITS_MEMO, {"ticket": {}, "address": {}, "bounced": {}})


def _count_queued(tx: Session, ticket: Ticket, draft: Draft) -> None:
    memo = _limits_memo(tx)
    if draft.kind in RATE_LIMITED and ticket.id in memo["ticket"]:
        memo["ticket"][ticket.id] += 1
    if draft.kind in TO_REQUESTERS and draft.to[0].address in memo["address"]:
        memo["address"][draft.to[0].address] += 1


def note_new_ticket(tx: Session, ticket: Ticket) -> None:
    """A ticket made in ``tx`` has sent nothing yet: no need to count (a range scan)."""
    _limits_memo(tx)["ticket"][ticket.id] = 0


def forget_limits(tx: Session) -> None:
    """After adding a suppression in ``tx``: the memo no longer tells the truth."""
    tx.info.pop(LIMITS_MEMO, None)


def _dedupe(ids: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in ids:
        if value:
            seen.setdefault(value, None)
    return list(seen)
