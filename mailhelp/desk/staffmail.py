"""Mail among the staff of a ticket: the assignment mail, #note, copies of answers.

They thread with the ticket's staff notifications (notices.staff_notification): one
References chain per staff address (staffthread.py). They are enqueued in the caller's
transaction like every other mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Message, Person, Ticket
from ..db.storage import AttachmentStore
from ..delivery.outbox import AUTO_GENERATED, Draft, enqueue, write_pending
from ..mail.parse import Address, Attachment, Inbound
from .notices import message_variables, variables
from .staffthread import STAFF_KINDS, staff_thread

__all__ = ["STAFF_KINDS", "answer_copy", "assignment", "note", "staff_thread"]

# What an assignee is shown of the ticket so far.
_HISTORY_KINDS = ("request", "reply", "staff_reply")


def _staff_draft(tx: Session, config: Config, ticket: Ticket, template: str,
                 address: str, variables_: dict, from_name: str = "",
                 attachments: Sequence[Attachment] = ()) -> Draft:
    in_reply_to, references = staff_thread(tx, ticket, address)
    return Draft(kind="notification", template=template, to=(Address("", address),),
                 variables=variables_, in_reply_to=in_reply_to, references=references,
                 auto_submitted=AUTO_GENERATED, from_name=from_name,
                 reply_to=config.helpdesk.address, attachments=tuple(attachments))


def _history(tx: Session, ticket: Ticket) -> list[Message]:
    write_pending(tx)
    return list(tx.scalars(select(Message)
                           .where(Message.ticket_id == ticket.id,
                                  Message.kind.in_(_HISTORY_KINDS))
                           .order_by(Message.id)))


def _kept_files(store: AttachmentStore, messages: Sequence[Message],
                limit: int) -> tuple[Attachment, ...]:
    """The files of the ticket's conversation, read back from the store, within the
    size of one message (``[limits] max_message_size``)."""
    files, total = [], 0
    for message in messages:
        for kept in message.attachments:
            if total + kept.size > limit:
                continue
            total += kept.size
            files.append(Attachment(kept.filename, kept.content_type, store.get(kept.sha256),
                                    kept.content_id))
    return tuple(files)


def assignment(tx: Session, config: Config, ticket: Ticket, address: str, actor: str,
               store: AttachmentStore, usage: list[str], now: datetime) -> None:
    """The ticket, sent to the staff member it was just assigned to: the request and
    the conversation so far with their files, and how to answer."""
    messages = _history(tx, ticket)
    history = [{"from": m.from_name or m.from_address, "from_address": m.from_address,
                "date": m.created_at.astimezone(config.helpdesk.zone).strftime(
                    "%Y-%m-%d %H:%M"), "kind": m.kind,
                "text": m.text or ""} for m in messages]
    files = _kept_files(store, messages, config.limits.max_message_size)
    enqueue(tx, config, ticket, _staff_draft(
        tx, config, ticket, "assigned", address,
        variables(config, ticket, for_staff=True, event="assigned",
                  staff={"name": actor, "address": actor}, commands=usage,
                  conversation=history,
                  message={"subject": " ".join(str(ticket.subject or "").split()),
                           "text": "", "from": actor, "from_name": actor, "dropped": [],
                           "attachments": [{"filename": a.filename,
                                            "content_type": a.content_type,
                                            "size": a.size} for a in files]}),
        attachments=files), now)


def _other_staff(config: Config, assignee: str, writer: str, to: str) -> list[str]:
    """``to`` "all": every staff address but the writer's; "assignee": the ticket's
    assignee unless they wrote it (on an unassigned ticket, everyone else: a note
    must reach someone); "none": nobody."""
    if to == "none":
        return []
    if to == "assignee" and assignee:
        return [assignee] if assignee != writer else []
    return [a for a in config.staff.addresses if a != writer]


def _assignee(tx: Session, ticket: Ticket) -> str:
    # By id: a command or an answer of this message may have just set it, and the
    # relationship is loaded only at the next flush.
    return tx.get(Person, ticket.assignee_id).address if ticket.assignee_id else ""


def note(tx: Session, config: Config, ticket: Ticket, inbound: Inbound, text: str,
         now: datetime, attachments: Sequence[Attachment] = ()) -> None:
    """A #note, to the other staff (``[staff] notes_to``); never to the requester."""
    _to_staff(tx, config, ticket, inbound, text, "note",
              _other_staff(config, _assignee(tx, ticket), inbound.sender.address,
                           config.staff.notes_to),
              now, attachments)


def answer_copy(tx: Session, config: Config, ticket: Ticket, inbound: Inbound, text: str,
                now: datetime, attachments: Sequence[Attachment] = ()) -> None:
    """A copy of a staff member's public answer (``[staff] copy_answers``)."""
    _to_staff(tx, config, ticket, inbound, text, "answer",
              _other_staff(config, _assignee(tx, ticket), inbound.sender.address,
                           config.staff.copy_answers), now, attachments)


def _to_staff(tx: Session, config: Config, ticket: Ticket, inbound: Inbound, text: str,
              event: str, recipients: Sequence[str], now: datetime,
              attachments: Sequence[Attachment]) -> None:
    writer = inbound.sender.name or inbound.sender.address
    for address in recipients:
        enqueue(tx, config, ticket, _staff_draft(
            tx, config, ticket, "note", address,
            variables(config, ticket, for_staff=True, event=event,
                      staff={"name": writer, "address": inbound.sender.address},
                      message=message_variables(inbound, text)),
            from_name=f"{writer} via {config.helpdesk.name}", attachments=attachments), now)
