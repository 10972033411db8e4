"""What every handler works with: the message being handled, its outcome, and keeping
an incoming message on its ticket."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from ...config import Config
from ...db.models import Attachment, Message, Survey, Ticket
from ...db.storage import AttachmentStore, safe_filename
from ...directory import Directory
from ...mail.parse import Attachment as ParsedAttachment
from ...mail.parse import Inbound
from ..batch import Batch


@dataclass(frozen=True)
class Outcome:
    """What happened to one message: for the log, the raw row and the source."""

    action: str  # new_ticket | reply | staff_reply | recorded | duplicate | ignored | outsider
    ticket_id: int | None = None
    detail: str = ""


@dataclass
class Stored:
    """The stored incoming message as the workflow sees it: its raw_messages row and
    bytes; ``ticket_id`` is set to the ticket it was recorded on."""

    id: int
    raw: bytes
    ticket_id: int | None = None


@dataclass(frozen=True)
class Context:
    config: Config
    store: AttachmentStore
    batch: Batch | None = None  # the pipeline's, for the messages of one transaction
    directory: Directory | None = None  # [directory] csv: who a new ticket's requester is


@dataclass
class Incoming:
    """One message being handled, in the caller's transaction, and the rows its facts
    loaded (held here: the session keeps only weak references, and the handler reads
    them again)."""

    tx: Session
    ctx: Context
    inbound: Inbound
    raw: Stored
    now: datetime
    tickets: dict[int, Ticket] = field(default_factory=dict)
    surveys: dict[int, Survey] = field(default_factory=dict)

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def sender(self) -> str:
        return self.inbound.sender.address

    @property
    def batch(self) -> Batch:
        """The transaction's batch: the pipeline's, else a batch of this one message."""
        return self.ctx.batch if self.ctx.batch is not None else Batch.of(self.tx)

    def ticket(self, ticket_id: int) -> Ticket:
        found = self.tickets.get(ticket_id)
        return found if found is not None else self.tx.get(Ticket, ticket_id)


def record(mail: Incoming, ticket: Ticket, kind: str, reason: str, text: str) -> None:
    """Keep the incoming message on ``ticket`` (as a request, a reply, a note...)."""
    tx, ctx, inbound, raw, now = mail.tx, mail.ctx, mail.inbound, mail.raw, mail.now
    batch = mail.batch
    batch.settle(ticket.id)
    row = dict(
        ticket_id=ticket.id, direction="in", kind=kind, message_id=inbound.message_id,
        in_reply_to=inbound.in_reply_to, references=list(inbound.references),
        from_address=inbound.sender.address[:320], from_name=inbound.sender.name[:200],
        to=[a.address for a in inbound.to], cc=[a.address for a in inbound.cc],
        subject=inbound.subject, date=inbound.date, text=text, body=inbound.text,
        thread_reason=reason, raw_id=raw.id, created_at=now)
    batch.note_recorded(inbound.message_id)  # a later message of the batch is a duplicate
    raw.ticket_id = ticket.id
    kept = [a for a in inbound.attachments if a not in oversized(ctx, inbound)]
    if not kept:
        batch.hold_incoming(row)  # written with the rest of the batch
        return
    # Its attachments need its id: written after what is waiting, to keep the order.
    batch.write()
    message = Message(**row)
    tx.add(message)
    for found in kept:
        digest = ctx.store.put(found.payload)
        message.attachments.append(Attachment(
            filename=safe_filename(found.filename), content_type=found.content_type[:255],
            size=found.size, sha256=digest, content_id=found.content_id[:998]))


def oversized(ctx: Context, inbound: Inbound) -> tuple[ParsedAttachment, ...]:
    """Attachments dropped because the message is over the size limit."""
    limits = ctx.config.limits
    if inbound.size <= limits.max_message_size:
        return ()
    return tuple(a for a in inbound.attachments if a.size > limits.max_attachment_size)
