"""Tickets as the CLI shows them: DESIGN.md's JSON objects and one-line summaries.

The text forms go to a terminal: every value from mail in them is printable()
(control characters escaped); the JSON forms are exact (json.dumps escapes them).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..db.models import Message, Outbox, Participant, RawMessage, Ticket
from ..mail.printable import printable
from ..states import OutboxStatus

SHOWN_LINES, SHOWN_WIDTH = 40, 2000  # of each message's text in ``tickets show``


def iso(value: datetime | None, zone: tzinfo | None = None) -> str | None:
    """ISO 8601 with the offset: on the desk's clock given its ``zone``
    (``2026-12-07T07:30:00-06:00``), else as stored (UTC, ``+00:00``)."""
    if value is None:
        return None
    return (value.astimezone(zone) if zone is not None else value).isoformat()


def shown(value: datetime, zone: tzinfo | None = None, format: str = "%Y-%m-%d %H:%M") -> str:
    """A time for a person at a terminal: on the desk's clock given its ``zone``."""
    return (value.astimezone(zone) if zone is not None else value).strftime(format)


def ticket_query(status: str | None = None):
    query = select(Ticket).options(
        selectinload(Ticket.requester), selectinload(Ticket.assignee),
        selectinload(Ticket.participants).selectinload(Participant.person),
        selectinload(Ticket.survey),
    ).order_by(Ticket.id)
    return query.where(Ticket.status == status) if status else query


# An outgoing mail's row in the outbox, by its message's id: (status, why it is held or
# failed). A mail the limits held is on the ticket like any other and must not read as
# sent.
Deliveries = dict[int, tuple[str, str | None]]


def ticket_json(ticket: Ticket, messages: list[Message] | None = None,
                deliveries: Deliveries | None = None, zone: tzinfo | None = None) -> dict:
    data = {
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "requester": ticket.requester.address,
        "assignee": ticket.assignee.address if ticket.assignee else None,
        "participants": [p.person.address for p in ticket.participants],
        "created_at": iso(ticket.created_at, zone),
        "updated_at": iso(ticket.updated_at, zone),
        "first_response_at": iso(ticket.first_response_at, zone),
        "resolved_at": iso(ticket.resolved_at, zone),
        "closed_at": iso(ticket.closed_at, zone),
        "linked_ticket": ticket.linked_ticket_id,
        "merged_into": ticket.merged_into_id,  # merged (tickets merge, #merge): the survivor
        "survey": survey_json(ticket.survey, zone),
    }
    if messages is not None:
        data["messages"] = [message_json(m, (deliveries or {}).get(m.id), zone)
                            for m in messages]
    return data


def survey_json(survey, zone: tzinfo | None = None) -> dict | None:
    if survey is None:
        return None
    return {"sent_at": iso(survey.sent_at, zone), "rating": survey.rating,
            "comment": survey.comment, "answered_at": iso(survey.answered_at, zone)}


def message_json(message: Message, delivery: tuple[str, str | None] | None = None,
                 zone: tzinfo | None = None) -> dict:
    status, reason = delivery or (None, None)
    if status not in (OutboxStatus.SUPPRESSED, OutboxStatus.FAILED, OutboxStatus.BOUNCED):
        reason = None  # a sent mail's last_error is an earlier attempt's, no longer true
    return {
        "id": message.id,
        "direction": message.direction,
        "kind": message.kind,
        "from": message.from_address,
        "to": list(message.to),
        "cc": list(message.cc),
        "subject": message.subject,
        "message_id": message.message_id,
        "date": iso(message.date or message.created_at, zone),
        "text": message.text,
        "thread_reason": message.thread_reason or None,
        "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size}
                        for a in message.attachments],
        # Outgoing mail only: queued, sent, failed, suppressed or bounced, and why.
        "outbox_status": status,
        "outbox_reason": reason,
    }


