"""What an incoming message is, and why: the desk's decision, apart from what it does.

Pure: ``route`` reads the message and the facts found for it (facts.py) and returns a
Route; the handler of that route (handlers/) carries it out. The questions are asked
in the order below, and the order is behaviour: a bounce that names a ticket is still a
bounce, a survey answer is read before anything could reopen its ticket, and mail in a
staff member's name is proven before it is acted on.

The facts that can cost a query or a header parse (the ticket a reply threads to, the
survey it answers, the receiving server's proof) are functions, asked only on the
paths that need them, in this order: a spam or a duplicate asks none, and for a plain
new request from a requester they find nothing to look up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from ..mail import classify as verdicts
from ..mail.parse import Inbound
from ..mail.quoting import inline_answer_of, new_text_of
from ..states import DONE, TicketStatus
from . import subjects, surveys
from .threads import Match

if TYPE_CHECKING:
    from ..mail.authenticity import Verdict as Proof
    from .commands import Parsed


class RouteName(StrEnum):
    DUPLICATE = "duplicate"  # its Message-ID is recorded already
    SPAM = "spam"  # the spam filter scored it over the threshold
    LOOP = "loop"  # our own mail come back
    BOUNCE = "bounce"  # a delivery report (whether of our mail, its handler tells)
    SURVEY_ANSWER = "survey_answer"  # a rating or a comment for a ticket's survey
    SURVEY_REFUSED = "survey_refused"  # a survey's token, sent by someone not asked
    AUTOMATIC = "automatic"  # an auto-reply or the like, on no ticket: dropped
    # A staff member's auto-reply on no ticket (an out-of-office answering the morning
    # queue, say): nothing is kept but that they are away ([staff] away_after).
    STAFF_AWAY = "staff_away"
    AUTOMATIC_ON_TICKET = "automatic_on_ticket"  # the same on a ticket: noted there
    OUTSIDER = "outsider"  # a new request from outside the requester domains
    NEW_REQUEST = "new_request"  # a new ticket; the requester is acknowledged
    HELD_REQUEST = "held_request"  # a new ticket from a district address left unproven
    UNVERIFIED = "unverified"  # staff or district mail on a ticket, unproven: a note
    COMMAND_ERROR = "command_error"  # staff mail whose commands do not parse
    STAFF_ANSWER = "staff_answer"  # staff commands, an answer to relay, or both
    # Mail on a ticket closed long ago, or on a resolved or closed one under a new
    # subject: a new ticket naming it.
    FOLLOW_UP = "follow_up"
    THANKS = "thanks"  # only thanks, on a pending, resolved or closed ticket: it stays so
    REQUESTER_REPLY = "requester_reply"  # the requester or a participant wrote again


@dataclass(frozen=True)
class Route:
    """The decision: what the message is, why, and what its handler needs."""

    name: RouteName
    reason: str = ""  # why, for the log (and the outcome's detail where it has one)
    ticket_id: int | None = None  # the ticket it is on (FOLLOW_UP: the closed one)
    thread: str = ""  # how it threaded to that ticket (threads.Match.reason)
    refused: Match | None = None  # a ticket it named that its sender may not join
    kind: str = ""  # AUTOMATIC_ON_TICKET: the classifier's verdict
    survey_id: int | None = None
    answer: surveys.Answer | None = None  # SURVEY_ANSWER: None for a comment alone
    commands: Parsed | None = None  # STAFF_ANSWER: the commands and the text to relay
    # REQUESTER_REPLY: the message's subject, where it is about something else.
    new_subject: str = ""


@dataclass(frozen=True)
class TicketFacts:
    """The ticket a message threads to, as far as routing reads it."""

    id: int
    status: str
    closed_at: datetime | None
    may_join: bool  # the sender is staff, its requester or a participant
    subject: str = ""  # the ticket's (empty: not compared)


@dataclass(frozen=True)
class Thread:
    match: Match
    ticket: TicketFacts


@dataclass(frozen=True)
class SurveyFacts:
    id: int
    ticket_id: int  # the ticket it asked about
    requester: str  # the only one whose answer counts
    # The ticket that one was merged into since (desk/merge.py), if it was.
    survivor_id: int | None = None


def _nothing(*_args: object) -> None:
    return None


@dataclass(frozen=True)
class Facts:
    """What routing needs to know beyond the message itself (facts.gather fills it)."""

    recorded: bool  # a message with its Message-ID is recorded already
    verdict: verdicts.Verdict
    sender_is_staff: bool
    outsider: bool  # to be turned away if it makes a new ticket ([helpdesk] outsiders)
    unauthenticated_staff: str  # [authentication]: "note" keeps unproven staff mail aside
    auto_close_after: timedelta  # a ticket closed longer ago gets a new one
    now: datetime
    subject_tag: str = "#{id}"  # [helpdesk] subject_tag: a subject carrying one is no new one
    # The ticket the message threads to, if it exists.
    thread: Callable[[], Thread | None] = _nothing
    # The survey it answers: the one its token names, else that of the ticket given
    # (by id) if the message replies to its survey mail.
    survey: Callable[[str, int | None], SurveyFacts | None] = _nothing
    # How the receiving server vouches for a staff or district sender (None: neither).
    proof: Callable[[], Proof | None] = _nothing


def route(inbound: Inbound, facts: Facts) -> Route:
    """Name what ``inbound`` is: the first question that settles it decides."""
    if facts.recorded:
        return Route(RouteName.DUPLICATE, "Message-ID already recorded")
    verdict = facts.verdict
    if verdict.kind == verdicts.SPAM:
        return Route(RouteName.SPAM, verdict.reason)
    if verdict.kind == verdicts.LOOP:
        return Route(RouteName.LOOP, verdict.reason)
    thread = facts.thread()
    if thread is not None and not thread.ticket.may_join and (
            thread.match.guessable or inbound.sender.address not in thread.match.recipients):
        # Someone outside the ticket used its number, or answers a message they were not
        # sent (a Message-ID can be learnt): they get a ticket of their own and learn
        # nothing of the one they named.
        return replace(_route(inbound, facts, None), refused=thread.match)
    return _route(inbound, facts, thread)


def _route(inbound: Inbound, facts: Facts, thread: Thread | None) -> Route:
    verdict = facts.verdict
    if verdict.kind == verdicts.BOUNCE:
        return Route(RouteName.BOUNCE, verdict.reason)
    ticket = thread.ticket if thread else None
    if not verdict.automatic:
        answered = _survey_answer(inbound, facts, ticket)
        if answered is not None:
            return answered
    on = {"ticket_id": ticket.id, "thread": thread.match.reason} if thread else {}
    if verdict.automatic:
        if ticket is None:
            if facts.sender_is_staff:
                return Route(RouteName.STAFF_AWAY, verdict.reason, kind=verdict.kind)
            return Route(RouteName.AUTOMATIC, verdict.reason)
        return Route(RouteName.AUTOMATIC_ON_TICKET, verdict.reason, kind=verdict.kind, **on)
    proof = facts.proof()
    if ticket is None and facts.outsider:
        return Route(RouteName.OUTSIDER, "sender outside the requester domains")
    if ticket is None:
        if proof is not None and proof.status == "failed":
            return Route(RouteName.HELD_REQUEST, proof.reason)
        return Route(RouteName.NEW_REQUEST, "no ticket named")
    if proof is not None and (proof.status == "failed" or (
            facts.sender_is_staff and proof.status == "unknown"
            and facts.unauthenticated_staff == "note")):
        return Route(RouteName.UNVERIFIED, proof.reason, **on)
    if facts.sender_is_staff:
        return _staff(inbound, on)
    if ticket.status == TicketStatus.CLOSED and ticket.closed_at is not None \
            and facts.now - ticket.closed_at > facts.auto_close_after:
        # Long closed: a new problem deserves a new ticket; it names the old one.
        return Route(RouteName.FOLLOW_UP, f"#{ticket.id} closed long ago", **on)
    new_subject = subjects.is_new_subject(inbound.subject, ticket.subject, facts.subject_tag)
    if ticket.status in DONE and new_subject:
        # An old help-desk mail answered to ask something new: a request of its own (the
        # subject is read before the thanks: a new problem must not pass for thanks).
        return Route(RouteName.FOLLOW_UP, f"new subject on {ticket.status} #{ticket.id}", **on)
    if (ticket.status in DONE or ticket.status == TicketStatus.PENDING) \
            and is_thanks(new_text_of(inbound, signature=False)):
        # "Thanks, works now!" is no reason to reopen a ticket (a pending one's assignee
        # is told, to resolve it).
        return Route(RouteName.THANKS, f"only thanks on a {ticket.status} ticket", **on)
    return Route(RouteName.REQUESTER_REPLY, f"threaded by {thread.match.reason}",
                 new_subject=inbound.subject if new_subject else "", **on)


def _survey_answer(inbound: Inbound, facts: Facts, ticket: TicketFacts | None) -> Route | None:
    """A survey answer (by its token, or a rating in a reply to the survey mail)."""
    token = surveys.token_in(inbound)
    survey = facts.survey(token, ticket.id if ticket else None)
    if survey is None:
        return None
    answer = surveys.read_answer(new_text_of(inbound, signature=False))
    # A reply to a resolved notice that carried the survey: its token only in the quoted
    # text. Only a digit rates there, as the notice asks; "still broken" or "Bad, it is
    # broken again" is about the fix, an ordinary reply that reopens the ticket.
    quoted_only = bool(token) and ticket is not None and not surveys.named(inbound)
    if answer is None and (not token or quoted_only):
        return None  # a reply to the survey mail that rates nothing: an ordinary reply
    if quoted_only and not answer.by_number:
        return None
    # An answer about a ticket merged since is recorded on the survivor, where its
    # request went on and staff look; the rating stays on the survey it answers.
    on = survey.survivor_id if survey.survivor_id is not None else survey.ticket_id
    if inbound.sender.address != survey.requester:
        # The token came from someone else's survey: not theirs to answer.
        return Route(RouteName.SURVEY_REFUSED,
                     "survey answer from someone other than the requester", ticket_id=on)
    return Route(RouteName.SURVEY_ANSWER, "survey", ticket_id=on, survey_id=survey.id,
                 answer=answer)


def _staff(inbound: Inbound, on: dict) -> Route:
    from . import commands  # only staff mail has commands to read

    parsed = commands.parse(new_text_of(inbound))
    if parsed.error:
        return Route(RouteName.COMMAND_ERROR, parsed.error, **on)
    if parsed.commands and parsed.text \
            and not commands.parse(new_text_of(inbound, signature=False)).text.strip():
        # Commands and the writer's signature, nothing else (a client signs the mail a
        # morning queue's mailto: link composes): there is no answer to relay.
        parsed = replace(parsed, text="")
    inline = inline_answer_of(inbound)
    if inline is not None:
        # Answers between the quoted questions: relayed with them. The commands are the
        # same first lines in both readings.
        again = commands.parse(inline)
        if not again.error and again.commands == parsed.commands:
            parsed = replace(parsed, text=again.text)
    return Route(RouteName.STAFF_ANSWER, ",".join(c.name for c in parsed.commands) or "answer",
                 commands=parsed, **on)


_THANKS = re.compile(r"\b(thanks?|thank you|thx|ty|cheers|danke|merci|gracias|grazie|"
                     r"tack|dank|perfect|great|awesome|works( now)?|fixed)\b", re.I)
_NOT_THANKS = re.compile(r"\?|\b(not|still|but|again|no longer|doesn'?t|isn'?t|won'?t|"
                         r"nicht|noch)\b", re.I)


def is_thanks(text: str) -> bool:
    """A reply that only says thank you: a few words, thanks in them, no complaint."""
    words = re.findall(r"\w+", text)
    return 0 < len(words) <= 12 and bool(_THANKS.search(text)) and not _NOT_THANKS.search(text)
