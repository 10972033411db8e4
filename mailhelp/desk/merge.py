"""Merging one ticket into another: ``mailhelp tickets merge A B`` and ``#merge N`` by mail.

The merged ticket (B) hands everything that makes a conversation to the survivor (A):
its messages (their attachments hang off them), its requester and participants (as
participants of A), its assignee where A has none. What stays on B is its history:
its events, its survey, its outbox rows and the raw messages it was made from. B is
closed and names A (``tickets.merged_into_id``), so that mail threaded on B by its tag
or plus address finds A (facts.py follows the name; mail threaded by a Message-ID finds
A by itself, the message having moved). B's requester is told, once, where their
request went. What comes later for B's own mail (a bounce of it, an answer to its
survey) is recorded on A too (``survivor_of``), where staff look; the survey row, the
rating of B's fix, stays B's.

Deciding comes apart from doing: ``refusal`` and ``survivor_status`` are pure.
"""

from __future__ import annotations

import getpass
import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Message, Ticket
from ..delivery.outbox import AUTO_GENERATED, Draft, enqueue, subject_tag
from ..errors import MailhelpError
from ..states import TicketStatus
from . import notices, schedule
from .batch import Batch
from .threads import follow_merges
from .tickets import add_participant, event, set_status

log = logging.getLogger(__name__)

TEMPLATE = "merged"  # the notice to the merged ticket's requester (templates/merged.*)
WAITING_ON_STAFF = frozenset({TicketStatus.NEW, TicketStatus.OPEN})


class MergeError(MailhelpError):
    """A merge that cannot be done: the same ticket twice, an unknown ticket, one
    merged already, or a held request. Nothing was changed."""


def refusal(survivor_id: int, merged_id: int, survivor_merged_into: int | None | bool,
            merged_merged_into: int | None | bool) -> str:
    """Why merging ``merged_id`` into ``survivor_id`` cannot be done, or ''. A ticket's
    ``*_merged_into`` is False where it does not exist, else its merged_into_id.

    A merge into a merged ticket is refused rather than sent on to its survivor: the
    person asking learns where that ticket went and asks again knowingly. With both
    rules, no chain of merges is ever longer than one hop, and no loop can be made."""
    if survivor_id == merged_id:
        return f"cannot merge ticket #{merged_id} into itself"
    for number, merged_into in ((merged_id, merged_merged_into),
                                (survivor_id, survivor_merged_into)):
        if merged_into is False:
            return f"no ticket #{number}"
    if merged_merged_into is not None:
        return f"ticket #{merged_id} was merged into #{merged_merged_into} already"
    if survivor_merged_into is not None:
        return (f"ticket #{survivor_id} was merged into #{survivor_merged_into}; "
                f"merge into #{survivor_merged_into} instead")
    return ""


def survivor_status(survivor: str, merged: str) -> TicketStatus | None:
    """The survivor's new status, or None to keep its own: a request still waiting on
    staff (B new or open) reopens a survivor that waits on the requester or is done."""
    if TicketStatus(merged) in WAITING_ON_STAFF \
            and TicketStatus(survivor) not in WAITING_ON_STAFF:
        return TicketStatus.OPEN
    return None


def survivor_of(tx: Session, ticket_id: int) -> int:
    """Where news of ``ticket_id`` is recorded: the ticket it was merged into, else
    itself (threads.follow_merges). No query for a ticket the session holds already."""
    def merged_into(number: int) -> int | None:
        found = tx.get(Ticket, number)
        return found.merged_into_id if found is not None else None

    return follow_merges(ticket_id, merged_into)


