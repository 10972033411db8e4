"""Apply one incoming message to the help desk: the only place ticket state changes.

Everything runs inside the caller's transaction, which also holds the outbox
rows for the mail the change causes; the caller commits once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import classify as verdicts
from .config import Config
from .db.models import Attachment, Message, Participant, Person, RawMessage, Ticket, TicketEvent
from .outbox import AUTO_GENERATED, AUTO_REPLIED, Draft, enqueue, subject_tag
from .parse import Address, Inbound
from .storage import AttachmentStore, safe_filename
from .threading import find_ticket, is_help_address

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one message: for the log, the raw row and the source."""

    action: str  # new_ticket | reply | duplicate | ignored
    ticket_id: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Context:
    config: Config
    store: AttachmentStore


def apply(tx: Session, ctx: Context, inbound: Inbound, raw: RawMessage, now: datetime) -> Outcome:
    """Record ``inbound`` on a ticket (a new one or the one it threads to)."""
    config = ctx.config
    if tx.scalar(select(Message.id).where(Message.message_id == inbound.message_id)) is not None:
        return Outcome("duplicate", detail="Message-ID already recorded")
    verdict = verdicts.classify(inbound, config.helpdesk.address)
    match = find_ticket(inbound, lambda ids: _ticket_of_ids(tx, ids),
                        config.helpdesk.subject_tag, config.helpdesk.address)
    ticket = tx.get(Ticket, match.ticket_id) if match else None
    if ticket is not None and match.guessable and not _may_join(ctx, ticket, inbound.sender):
        # Someone outside the ticket used its number: they get a ticket of their own
        # and learn nothing of the one they named.
        log.warning("ticket=%s message=%s action=refuse_join sender=%s reason=%s", ticket.id,
                    inbound.message_id, inbound.sender.address, match.reason)
        ticket = None
    if verdict.kind == verdicts.LOOP or verdict.kind == verdicts.SPAM:
        return Outcome("ignored", detail=verdict.reason)
    if verdict.automatic:
        if ticket is None:
            return Outcome("ignored", detail=verdict.reason)
        kind = "bounce" if verdict.kind == verdicts.BOUNCE else "note"
        _record(tx, ctx, ticket, inbound, raw, kind, match.reason, now)
        _event(tx, ticket, now, inbound.sender.address, f"received_{verdict.kind}", verdict.reason)
        return Outcome("recorded", ticket.id, verdict.reason)
    if ticket is not None:
        return _reply(tx, ctx, ticket, inbound, raw, match.reason, now)
    return _new_ticket(tx, ctx, inbound, raw, now)


def _new_ticket(
    tx: Session, ctx: Context, inbound: Inbound, raw: RawMessage, now: datetime
) -> Outcome:
    config = ctx.config
    requester = person(tx, inbound.sender, now)
    ticket = Ticket(
        subject=inbound.subject or "(no subject)",
        status="new",
        priority="normal",
        requester_id=requester.id,
        created_at=now,
        updated_at=now,
    )
    tx.add(ticket)
    tx.flush()
    for colleague in inbound.cc:
        if is_help_address(colleague.address, config.helpdesk.address):
            continue
        if config.staff.is_staff(colleague.address) or colleague.address == requester.address:
            continue
        add_participant(tx, ticket, person(tx, colleague, now), now)
    message = _record(tx, ctx, ticket, inbound, raw, "request", "", now)
    _event(tx, ticket, now, requester.address, "created", "")
    variables = _variables(ctx, ticket, message)
    enqueue(tx, config, ticket, Draft(
        kind="ack",
        to=(Address(requester.name, requester.address),),
        variables=variables,
        in_reply_to=inbound.message_id,
        references=inbound.references,
        auto_submitted=AUTO_REPLIED,
    ), now)
    for address in config.staff.addresses:
        if address == requester.address:
            continue
        enqueue(tx, config, ticket, Draft(
            kind="notification",
            to=(Address("", address),),
            variables=variables,
            in_reply_to=inbound.message_id,
            references=inbound.references,
            auto_submitted=AUTO_GENERATED,
            from_name=f"{requester.name or requester.address} via {config.helpdesk.name}",
            reply_to=config.helpdesk.address,
        ), now)
    log.info("ticket=%s message=%s action=new_ticket requester=%s", ticket.id,
             inbound.message_id, requester.address)
    return Outcome("new_ticket", ticket.id)


