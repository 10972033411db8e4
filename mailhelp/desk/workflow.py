"""Apply one incoming message to the help desk: the only place ticket state changes.

Everything runs inside the caller's transaction, which also holds the outbox
rows for the mail the change causes (notices.py); the caller commits once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from ..config import Config
from ..db.models import (
    Attachment,
    Message,
    Outbox,
    Participant,
    Suppression,
    Survey,
    Ticket,
)
from ..db.storage import AttachmentStore, safe_filename
from ..delivery.outbox import (
    forget_limits,
    note_new_ticket,
    pend_incoming,
    pending_message_ids,
    settle,
    write_all,
    write_pending,
)
from ..mail import classify as verdicts
from ..mail.parse import Address, Inbound
from ..mail.parse import Attachment as ParsedAttachment
from ..mail.quoting import new_text_of
from . import notices, outsiders, schedule, surveys
from .threads import find_ticket, is_help_address, thread_ids, ticket_subject
from .tickets import PEOPLE, add_participant, event, person, set_status, ticket_number

if TYPE_CHECKING:
    from ..mail import authenticity
    from . import commands

log = logging.getLogger(__name__)

CLOSED_STATES = ("resolved", "closed")
_THANKS = re.compile(r"\b(thanks?|thank you|thx|ty|cheers|danke|merci|gracias|grazie|"
                     r"tack|dank|perfect|great|awesome|works( now)?|fixed)\b", re.I)
_NOT_THANKS = re.compile(r"\?|\b(not|still|but|again|no longer|doesn'?t|isn'?t|won'?t|"
                         r"nicht|noch)\b", re.I)


# The lookups every message makes, built once and run as plain statements on the
# transaction's connection: they come before anything is added, so nothing need be
# flushed first, and the ORM's execution costs more than the query.
_messages = Message.__table__
_RECORDED = select(_messages.c.id).where(
    _messages.c.message_id == bindparam("message_id")).limit(1)
_THREADED = select(_messages.c.message_id, _messages.c.ticket_id, _messages.c.to,
                   _messages.c.cc).where(
    _messages.c.message_id.in_(bindparam("ids", expanding=True)))


# A reply's ticket with what its handling reads (who may join, who is told, whether it
# was surveyed), in one statement rather than four.
_TICKET_AND_PEOPLE = (joinedload(Ticket.requester), joinedload(Ticket.survey),
                      joinedload(Ticket.participants).joinedload(Participant.person))
RECORDED = "mailhelp_recorded"  # tx.info: {Message-ID: recorded?} for a batch
THREADS = "mailhelp_threads"  # tx.info: what the batch's replies answer (look_ahead)


@dataclass(frozen=True)
class _Threads:
    asked: frozenset[str]  # every Message-ID the batch's messages answer
    found: dict[str, tuple[int, frozenset[str]]]  # those recorded before the batch ->
    #                        their ticket and whom that message was sent to
    batch: frozenset[str]  # the batch's own Message-IDs: recorded, if at all, meanwhile
    tickets: list[Ticket]  # the tickets found, loaded as a reply needs them (and held:
    #                        the session keeps only weak references)


def look_ahead(tx: Session, inbounds: list[Inbound]) -> list[int]:
    """Asked once for a batch, instead of message by message: which of its Message-IDs
    are recorded already, which tickets the messages it answers are on (and those
    tickets, with their people). Returns those tickets' ids."""
    own = [inbound.message_id for inbound in inbounds]
    answered = {i for inbound in inbounds for i in thread_ids(inbound)}
    rows = tx.connection().execute(_THREADED, {"ids": sorted({*own, *answered})}).all()
    recorded = {row.message_id for row in rows}
    tx.info[RECORDED] = {message_id: message_id in recorded for message_id in own}
    found = {row.message_id: _threaded(row) for row in rows if row.message_id in answered}
    tickets = list(tx.scalars(select(Ticket).where(Ticket.id.in_({t for t, _ in found.values()}))
                              .options(*_TICKET_AND_PEOPLE)).unique()) if found else []
    tx.info[THREADS] = _Threads(frozenset(answered), found, frozenset(own), tickets)
    return [ticket.id for ticket in tickets]


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


