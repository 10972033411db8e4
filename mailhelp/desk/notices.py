"""The mail each ticket change causes, as drafts enqueued in the caller's transaction.

workflow.py decides *that* a mail goes out; this module knows *what* it looks like:
who receives it, which template, how it threads into the reader's conversation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Config
from ..db.models import Message, Survey, Ticket
from ..delivery.outbox import (
    AUTO_GENERATED,
    AUTO_REPLIED,
    Draft,
    enqueue,
    subject_tag,
    write_pending,
)
from ..durations import format_duration
from ..mail.forwarded import opened_of, shown, staff_files
from ..mail.parse import Address, Attachment, Inbound
from . import survey_due, surveys
from .staffthread import staff_threads

log = logging.getLogger(__name__)

# What the requester and participants see of a ticket: their conversation.
PUBLIC_KINDS = ("request", "reply", "ack", "relay", "status", "reminder", "survey")


def public_recipients(ticket: Ticket) -> tuple[Address, ...]:
    people = [ticket.requester, *(p.person for p in ticket.participants)]
    found = (addressed(p) for p in people)
    return tuple(a for a in found if a.deliverable)


_NAME_WORD = re.compile(r"[^\W\d_][^\W\d_'.-]{0,23}")


def greeting_name(name: str | None) -> str:
    """What automatic mail calls a person: the first word of the display name they gave,
    if it is a plain word of letters and the name looks like a name (a few words).
    Never the whole name: anyone can put "Your mailbox is full, log in at https://..."
    there, and the help desk must not say it back from the district's address."""
    words = str(name or "").split()
    if len(words) > 1 and words[0].endswith(","):
        # "García, María": directories (Active Directory's displayName) put the family
        # name first; the first name is the word after the comma.
        words = words[1:]
    if not words or len(words) > 4 or not _NAME_WORD.fullmatch(words[0]):
        return ""
    return words[0]


_LINK = re.compile(r"(?i)\b(?:[a-z][a-z0-9+.-]{1,20}://|www\.)\S+")


def without_links(text: str) -> str:
    """A subject as automatic mail repeats it to anyone but staff: links become
    "[link]" (a forged request's subject would otherwise come back from the district's
    own address, DKIM-signed, carrying a phishing link)."""
    return _LINK.sub("[link]", text)


def addressed(person) -> Address:
    """A person as the To: line of automatic mail names them."""
    return Address(greeting_name(person.name), person.address)


def greeted(person: Address) -> dict:
    """``recipient`` in a template: whom this one mail is addressed to, to greet them by
    the name ``addressed`` allows (never the requester's name to a colleague)."""
    return {"name": person.name, "address": person.address}


def conversation(tx: Session, ticket: Ticket, kinds: Sequence[str] = PUBLIC_KINDS
                 ) -> tuple[str, tuple[str, ...]]:
    """(In-Reply-To, References) that put a new mail at the end of a conversation.

    References keep the first message and the latest ones, as RFC 5322 suggests
    for long threads, so every client finds the thread.
    """
    write_pending(tx)  # the mail of this change so far is part of the conversation
    ids = list(tx.scalars(select(Message.message_id)
                          .where(Message.ticket_id == ticket.id, Message.kind.in_(kinds))
                          .order_by(Message.id)))
    if not ids:
        return "", ()
    references = ids if len(ids) <= 20 else [ids[0], *ids[-19:]]
    return ids[-1], tuple(references)