def merge(tx: Session, config: Config, survivor_id: int, merged_id: int, actor: str,
          now: datetime) -> Ticket:
    """Merge ticket ``merged_id`` into ``survivor_id`` in ``tx``; returns the survivor.
    Raises MergeError (with nothing changed) where ``refusal`` says no."""
    batch = Batch.of(tx)
    batch.write_all()  # the messages the transaction holds back move too
    # Both rows locked, in id order (PostgreSQL; SQLite's write lock is the
    # transaction's): a merge the other way round at the same time waits, then reads
    # this one's result and is refused.
    rows = {row.id: row.merged_into_id for row in tx.execute(
        select(Ticket.id, Ticket.merged_into_id)
        .where(Ticket.id.in_((survivor_id, merged_id))).order_by(Ticket.id).with_for_update())}
    problem = refusal(survivor_id, merged_id, rows.get(survivor_id, False),
                      rows.get(merged_id, False))
    if problem:
        raise MergeError(problem)
    survivor, merged = tx.get(Ticket, survivor_id), tx.get(Ticket, merged_id)
    if merged.held:
        # Its sender is unproven (a forged district address, maybe): as a participant of
        # the survivor they would be sent its conversation.
        raise MergeError(f"ticket #{merged_id} is held (unverified sender): "
                         f"#release it first, or close it")
    thread = notices.conversation(tx, merged)  # B's requester's thread, for the notice
    moved = tx.execute(update(Message).where(Message.ticket_id == merged.id)
                       .values(ticket_id=survivor.id)).rowcount
    tx.expire(survivor, ["messages"])
    tx.expire(merged, ["messages"])
    batch.memo.clear()  # what other modules read of the two tickets' mail is stale now
    for person in (merged.requester, *(p.person for p in merged.participants)):
        if not config.staff.is_staff(person.address):  # staff see every ticket already
            add_participant(tx, survivor, person, now, actor)
    if survivor.assignee_id is None and merged.assignee_id is not None:
        survivor.assignee_id = merged.assignee_id
        event(tx, survivor, now, actor, "assigned", merged.assignee.address)
    merged.merged_into_id = survivor.id
    merged_was = merged.status
    event(tx, merged, now, actor, "merged", f"merged into #{survivor.id}")
    event(tx, survivor, now, actor, "merged", f"#{merged.id} merged in")
    # Closing B reschedules it, and a merged ticket wants no timed work (schedule.py):
    # its reminders, closing and survey are cancelled.
    if merged.status == TicketStatus.CLOSED:
        schedule.reschedule(tx, config, merged, now)
    else:
        set_status(tx, config, merged, TicketStatus.CLOSED, actor, now)
    status = survivor_status(survivor.status, merged_was)
    if status is not None:
        set_status(tx, config, survivor, status, actor, now)
    else:
        schedule.reschedule(tx, config, survivor, now)
    merged.updated_at = survivor.updated_at = now
    _notice(tx, config, survivor, merged, thread, now)
    log.info("ticket=%s action=merged merged=%s actor=%s messages=%s", survivor.id,
             merged.id, actor, moved)
    return survivor


def _notice(tx: Session, config: Config, survivor: Ticket, merged: Ticket,
            thread: tuple[str, tuple[str, ...]], now: datetime) -> None:
    """One mail to B's requester: their request goes on as #A. In their thread of B (a
    reply to it reaches A by its Message-ID), automatic mail under the usual limits. A
    held ticket sends no automatic mail: none either way."""
    requester = notices.addressed(merged.requester)
    if merged.held or survivor.held or not requester.deliverable:
        return
    in_reply_to, references = thread
    enqueue(tx, config, survivor, Draft(
        kind="status", template=TEMPLATE, to=(requester,),
        variables=notices.variables(
            config, survivor, recipient=notices.greeted(requester),
            merged_ticket={"id": merged.id,
                           "subject": notices.without_links(" ".join(merged.subject.split()))},
            merged_tag=subject_tag(config, merged.id)),
        in_reply_to=in_reply_to, references=references, auto_submitted=AUTO_GENERATED,
    ), now)


def cli_actor() -> str:
    """Who did it, for the ticket's history: the command line's user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name and no passwd entry (a container)
        return "cli"


def cmd_merge(config: Config, args) -> int:
    """``mailhelp tickets merge A B``: B's messages, people and threading move into A."""
    from ..app import App, flush_outbox
    from ..db.session import transaction

    app = App.create(config)
    with transaction(app.db) as tx:
        merge(tx, config, args.survivor, args.merged, cli_actor(), app.clock())
    print(f"ticket #{args.merged} merged into #{args.survivor}")
    flush_outbox(app)  # the notice to B's requester; the daemon retries what fails
    return 0