def apply(tx: Session, ctx: Context, inbound: Inbound, raw: Stored, now: datetime) -> Outcome:
    """Record ``inbound`` on a ticket (a new one or the one it threads to)."""
    config = ctx.config
    recorded = tx.info.get(RECORDED, {}).get(inbound.message_id)
    if recorded is None:
        recorded = tx.connection().execute(
            _RECORDED, {"message_id": inbound.message_id}).first() is not None
    if recorded:
        return Outcome("duplicate", detail="Message-ID already recorded")
    verdict = verdicts.classify(inbound, config.helpdesk.address, config.spam.score_header,
                                config.spam.score_threshold)
    if verdict.kind == verdicts.SPAM:
        return Outcome("spam", detail=verdict.reason)
    if verdict.kind == verdicts.LOOP:
        return Outcome("ignored", detail=verdict.reason)
    match = find_ticket(inbound, lambda ids: _ticket_of_ids(tx, ids),
                        config.helpdesk.subject_tag, config.helpdesk.address)
    ticket = tx.get(Ticket, match.ticket_id, options=_TICKET_AND_PEOPLE) if match else None
    if ticket is not None and not _may_join(ctx, ticket, inbound.sender) and (
            match.guessable or inbound.sender.address not in match.recipients):
        # Someone outside the ticket used its number, or answers a message they were not
        # sent (a Message-ID can be learnt): they get a ticket of their own and learn
        # nothing of the one they named.
        log.warning("ticket=%s message=%s action=refuse_join sender=%s reason=%s", ticket.id,
                    inbound.message_id, inbound.sender.address, match.reason)
        ticket = None
    if verdict.kind == verdicts.BOUNCE:
        return _bounce(tx, ctx, inbound, raw, verdict.reason, now)
    if not verdict.automatic:
        token = surveys.token_in(inbound)
        record = tx.scalar(select(Survey).where(Survey.token == token)) if token else None
        if record is None and ticket is not None and ticket.survey is not None \
                and _answers_survey(tx, ticket, inbound):
            record = ticket.survey
        if record is not None:
            answer = surveys.read_answer(new_text_of(inbound, signature=False))
            if token or answer is not None:
                return _survey_answer(tx, ctx, record, inbound, raw, answer, now)
    if verdict.automatic:
        if ticket is None:
            return Outcome("ignored", detail=verdict.reason)
        kind = "bounce" if verdict.kind == verdicts.BOUNCE else "note"
        _record(tx, ctx, ticket, inbound, raw, kind, match.reason, inbound.text, now)
        event(tx, ticket, now, inbound.sender.address, f"received_{verdict.kind}", verdict.reason)
        return Outcome("recorded", ticket.id, verdict.reason)
    proof = _proof(ctx, inbound, raw)
    if ticket is None and outsiders.is_outsider(config, inbound.sender.address):
        return Outcome("outsider", detail=outsiders.turn_away(tx, config, inbound, now))
    if ticket is None:
        return _new_ticket(tx, ctx, inbound, raw, now,
                           held=proof.reason if proof and proof.status == "failed" else None)
    if proof is not None and (proof.status == "failed" or (
            config.staff.is_staff(inbound.sender.address) and proof.status == "unknown"
            and config.authentication.unauthenticated_staff == "note")):
        return _unverified(tx, ctx, ticket, inbound, raw, match.reason, proof, now)
    if config.staff.is_staff(inbound.sender.address):
        return _staff_reply(tx, ctx, ticket, inbound, raw, match.reason, now)
    if ticket.status == "closed" and ticket.closed_at is not None \
            and now - ticket.closed_at > config.lifecycle.auto_close_after:
        # Long closed: a new problem deserves a new ticket; it names the old one.
        return _new_ticket(tx, ctx, inbound, raw, now, linked=ticket)
    return _requester_reply(tx, ctx, ticket, inbound, raw, match.reason, now)


