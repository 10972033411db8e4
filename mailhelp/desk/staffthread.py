"""The thread a ticket's staff mail makes in each staff member's mail client.

Every mail the desk sends a staff member about one ticket (the new-ticket
notification, reply notifications, assignments, notes, copies, alerts) carries one
References chain of that member's own: the ticket's request first, then each earlier
staff mail of the ticket that went to that address, oldest first; In-Reply-To is the
latest of them. Each mail's References are the previous one's plus its Message-ID, so
mutt, Thunderbird, Apple Mail and Outlook all show the ticket as one thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..db.models import Message, Ticket
from .batch import Batch

# The kinds of outgoing mail that go to staff (the templates vary: notification,
# assignment, note, unverified, suppressed, escalation...).
STAFF_KINDS = ("notification",)
REQUEST = "request"
# Staff mail of one ticket read to find its threads, the latest first: a ticket with
# more (thousands of notifications) threads under its request and its latest ones.
READ_AT_MOST = 500
KEPT = 20  # Message-IDs in References: the request and the latest 19 (RFC 5322 3.6.4)

_messages = Message.__table__
_STAFF_MAIL = select(_messages.c.message_id, _messages.c.to, _messages.c.kind).where(
    _messages.c.ticket_id == bindparam("ticket_id"),
    _messages.c.kind.in_((*STAFF_KINDS, REQUEST)),
).order_by(_messages.c.id.desc()).limit(READ_AT_MOST)
_FIRST_REQUEST = select(_messages.c.message_id).where(
    _messages.c.ticket_id == bindparam("ticket_id"), _messages.c.kind == REQUEST,
).order_by(_messages.c.id).limit(1)

Thread = tuple[str, tuple[str, ...]]  # (In-Reply-To, References)


def staff_threads(tx: Session, ticket: Ticket, addresses: Sequence[str],
                  new_ticket_request: str = "") -> dict[str, Thread]:
    """Each address's (In-Reply-To, References) for the next staff mail of ``ticket``.

    ``new_ticket_request``: the Message-ID of the request of a ticket made in this
    transaction; its staff mail so far is all held by the batch, and the database is not
    asked (the new-ticket notification costs no statement more)."""
    sent = _held_staff_mail(tx, ticket.id)
    root = new_ticket_request
    if not new_ticket_request:
        rows = tx.connection().execute(_STAFF_MAIL, {"ticket_id": ticket.id}).all()
        rows.reverse()
        requests = [row.message_id for row in rows if row.kind == REQUEST]
        root = requests[0] if requests else _first_request(tx, ticket.id)
        sent = [(row.message_id, row.to or ()) for row in rows if row.kind != REQUEST] + sent
    return {address: _chain(root, [mid for mid, to in sent if address in to])
            for address in addresses}


def staff_thread(tx: Session, ticket: Ticket, address: str) -> Thread:
    return staff_threads(tx, ticket, (address,))[address]


def _chain(root: str, theirs: list[str]) -> Thread:
    ids = [i for i in (root, *theirs) if i]
    if not ids:
        return "", ()
    references = ids if len(ids) <= KEPT else [ids[0], *ids[-(KEPT - 1):]]
    return ids[-1], tuple(references)


def _held_staff_mail(tx: Session, ticket_id: int) -> list[tuple[str, Sequence[str]]]:
    """The ticket's staff mail queued in this transaction and not written yet."""
    batch = Batch.current(tx)
    if batch is None:
        return []
    return [(message["message_id"], message["to"]) for message, _ in batch.waiting.mail
            if message["ticket_id"] == ticket_id and message["kind"] in STAFF_KINDS]


def _first_request(tx: Session, ticket_id: int) -> str:
    """The request of a ticket with more staff mail than READ_AT_MOST, or made in this
    transaction (held by the batch, or added to the session with its attachments)."""
    batch = Batch.current(tx)
    for row in batch.waiting.incoming if batch is not None else ():
        if row["ticket_id"] == ticket_id and row["kind"] == REQUEST:
            return row["message_id"]
    for row in tx.new:
        if isinstance(row, Message) and row.ticket_id == ticket_id and row.kind == REQUEST:
            return row.message_id
    return tx.connection().execute(_FIRST_REQUEST, {"ticket_id": ticket_id}).scalar() or ""