def variables(config: Config, ticket: Ticket, for_staff: bool = False, **extra) -> dict:
    """What every template gets. Mail to staff names the requester as they wrote their
    name; mail to anyone else only as ``greeting_name`` allows."""
    base = {
        "helpdesk": {"name": config.helpdesk.name, "address": config.helpdesk.address,
                     "timezone": config.helpdesk.timezone},  # for the desk_time filter
        "tag": subject_tag(config, ticket.id),
        "ticket": {"id": ticket.id, "status": ticket.status,
                   "subject": _line(ticket.subject) if for_staff
                   else without_links(_line(ticket.subject)),
                   "priority": ticket.priority,
                   "linked_ticket": ticket.linked_ticket_id, "held": ticket.held or "",
                   # From the district directory and [[categories]]; '' when unknown.
                   "school": ticket.school or "", "room": ticket.room or "",
                   "category": ticket.category or ""},
        "linked_tag": subject_tag(config, ticket.linked_ticket_id) if ticket.linked_ticket_id
        else "",
        "requester": {"name": _line(ticket.requester.name) if for_staff
                      else greeting_name(ticket.requester.name),
                      "address": ticket.requester.address},
        "participants": [p.person.address for p in ticket.participants],
    }
    if not for_staff:
        # Whom the mail greets: its addressee (``greeted``), the requester unless given.
        base["recipient"] = greeted(addressed(ticket.requester))
    base.update(extra)
    return base


def message_variables(inbound: Inbound, text: str, dropped: Sequence[Attachment] = (),
                      forwarded: Sequence[dict] = (), not_attached: Sequence[Attachment] = ()
                      ) -> dict:
    """The message for a template; staff notifications add the attached messages opened
    (``forwarded``: forwarded.shown's) and the files too large to carry."""
    return {
        "dropped": [{"filename": a.filename, "size": a.size} for a in dropped],
        "subject": _line(inbound.subject),
        "text": text,
        "from": inbound.sender.address,
        "from_name": _line(inbound.sender.name) or inbound.sender.address,
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "size": a.size} for a in inbound.attachments if a not in dropped],
        "forwarded": list(forwarded),
        "not_attached": [{"filename": a.filename, "size": a.size} for a in not_attached],
    }


def _line(text: str) -> str:
    """One line: what goes into a subject or a name can never start a new header."""
    return " ".join(str(text or "").split())


def ack(tx: Session, config: Config, ticket: Ticket, inbound: Inbound, now: datetime,
        dropped: Sequence[Attachment] = ()) -> None:
    if not inbound.sender.deliverable:
        log.warning("ticket=%s message=%s action=no_ack reason=undeliverable sender=%r",
                    ticket.id, inbound.message_id, inbound.sender.address)
        return
    requester = addressed(ticket.requester)
    enqueue(tx, config, ticket, Draft(
        kind="ack",
        to=(requester,),
        variables=variables(config, ticket, recipient=greeted(requester),
                            message=message_variables(inbound, inbound.text, dropped)),
        in_reply_to=inbound.message_id,
        references=inbound.references,
        auto_submitted=AUTO_REPLIED,
    ), now)


def released_ack(tx: Session, config: Config, ticket: Ticket, now: datetime) -> None:
    """The acknowledgement a held request did not get, once staff released it."""
    in_reply_to, references = conversation(tx, ticket)
    requester = addressed(ticket.requester)
    enqueue(tx, config, ticket, Draft(
        kind="ack", to=(requester,),
        variables=variables(config, ticket, recipient=greeted(requester),
                            message={"dropped": [], "attachments": []}),
        in_reply_to=in_reply_to, references=references, auto_submitted=AUTO_REPLIED,
    ), now)


def staff_notification(tx: Session, config: Config, ticket: Ticket, inbound: Inbound,
                       text: str, event: str, recipients: Sequence[str], now: datetime,
                       attachments: Sequence[Attachment] = (),
                       dropped: Sequence[Attachment] = ()) -> None:
    """Tell staff about a new ticket (``event="new"``) or a requester's reply.

    ``attachments`` are carried, and with each attached message (a forward) its own
    files, within ``[limits]``; the attached messages are shown opened."""
    sender = inbound.sender.name or inbound.sender.address
    forwarded = opened_of(inbound)
    files = staff_files(attachments, forwarded, config.limits.max_attachment_size,
                        config.limits.max_message_size)
    message = message_variables(inbound, text, dropped,
                                [shown(f, config.helpdesk.zone) for f in forwarded],
                                files.listed)
    threads = staff_threads(tx, ticket, recipients,
                            new_ticket_request=inbound.message_id if event == "new" else "")
    for address in recipients:
        if address == inbound.sender.address:
            continue
        enqueue(tx, config, ticket, Draft(
            kind="notification",
            to=(Address("", address),),
            variables=variables(config, ticket, for_staff=True, event=event,
                                message=message),
            in_reply_to=threads[address][0],
            references=threads[address][1],
            auto_submitted=AUTO_GENERATED,
            from_name=f"{sender} via {config.helpdesk.name}",
            reply_to=config.helpdesk.address,
            attachments=files.attached,
        ), now)


