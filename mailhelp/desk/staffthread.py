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
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
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
_MEMO = "staffthread"  # Batch.memo's key

_messages = Message.__table__
_ranked = select(
    _messages.c.ticket_id, _messages.c.message_id, _messages.c.to, _messages.c.kind,
    func.row_number().over(partition_by=_messages.c.ticket_id,
                           order_by=_messages.c.id.desc()).label("latest"),
).where(_messages.c.ticket_id.in_(bindparam("ticket_ids", expanding=True)),
        _messages.c.kind.in_((*STAFF_KINDS, REQUEST))).subquery()
# The request and the latest READ_AT_MOST staff mails of each ticket, oldest first.
_STAFF_MAIL = select(_ranked.c.ticket_id, _ranked.c.message_id, _ranked.c.to,
                     _ranked.c.kind).where(_ranked.c.latest <= READ_AT_MOST).order_by(
    _ranked.c.ticket_id, _ranked.c.latest.desc())
_FIRST_REQUEST = select(_messages.c.message_id).where(
    _messages.c.ticket_id == bindparam("ticket_id"), _messages.c.kind == REQUEST,
).order_by(_messages.c.id).limit(1)

Thread = tuple[str, tuple[str, ...]]  # (In-Reply-To, References)


@dataclass
class _Read:
    """A ticket's staff mail as the database had it when the batch read it; what the
    batch wrote after that is ``Batch.written_mail[written:]``."""

    root: str
    sent: list[tuple[str, Sequence[str]]]
    written: int


def staff_threads(tx: Session, ticket: Ticket, addresses: Sequence[str],
                  new_ticket_request: str = "") -> dict[str, Thread]:
    """Each address's (In-Reply-To, References) for the next staff mail of ``ticket``.

    The staff mail of the tickets a batch's messages answer is read with one query a
    batch (Batch.memo), then followed by the mail the batch writes and holds.
    ``new_ticket_request``: the Message-ID of the request of a ticket made in this
    transaction: all its mail is the batch's, and the database is not asked."""
    batch = Batch.of(tx)
    if new_ticket_request:
        root, sent, written = new_ticket_request, [], 0
    else:
        read = _read(tx, batch, ticket.id)
        if not read.root:
            read.root = _first_request(tx, batch, ticket.id)
        root, sent, written = read.root, list(read.sent), read.written
    sent += [(m["message_id"], m["to"]) for m in batch.written_mail[written:]
             if m["ticket_id"] == ticket.id and m["kind"] in STAFF_KINDS]
    sent += [(m["message_id"], m["to"]) for m, _ in batch.waiting.mail
             if m["ticket_id"] == ticket.id and m["kind"] in STAFF_KINDS]
    return {address: _chain(root, [mid for mid, to in sent if address in to])
            for address in addresses}


def staff_thread(tx: Session, ticket: Ticket, address: str) -> Thread:
    return staff_threads(tx, ticket, (address,))[address]


def _chain(root: str, theirs: list[str]) -> Thread:
    ids = list(dict.fromkeys(i for i in (root, *theirs) if i))
    if not ids:
        return "", ()
    references = ids if len(ids) <= KEPT else [ids[0], *ids[-(KEPT - 1):]]
    return ids[-1], tuple(references)


def _read(tx: Session, batch: Batch, ticket_id: int) -> _Read:
    """The ticket's staff mail read for the batch: with it, that of every ticket the
    batch's look-ahead found (the tickets its messages answer), in the same query."""
    memo = batch.memo.setdefault(_MEMO, {})
    if ticket_id not in memo:
        wanted = {ticket_id}
        if batch.threads is not None:
            wanted.update(t.id for t in batch.threads.tickets)
        wanted -= memo.keys()
        written = len(batch.written_mail)
        for wanted_id in wanted:
            memo[wanted_id] = _Read("", [], written)
        rows = tx.connection().execute(_STAFF_MAIL, {"ticket_ids": sorted(wanted)})
        for row in rows:
            read = memo[row.ticket_id]
            if row.kind == REQUEST:
                read.root = read.root or row.message_id
            else:
                read.sent.append((row.message_id, row.to or ()))
    return memo[ticket_id]


def _first_request(tx: Session, batch: Batch, ticket_id: int) -> str:
    """The request of a ticket with more staff mail than READ_AT_MOST, or made in this
    transaction (held by the batch, or added to the session with its attachments)."""
    for row in batch.waiting.incoming:
        if row["ticket_id"] == ticket_id and row["kind"] == REQUEST:
            return row["message_id"]
    for row in tx.new:
        if isinstance(row, Message) and row.ticket_id == ticket_id and row.kind == REQUEST:
            return row.message_id
    return tx.connection().execute(_FIRST_REQUEST, {"ticket_id": ticket_id}).scalar() or ""