def _proof(ctx: Context, inbound: Inbound, raw: Stored) -> authenticity.Verdict | None:
    """How the receiving server vouches for mail from a staff member or the district's
    own domains (None for anyone else: their mail is judged by what it says)."""
    config, sender = ctx.config, inbound.sender.address
    if not (config.staff.is_staff(sender) or config.own_domain(sender)):
        return None
    from ..mail import authenticity  # only the district's own mail needs it (and its parser)

    return authenticity.check(raw.raw, sender, config.authentication.trusted_authserv_ids)


def _new_ticket(tx: Session, ctx: Context, inbound: Inbound, raw: Stored, now: datetime,
                linked: Ticket | None = None, held: str | None = None) -> Outcome:
    config = ctx.config
    requester = person(tx, inbound.sender, now, flush=False)
    subject = ticket_subject(inbound.subject, config.helpdesk.subject_tag)
    # An empty participant list, not a lazy one: nothing to load for a new ticket.
    # Numbered now, written at the batch's end with the others (or when a query needs it).
    ticket = Ticket(id=ticket_number(tx), subject=subject, status="new", priority="normal",
                    requester=requester, participants=[], created_at=now, updated_at=now,
                    linked_ticket_id=linked.id if linked else None, held=held)
    tx.add(ticket)
    note_new_ticket(tx, ticket)
    schedule.note_new_ticket(tx, ticket)
    # A held request's CC line is the forger's word too: nobody joins by it.
    for colleague in inbound.cc if held is None else ():
        if is_help_address(colleague.address, config.helpdesk.address):
            continue
        if config.staff.is_staff(colleague.address):
            continue
        add_participant(tx, ticket, person(tx, colleague, now), now)
    _record(tx, ctx, ticket, inbound, raw, "request", "", inbound.text, now)
    event(tx, ticket, now, requester.address, "created",
           f"continues #{linked.id}" if linked else "")
    dropped = oversized(ctx, inbound)
    if dropped:
        event(tx, ticket, now, "system", "attachments_dropped",
               ", ".join(f"{a.filename} ({a.size} bytes)" for a in dropped))
    if held is None:
        notices.ack(tx, config, ticket, inbound, now, dropped)
    else:
        # Mail in a district address that the receiving server says is not from there:
        # nothing goes back to that address (the desk is no reflector) until staff
        # release it (#release).
        event(tx, ticket, now, "system", "held", held)
        log.warning("ticket=%s message=%s action=held sender=%s reason=%s", ticket.id,
                    inbound.message_id, requester.address, held)
    notices.staff_notification(tx, config, ticket, inbound, inbound.text, "new",
                               config.staff.addresses, now, dropped=dropped)
    log.info("ticket=%s message=%s action=new_ticket requester=%s%s", ticket.id,
             inbound.message_id, requester.address, f" linked={linked.id}" if linked else "")
    return Outcome("new_ticket", ticket.id)


def _requester_reply(tx: Session, ctx: Context, ticket: Ticket, inbound: Inbound,
                     raw: Stored, reason: str, now: datetime) -> Outcome:
    config = ctx.config
    text = new_text_of(inbound)
    _record(tx, ctx, ticket, inbound, raw, "reply", reason, text, now)
    ticket.updated_at = now
    if ticket.status in CLOSED_STATES and is_thanks(new_text_of(inbound, signature=False)):
        # "Thanks, works now!" on a resolved ticket is no reason to reopen it.
        event(tx, ticket, now, inbound.sender.address, "thanks", "")
        log.info("ticket=%s message=%s action=thanks thread=%s", ticket.id,
                 inbound.message_id, reason)
        return Outcome("reply", ticket.id, "thanks")
    if ticket.status != "open":
        set_status(tx, ctx.config, ticket, "open", inbound.sender.address, now)
    recipients = [ticket.assignee.address] if ticket.assignee else list(config.staff.addresses)
    dropped = oversized(ctx, inbound)
    notices.staff_notification(tx, config, ticket, inbound, text, "reply", recipients, now,
                               attachments=[a for a in inbound.attachments if a not in dropped],
                               dropped=dropped)
    log.info("ticket=%s message=%s action=reply thread=%s", ticket.id, inbound.message_id,
             reason)
    return Outcome("reply", ticket.id, reason)