def ticket_messages(session: Session, ticket_id: int) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.ticket_id == ticket_id)
                                .options(selectinload(Message.attachments))
                                .order_by(Message.id)))


def ticket_deliveries(session: Session, ticket_id: int) -> Deliveries:
    # By the ticket's messages, not the outbox rows' ticket: a merged ticket's mail moved
    # to its survivor, and its outbox rows stayed (both Message-IDs are indexed).
    rows = session.execute(select(Outbox.message_row_id, Outbox.status, Outbox.last_error)
                           .join(Message, Message.message_id == Outbox.message_id)
                           .where(Message.ticket_id == ticket_id,
                                  Outbox.message_row_id.is_not(None)))
    return {row.message_row_id: (row.status, row.last_error) for row in rows}


def delivery_text(delivery: tuple[str, str | None] | None) -> str:
    """How ``tickets show`` marks an outgoing mail: held and failed mail with why."""
    if delivery is None:
        return ""
    status, reason = delivery
    if status in (OutboxStatus.SUPPRESSED, OutboxStatus.FAILED) and reason:
        return f"  [{status.upper()}: {printable(reason)}]"
    return f"  [{status}]"


def ticket_line(ticket: Ticket, zone: tzinfo | None = None) -> str:
    who = printable(ticket.requester.address)
    assignee = printable(ticket.assignee.address) if ticket.assignee else "-"
    return (f"#{ticket.id:<5} {ticket.status:<8} {ticket.priority:<7} "
            f"{shown(ticket.updated_at, zone)}  {who:<30} {assignee:<24} "
            f"{printable(ticket.subject)}")


def ticket_text(ticket: Ticket, messages: list[Message],
                deliveries: Deliveries | None = None, zone: tzinfo | None = None) -> str:
    lines = [
        f"Ticket #{ticket.id}: {printable(ticket.subject)}",
        *([f"  merged into #{ticket.merged_into_id}: its messages and people are there"]
          if ticket.merged_into_id is not None else []),
        f"  status {ticket.status}, priority {ticket.priority}",
        f"  requester {printable(ticket.requester.address)}"
        + (f", assignee {printable(ticket.assignee.address)}" if ticket.assignee else ""),
    ]
    if ticket.participants:
        lines.append("  participants " + printable(
            ", ".join(p.person.address for p in ticket.participants)))
    lines.append(f"  created {shown(ticket.created_at, zone, '%Y-%m-%d %H:%M %Z')}, "
                 f"updated {shown(ticket.updated_at, zone, '%Y-%m-%d %H:%M %Z')}")
    for message in messages:
        arrow = "<-" if message.direction == "in" else "->"
        target = message.from_address if message.direction == "in" else ", ".join(message.to)
        lines.append("")
        lines.append(f"  [{message.id}] {arrow} {message.kind} {printable(target)} "
                     f"{shown(message.date or message.created_at, zone)}"
                     f"{delivery_text((deliveries or {}).get(message.id))}")
        lines.append(f"      Subject: {printable(message.subject or '')}")
        for text_line in (message.text or "").strip().splitlines()[:SHOWN_LINES]:
            if len(text_line) > SHOWN_WIDTH:
                text_line = text_line[:SHOWN_WIDTH] + "..."
            lines.append(f"      {printable(text_line, lines=True)}")
        for a in message.attachments:
            lines.append(f"      + {printable(a.filename)} ({printable(a.content_type)}, "
                         f"{a.size} bytes)")
    return "\n".join(lines)


def failed_line(row: RawMessage, zone: tzinfo | None = None) -> str:
    return (f"{row.id:<6} {shown(row.received_at, zone)}  {printable(row.message_id)}  "
            f"{printable(row.error or '')}")


def failed_json(row: RawMessage, zone: tzinfo | None = None) -> dict:
    return {"id": row.id, "source": row.source, "uid": row.uid, "message_id": row.message_id,
            "size": row.size, "received_at": iso(row.received_at, zone), "error": row.error}