def relay(tx: Session, config: Config, ticket: Ticket, inbound: Inbound, text: str,
          now: datetime, attachments: Sequence[Attachment] = ()) -> None:
    """A staff member's answer, to the requester and participants, from the help address."""
    in_reply_to, references = conversation(tx, ticket)
    staff_name = inbound.sender.name or inbound.sender.address.split("@")[0]
    enqueue(tx, config, ticket, Draft(
        kind="relay",
        to=public_recipients(ticket)[:1],
        cc=public_recipients(ticket)[1:],
        variables=variables(config, ticket, staff={"name": staff_name,
                                                   "address": inbound.sender.address},
                            message=message_variables(inbound, text)),
        in_reply_to=in_reply_to,
        references=references,
        auto_submitted=AUTO_GENERATED,
        from_name=f"{staff_name} via {config.helpdesk.name}",
        attachments=tuple(attachments),
    ), now)


def status_notice(tx: Session, config: Config, ticket: Ticket, template: str,
                  now: datetime, kind: str = "status", automatic: bool = False) -> None:
    """A short templated notice (e.g. ``reminder``) to the requester and participants:
    one mail each, each greeted by their own name."""
    _to_each(tx, config, ticket, template, kind, public_recipients(ticket),
             conversation(tx, ticket), now, automatic=automatic)


def resolved(tx: Session, config: Config, ticket: Ticket, now: datetime,
             automatic: bool = False) -> None:
    """The resolved notice, one mail to each of the requester and participants. With
    ``[survey] delay = "0s"`` the requester's carries the survey (survey_due decides
    whether the ticket gets one): one mail where there were two."""
    thread = conversation(tx, ticket)
    people = public_recipients(ticket)
    requester = addressed(ticket.requester)
    record = None
    if people and people[0].address == requester.address:
        record = survey_due.in_resolved_notice(tx, config, ticket, now, automatic)
    if record is not None:
        # No Reply-To with the survey's token here: a plain reply that rates nothing
        # ("still broken") must reopen the ticket; the rating links carry the token.
        _survey_mail(tx, config, ticket, record, "resolved", requester, thread, now,
                     reply_to="", automatic=automatic)
        people = people[1:]
    _to_each(tx, config, ticket, "resolved", "status", people, thread, now,
             automatic=automatic)


def _to_each(tx: Session, config: Config, ticket: Ticket, template: str, kind: str,
             people: Sequence[Address], thread: tuple[str, tuple[str, ...]], now: datetime,
             **extra) -> None:
    in_reply_to, references = thread
    for person in people:
        enqueue(tx, config, ticket, Draft(
            kind=kind,
            template=template,
            to=(person,),
            variables=variables(config, ticket, recipient=greeted(person),
                                pending_resolve_after=format_duration(
                                    config.lifecycle.pending_resolve_after
                                    - config.lifecycle.pending_reminder_after), **extra),
            in_reply_to=in_reply_to,
            references=references,
            auto_submitted=AUTO_GENERATED,
        ), now)


def survey(tx: Session, config: Config, ticket: Ticket, record: Survey, now: datetime) -> None:
    """The satisfaction survey: one-click ratings by mail (and, if set up, by web)."""
    _survey_mail(tx, config, ticket, record, "survey", addressed(ticket.requester),
                 conversation(tx, ticket), now,
                 reply_to=surveys.reply_address(config.helpdesk.address, record.token))