def _staff_reply(tx: Session, ctx: Context, ticket: Ticket, inbound: Inbound, raw: Stored,
                 reason: str, now: datetime) -> Outcome:
    from . import commands

    config = ctx.config
    parsed = commands.parse(new_text_of(inbound))
    actor = inbound.sender.address
    if parsed.error:
        return _command_failed(tx, ctx, ticket, inbound, raw, reason, parsed.error, now)
    effects = commands.Effects()
    write_pending(tx)  # what a savepoint undoes must not include mail from before it
    savepoint = tx.begin_nested()
    env = _command_env(tx, ctx, ticket, actor, now)
    for command in parsed.commands:
        problem = commands.run(command, env, effects)
        if problem:
            # All or nothing: what the earlier lines changed is undone.
            savepoint.rollback()  # what it left waiting to be written goes too (outbox.py)
            tx.info.pop(PEOPLE, None)  # it may name people the savepoint made
            tx.expire(ticket)
            return _command_failed(tx, ctx, ticket, inbound, raw, reason, problem, now)
    savepoint.commit()
    internal = parsed.internal
    kind = "note" if internal else "staff_reply"
    _record(tx, ctx, ticket, inbound, raw, kind, reason, parsed.text, now)
    relayed = not internal and (parsed.text.strip() or inbound.attachments)
    if relayed:
        notices.relay(tx, config, ticket, inbound, parsed.text, now,
                      [a for a in inbound.attachments if a not in oversized(ctx, inbound)])
        if ticket.first_response_at is None:
            ticket.first_response_at = now
        if ticket.assignee_id is None:
            ticket.assignee_id = person(tx, inbound.sender, now).id
            event(tx, ticket, now, actor, "assigned", actor)
        if not effects.status_set:
            set_status(tx, ctx.config, ticket, "pending", actor, now)
    if effects.released:
        event(tx, ticket, now, actor, "released", "")
        notices.released_ack(tx, config, ticket, now)
    if effects.resolved:
        notices.status_notice(tx, config, ticket, "resolved", now)
    ticket.updated_at = now
    log.info("ticket=%s message=%s action=%s thread=%s relayed=%s commands=%s", ticket.id,
             inbound.message_id, kind, reason, "yes" if relayed else "no",
             ",".join(c.name for c in parsed.commands) or "-")
    return Outcome("staff_reply", ticket.id, reason)


def _answers_survey(tx: Session, ticket: Ticket, inbound: Inbound) -> bool:
    """Is this a reply to the ticket's survey mail (by its threading headers)?"""
    ids = [i for i in (inbound.in_reply_to, *inbound.references) if i]
    return bool(ids) and tx.scalar(select(Message.id).where(
        Message.ticket_id == ticket.id, Message.kind == "survey",
        Message.message_id.in_(ids)).limit(1)) is not None


def _survey_answer(tx: Session, ctx: Context, record: Survey, inbound: Inbound,
                   raw: Stored, answer: surveys.Answer | None, now: datetime) -> Outcome:
    """Record a rating; it never reopens the ticket and never creates one."""
    ticket = tx.get(Ticket, record.ticket_id)
    if inbound.sender.address != ticket.requester.address:
        # The token came from someone else's survey: not theirs to answer.
        log.warning("ticket=%s message=%s action=survey_refused sender=%s", ticket.id,
                    inbound.message_id, inbound.sender.address)
        return Outcome("ignored", detail="survey answer from someone other than the requester")
    comment = answer.comment if answer else new_text_of(inbound, signature=False).strip()
    _record(tx, ctx, ticket, inbound, raw, "survey_response", "survey", comment, now)
    if answer is not None:
        record.rating, record.comment = answer.rating, answer.comment
    elif comment:
        record.comment = comment
    record.answered_at, record.answered_via = now, "mail"
    event(tx, ticket, now, inbound.sender.address, "survey_answer",
          f"rating {record.rating}" if answer else "comment")
    if answer is not None:
        notices.survey_thanks(tx, ctx.config, ticket, inbound, record, now)
    log.info("ticket=%s message=%s action=survey_answer rating=%s", ticket.id,
             inbound.message_id, record.rating)
    return Outcome("recorded", ticket.id, f"survey answer {record.rating}")