def _reply(
    tx: Session, ctx: Context, ticket: Ticket, inbound: Inbound, raw: RawMessage, reason: str,
    now: datetime,
) -> Outcome:
    staff = ctx.config.staff.is_staff(inbound.sender.address)
    kind = "staff_reply" if staff else "reply"
    _record(tx, ctx, ticket, inbound, raw, kind, reason, now)
    ticket.updated_at = now
    log.info("ticket=%s message=%s action=%s thread=%s", ticket.id, inbound.message_id, kind,
             reason)
    return Outcome("reply", ticket.id, reason)


def _record(
    tx: Session, ctx: Context, ticket: Ticket, inbound: Inbound, raw: RawMessage, kind: str,
    reason: str, now: datetime,
) -> Message:
    message = Message(
        ticket_id=ticket.id,
        direction="in",
        kind=kind,
        message_id=inbound.message_id,
        in_reply_to=inbound.in_reply_to,
        references=list(inbound.references),
        from_address=inbound.sender.address,
        from_name=inbound.sender.name,
        to=[a.address for a in inbound.to],
        cc=[a.address for a in inbound.cc],
        subject=inbound.subject,
        date=inbound.date,
        text=inbound.text,
        body=inbound.text,
        thread_reason=reason,
        raw_id=raw.id,
        created_at=now,
    )
    tx.add(message)
    tx.flush()
    for found in inbound.attachments:
        digest = ctx.store.put(found.payload)
        tx.add(Attachment(
            message_id=message.id,
            filename=safe_filename(found.filename),
            content_type=found.content_type[:255],
            size=found.size,
            sha256=digest,
            content_id=found.content_id[:998],
        ))
    raw.ticket_id = ticket.id
    return message


def person(tx: Session, address: Address, now: datetime) -> Person:
    """The person with this address, created on first sight; a new display name is kept."""
    found = tx.scalar(select(Person).where(Person.address == address.address))
    if found is None:
        found = Person(address=address.address, name=address.name[:200], created_at=now)
        tx.add(found)
        tx.flush()
    elif address.name and not found.name:
        found.name = address.name[:200]
    return found


def add_participant(tx: Session, ticket: Ticket, who: Person, now: datetime) -> None:
    if who.id == ticket.requester_id or any(p.person_id == who.id for p in ticket.participants):
        return
    ticket.participants.append(Participant(person_id=who.id, added_at=now))
    _event(tx, ticket, now, who.address, "participant_added", "")


def _may_join(ctx: Context, ticket: Ticket, sender: Address) -> bool:
    if ctx.config.staff.is_staff(sender.address):
        return True
    if ticket.requester.address == sender.address:
        return True
    return any(p.person.address == sender.address for p in ticket.participants)


def _ticket_of_ids(tx: Session, ids: Iterable[str]) -> int | None:
    ids = list(ids)
    rows = tx.execute(select(Message.message_id, Message.ticket_id)
                      .where(Message.message_id.in_(ids))).all()
    by_id = dict(rows)
    for message_id in ids:
        if message_id in by_id:
            return by_id[message_id]
    return None


def _event(tx: Session, ticket: Ticket, now: datetime, actor: str, action: str,
           detail: str) -> None:
    tx.add(TicketEvent(ticket_id=ticket.id, at=now, actor=actor, action=action, detail=detail))


def _variables(ctx: Context, ticket: Ticket, message: Message) -> dict:
    config = ctx.config
    return {
        "helpdesk": {"name": config.helpdesk.name, "address": config.helpdesk.address},
        "tag": subject_tag(config, ticket.id),
        "ticket": {"id": ticket.id, "subject": ticket.subject, "status": ticket.status,
                   "priority": ticket.priority},
        "requester": {"name": ticket.requester.name, "address": ticket.requester.address},
        "participants": [p.person.address for p in ticket.participants],
        "message": {
            "subject": message.subject,
            "text": message.text,
            "from": message.from_address,
            "attachments": [{"filename": a.filename, "content_type": a.content_type,
                             "size": a.size} for a in message.attachments],
        },
    }