def _survey_mail(tx: Session, config: Config, ticket: Ticket, record: Survey, template: str,
                 requester: Address, thread: tuple[str, tuple[str, ...]], now: datetime,
                 reply_to: str, **extra) -> None:
    """A mail of kind ``survey`` (a reply to it that rates is an answer: facts.py)."""
    tag = subject_tag(config, ticket.id)
    web = []
    secret = config.survey.secret.reveal() if config.survey.base_url else ""
    if secret:
        web = surveys.web_links(config.survey.base_url, secret, record.token,
                                now + config.survey.link_lifetime)
    enqueue(tx, config, ticket, Draft(
        kind="survey",
        template=template,
        to=(requester,),
        variables=variables(config, ticket, recipient=greeted(requester), token=record.token,
                            ratings=surveys.mailto_links(config.helpdesk.address, tag,
                                                         record.token),
                            web_ratings=web, **extra),
        in_reply_to=thread[0],
        references=thread[1],
        auto_submitted=AUTO_GENERATED,
        reply_to=reply_to,
    ), now)


def survey_thanks(tx: Session, config: Config, ticket: Ticket, inbound: Inbound | None,
                  record: Survey, now: datetime) -> None:
    # To whom the survey asked: on a survivor of a merge (handlers/survey.keep_answer),
    # the requester of the ticket merged into it.
    requester = addressed(tx.get(Ticket, record.ticket_id).requester)
    enqueue(tx, config, ticket, Draft(
        kind="status",
        template="survey_thanks",
        to=(requester,),
        variables=variables(config, ticket, recipient=greeted(requester),
                            rating=record.rating, comment=record.comment,
                            label=surveys.RATINGS.get(record.rating or 0, "")),
        in_reply_to=inbound.message_id if inbound else "",
        references=(*inbound.references[-10:], inbound.message_id) if inbound else (),
        auto_submitted=AUTO_REPLIED,
    ), now)


def staff_alert(tx: Session, config: Config, ticket: Ticket, inbound: Inbound, reason: str,
                now: datetime) -> None:
    """Tell every staff address that mail in a staff member's name was not acted on."""
    threads = staff_threads(tx, ticket, config.staff.addresses)
    for address in config.staff.addresses:
        enqueue(tx, config, ticket, Draft(
            kind="notification",
            template="unverified",
            to=(Address("", address),),
            variables=variables(config, ticket, for_staff=True, reason=reason,
                                message=message_variables(inbound, inbound.text)),
            in_reply_to=threads[address][0],
            references=threads[address][1],
            auto_submitted=AUTO_GENERATED,
            reply_to=config.helpdesk.address,
        ), now)


def command_error(tx: Session, config: Config, ticket: Ticket, inbound: Inbound, error: str,
                  usage: list[str], now: datetime) -> None:
    """An answer to the staff member's mail, in their thread of the ticket's staff mail."""
    _, chain = staff_threads(tx, ticket, (inbound.sender.address,))[inbound.sender.address]
    enqueue(tx, config, ticket, Draft(
        kind="notification",
        template="command_error",
        to=(inbound.sender,),
        variables=variables(config, ticket, for_staff=True, error=error, commands=usage,
                            message=message_variables(inbound, inbound.text)),
        in_reply_to=inbound.message_id,
        references=chain[:1] + (*chain[1:], inbound.message_id)[-19:],
        auto_submitted=AUTO_REPLIED,
    ), now)


# Who among the staff hears of a requester's reply (issue 18); the mail among the
# staff themselves (assignments, notes, copies of answers) is in staffmail.py.


def reply_recipients(tx: Session, config: Config, ticket: Ticket, now: datetime) -> list[str]:
    """Who hears of a requester's reply: the assignee, or every staff address when
    nobody is assigned or the assignee's out-of-office came within ``away_after``."""
    if ticket.assignee is None or away(tx, ticket.assignee.address,
                                       now - config.staff.away_after):
        return list(config.staff.addresses)
    return [ticket.assignee.address]


def away(tx: Session, address: str, since: datetime) -> bool:
    """Whether an auto-reply from ``address`` landed on any ticket since ``since``
    (handlers/replies.automatic_on_ticket records it as a ``received_*`` event)."""
    from ..db.models import TicketEvent

    write_pending(tx)
    return tx.scalar(select(TicketEvent.id)
                     .where(TicketEvent.actor == address, TicketEvent.at >= since,
                            TicketEvent.action.like("received\\_%", escape="\\"))
                     .limit(1)) is not None