def _unverified(tx: Session, ctx: Context, ticket: Ticket, inbound: Inbound,
                raw: Stored, reason: str, proof: authenticity.Verdict,
                now: datetime) -> Outcome:
    """A staff or district From: line the receiving server did not vouch for: kept as
    an internal note, not acted on (no relay, no command, no change of state)."""
    _record(tx, ctx, ticket, inbound, raw, "note", reason,
            f"[unverified sender: {proof.reason}]\n\n{new_text_of(inbound)}", now)
    who = "staff" if ctx.config.staff.is_staff(inbound.sender.address) else "district"
    event(tx, ticket, now, inbound.sender.address, f"unverified_{who}_mail", proof.reason)
    notices.staff_alert(tx, ctx.config, ticket, inbound, proof.reason, now)
    log.warning("ticket=%s message=%s action=unverified_%s sender=%s reason=%s", ticket.id,
                inbound.message_id, who, inbound.sender.address, proof.reason)
    return Outcome("recorded", ticket.id, f"unverified {who} mail: {proof.reason}")


def _bounce(tx: Session, ctx: Context, inbound: Inbound, raw: Stored, reason: str,
            now: datetime) -> Outcome:
    """A bounce of mail we sent (by its signed return path or Message-ID): mark it, note
    it on its ticket, rest the failed addresses that mail went to. Anything else is
    dropped: a bounce's own word about who failed is believed for our mail only."""
    from ..mail import bounces, signing

    helpdesk = ctx.config.helpdesk
    delivered = (*inbound.headers.get("delivered-to", ()),
                 *inbound.headers.get("x-original-to", ()),
                 *(a.address for a in (*inbound.to, *inbound.cc)))
    report = bounces.analyse(raw.raw, signing.desk_key(tx), helpdesk.address, delivered)
    returned = list(tx.scalars(select(Outbox).where(Outbox.message_id.in_(report.returned_ids))
                               .order_by(Outbox.id))) if report.returned_ids else []
    if not returned:
        log.warning("message=%s action=bounce_dropped reason=not a bounce of our mail "
                    "(no signed return path or Message-ID)", inbound.message_id)
        return Outcome("ignored", detail=f"{reason}; not a bounce of our mail")
    sent_to = {r.lower() for row in returned for r in row.recipients}
    failed = [r for r in report.recipients if r in sent_to]
    for row in returned:
        row.status, row.last_error = "bounced", f"bounced: {', '.join(failed) or reason}"
    ticket_id = next((row.ticket_id for row in returned if row.ticket_id), None)
    if failed and report.permanent:
        until = now + ctx.config.limits.bounce_suppression
        why = f"bounce on #{ticket_id}" if ticket_id else "bounce"
        for address in failed:
            tx.add(Suppression(address=address, until=until, reason=why, created_at=now))
        forget_limits(tx)
    ticket = tx.get(Ticket, ticket_id) if ticket_id else None
    if ticket is None:
        # Mail of no ticket's (an outsider's answer, an alert): marked, and the address
        # rests; there is no ticket to note it on.
        log.warning("message=%s action=bounce recipients=%s returned=%s ticket=-",
                    inbound.message_id, ",".join(failed) or "-",
                    ",".join(str(r.id) for r in returned))
        return Outcome("ignored", detail=f"bounce of mail without a ticket: "
                                          f"{', '.join(failed) or reason}")
    _record(tx, ctx, ticket, inbound, raw, "bounce", "bounce", inbound.text, now)
    event(tx, ticket, now, "system", "bounced",
          f"{', '.join(failed) or 'unknown recipient'} ({', '.join(r.kind for r in returned)})")
    log.warning("ticket=%s message=%s action=bounce recipients=%s returned=%s", ticket.id,
                inbound.message_id, ",".join(failed) or "-",
                ",".join(str(r.id) for r in returned) or "-")
    return Outcome("recorded", ticket.id, f"bounce: {', '.join(failed) or reason}")


