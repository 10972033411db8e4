"""Every statement the sender runs against the outbox, in one place: which rows are
due, their contents, the "sent" marks, and what became of a mail that was refused.

The statements are built once: the sender runs them for every mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update

from ..db.models import Outbox, TicketEvent
from ..db.session import WRITE, Database, transaction
from ..states import OutboxStatus
from .retry import RetryDecision, RetryPolicy, decide
from .transport import Failure

DUE_AT_ONCE = 500  # rows chosen by one look at the outbox
_QUEUED = Outbox.status == OutboxStatus.QUEUED
_DUE = select(Outbox.id, Outbox.to_address).where(
    _QUEUED, Outbox.next_attempt_at <= bindparam("now")).order_by(Outbox.id).limit(DUE_AT_ONCE)
_NEXT_DUE = select(Outbox.next_attempt_at).where(_QUEUED) \
    .order_by(Outbox.next_attempt_at).limit(1)
_LOAD = select(Outbox.id, Outbox.ticket_id, Outbox.message_id, Outbox.kind, Outbox.mail_from,
               Outbox.recipients, Outbox.raw, Outbox.body_text, Outbox.body_html).where(
    Outbox.id.in_(bindparam("row_ids", expanding=True)), _QUEUED)
_SENT = update(Outbox).where(Outbox.id.in_(bindparam("row_ids", expanding=True))).values(
    status=OutboxStatus.SENT, sent_at=bindparam("sent_at"), attempts=Outbox.attempts + 1)
# A journal's note carried into the outbox: the row may have been marked already (a
# crash between the two commits), and then it is left as it is.
_CARRIED = update(Outbox).where(Outbox.id == bindparam("row_id"), _QUEUED).values(
    status=OutboxStatus.SENT, sent_at=bindparam("sent_at"), attempts=Outbox.attempts + 1)


@dataclass(frozen=True)
class Mail:
    """Who an outbox row is about, for the log."""

    row_id: int
    ticket_id: int | None
    message_id: str
    kind: str


def due(db: Database, now: datetime) -> list[tuple[int, str]]:
    """Queued rows whose time has come, oldest first: (id, first recipient)."""
    with db.sessions() as session:
        return [(row_id, to) for row_id, to in session.execute(_DUE, {"now": now})]


def next_due(db: Database) -> datetime | None:
    with db.sessions() as session:
        return session.scalar(_NEXT_DUE)


def load(connection, row_ids: list[int]) -> dict[int, object]:
    """Those of the rows that are still queued, with one statement: a statement per
    mail costs a round trip per mail."""
    with connection.execution_options(**{WRITE: False}).begin():
        return {row.id: row for row in connection.execute(_LOAD, {"row_ids": row_ids})}


def mark_sent(connection, row_ids: list[int], sent_at: datetime) -> None:
    """In the caller's transaction."""
    connection.execute(_SENT, {"row_ids": row_ids, "sent_at": sent_at})


def carry_notes(connection, notes: list[tuple[int, datetime]]) -> None:
    """Mails a journal noted sent, into the outbox; in the caller's transaction."""
    connection.execute(_CARRIED, [{"row_id": row_id, "sent_at": at} for row_id, at in notes])


def record_refusal(db: Database, row_id: int, refused: Mapping[str, Failure],
                   policy: RetryPolicy, now: datetime) -> tuple[Mail, RetryDecision]:
    """Count the attempt, ask retry.py what now and write its answer: the row's new
    state, and on the ticket each refusal for good and a retry given up."""
    with transaction(db) as tx:
        row = tx.get(Outbox, row_id)
        decision = decide(row.attempts + 1, row.recipients, refused, policy, now)
        row.attempts = decision.attempts
        if decision.refused and row.ticket_id:
            tx.add(TicketEvent(ticket_id=row.ticket_id, at=now, actor="system",
                               action="mail_failed", detail=f"{row.kind}: {decision.refused}"))
        if decision.status is OutboxStatus.QUEUED:
            row.recipients, row.next_attempt_at = list(decision.recipients), decision.retry_at
            row.last_error = decision.reason
        elif decision.status is OutboxStatus.FAILED:
            row.status, row.last_error = decision.status, decision.reason
            if decision.gave_up and row.ticket_id:
                tx.add(TicketEvent(ticket_id=row.ticket_id, at=now, actor="system",
                                   action="mail_failed",
                                   detail=f"{row.kind}: gave up: {decision.reason}"))
        else:
            row.status, row.sent_at = decision.status, now
        return Mail(row.id, row.ticket_id, row.message_id, row.kind), decision