def _command_failed(tx: Session, ctx: Context, ticket: Ticket, inbound: Inbound,
                    raw: Stored, reason: str, error: str, now: datetime) -> Outcome:
    """Nothing is relayed or changed; the staff member is told which line was wrong."""
    from . import commands

    _record(tx, ctx, ticket, inbound, raw, "note", reason, inbound.text, now)
    event(tx, ticket, now, inbound.sender.address, "command_error", error)
    notices.command_error(tx, ctx.config, ticket, inbound, error, commands.usage(), now)
    log.warning("ticket=%s message=%s action=command_error error=%s", ticket.id,
                inbound.message_id, error)
    return Outcome("staff_reply", ticket.id, f"command error: {error}")


def _command_env(tx: Session, ctx: Context, ticket: Ticket, actor: str,
                 now: datetime) -> commands.Env:
    from . import commands

    def add(address: str) -> None:
        add_participant(tx, ticket, person(tx, Address("", address), now), now, actor)

    def remove(address: str) -> bool:
        for participant in ticket.participants:
            if participant.person.address == address:
                ticket.participants.remove(participant)
                event(tx, ticket, now, actor, "participant_removed", address)
                return True
        return False

    def assign(address: str) -> None:
        ticket.assignee_id = person(tx, Address("", address), now).id
        event(tx, ticket, now, actor, "assigned", address)

    return commands.Env(
        tx=tx, ticket=ticket, actor=actor, now=now, is_staff=ctx.config.staff.is_staff,
        set_status=lambda status: set_status(tx, ctx.config, ticket, status, actor, now),
        add_participant=add, remove_participant=remove, assign=assign)


def is_thanks(text: str) -> bool:
    """A reply that only says thank you: a few words, thanks in them, no complaint."""
    words = re.findall(r"\w+", text)
    return 0 < len(words) <= 12 and bool(_THANKS.search(text)) and not _NOT_THANKS.search(text)


def _record(tx: Session, ctx: Context, ticket: Ticket, inbound: Inbound, raw: Stored,
            kind: str, reason: str, text: str, now: datetime) -> None:
    settle(tx, ticket.id)
    row = dict(
        ticket_id=ticket.id, direction="in", kind=kind, message_id=inbound.message_id,
        in_reply_to=inbound.in_reply_to, references=list(inbound.references),
        from_address=inbound.sender.address[:320], from_name=inbound.sender.name[:200],
        to=[a.address for a in inbound.to], cc=[a.address for a in inbound.cc],
        subject=inbound.subject, date=inbound.date, text=text, body=inbound.text,
        thread_reason=reason, raw_id=raw.id, created_at=now)
    if RECORDED in tx.info:
        tx.info[RECORDED][inbound.message_id] = True
    raw.ticket_id = ticket.id
    kept = [a for a in inbound.attachments if a not in oversized(ctx, inbound)]
    if not kept:
        pend_incoming(tx, row)  # written with the rest of the batch
        return
    # Its attachments need its id: written after what is waiting, to keep the order.
    write_pending(tx)
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


def _may_join(ctx: Context, ticket: Ticket, sender: Address) -> bool:
    if ctx.config.staff.is_staff(sender.address):
        return True
    if ticket.requester.address == sender.address:
        return True
    return any(p.person.address == sender.address for p in ticket.participants)


def _threaded(row) -> tuple[int, frozenset[str]]:
    return row.ticket_id, frozenset(a.lower() for a in (*(row.to or ()), *(row.cc or ())))


def _ticket_of_ids(tx: Session, ids: Iterable[str]) -> tuple[int, frozenset[str]] | None:
    ids = list(ids)
    ahead: _Threads | None = tx.info.get(THREADS)
    if ahead is not None and ahead.asked.issuperset(ids) and ahead.batch.isdisjoint(ids):
        # Answered by the batch's look-ahead: none of them can have been recorded since
        # (the batch's own messages are the only ones this transaction records that
        # anyone could have answered).
        return next((ahead.found[i] for i in ids if i in ahead.found), None)
    if not pending_message_ids(tx).isdisjoint(ids):
        write_all(tx)  # it names a message of this batch, not written yet
    by_id = {row.message_id: _threaded(row)
             for row in tx.connection().execute(_THREADED, {"ids": ids})}
    for message_id in ids:
        if message_id in by_id:
            return by_id[message_id]
    return None
