"""route.py without a database: what each message is named, and in which order the
questions are asked. The facts are plain values; a lookup the route must not make
fails the test."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mailhelp.desk.route import (
    Facts,
    RouteName,
    SurveyFacts,
    Thread,
    TicketFacts,
    is_thanks,
    route,
)
from mailhelp.desk.threads import PLUS_ADDRESS, REFERENCES, SUBJECT_TAG, Match
from mailhelp.mail import classify
from mailhelp.mail.authenticity import Verdict as Proof
from mailhelp.mail.parse import parse

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HUMAN = classify.Verdict(classify.HUMAN, "no automatic marks")
TOKEN = "abcdefghijklmnopqrstuvwxyz"


def mail(body: str = "The printer jams.", sender: str = "teacher1@school.test",
         subject: str = "Printer jam", to: str = "help@school.test") -> object:
    return parse((f"From: {sender}\nTo: {to}\nSubject: {subject}\n"
                  f"Message-ID: <m1@school.test>\nIn-Reply-To: <ack1@school.test>\n"
                  f"Date: Mon, 23 Nov 2026 08:00:00 +0000\n\n{body}\n").encode())


def never(*_args):
    raise AssertionError("route asked for a fact it does not need here")


def facts(**given) -> Facts:
    """Facts of a plain human message from a requester; lookups not given must not run."""
    thread, survey, proof = (given.pop(k, never) for k in ("thread", "survey", "proof"))
    base = Facts(recorded=False, verdict=HUMAN, sender_is_staff=False, outsider=False,
                 unauthenticated_staff="accept", auto_close_after=timedelta(days=30), now=NOW,
                 thread=thread if callable(thread) else lambda: thread,
                 survey=survey if callable(survey) else lambda _token, _ticket: survey,
                 proof=proof if callable(proof) else lambda: proof)
    return replace(base, **given)


def on_ticket(status="pending", may_join=True, reason=REFERENCES, closed_at=None,
              recipients=frozenset(), subject="") -> Thread:
    return Thread(Match(7, reason, recipients),
                  TicketFacts(7, status, closed_at, may_join, subject))


# One test per route -------------------------------------------------------------------

def test_a_recorded_message_id_is_a_duplicate_and_nothing_else_is_asked():
    decided = route(mail(), facts(recorded=True))
    assert decided.name == RouteName.DUPLICATE and decided.reason == "Message-ID already recorded"


def test_spam_and_loops_are_named_before_any_ticket_is_looked_up():
    spam = classify.Verdict(classify.SPAM, "X-Spam-Score 9 >= 5")
    assert route(mail(), facts(verdict=spam)).name == RouteName.SPAM
    loop = classify.Verdict(classify.LOOP, "sent from the help address itself")
    decided = route(mail(), facts(verdict=loop))
    assert decided.name == RouteName.LOOP and decided.reason == loop.reason


def test_a_message_naming_no_ticket_is_a_new_request():
    decided = route(mail(), facts(thread=None, survey=None, proof=None))
    assert decided.name == RouteName.NEW_REQUEST and decided.ticket_id is None


def test_a_district_sender_left_unproven_makes_a_held_request():
    decided = route(mail(), facts(thread=None, survey=None,
                                  proof=Proof("failed", "dkim=fail")))
    assert decided.name == RouteName.HELD_REQUEST and decided.reason == "dkim=fail"


def test_an_outsider_gets_no_ticket():
    decided = route(mail(sender="someone@elsewhere.test"),
                    facts(thread=None, survey=None, proof=None, outsider=True))
    assert decided.name == RouteName.OUTSIDER


def test_an_outsider_on_a_ticket_they_belong_to_is_a_reply():
    decided = route(mail(), facts(thread=on_ticket(), survey=None, proof=None, outsider=True))
    assert decided.name == RouteName.REQUESTER_REPLY


def test_a_reply_of_the_requester_names_its_ticket_and_thread():
    decided = route(mail(), facts(thread=on_ticket(reason=SUBJECT_TAG), survey=None,
                                  proof=None))
    assert (decided.name, decided.ticket_id, decided.thread) == (
        RouteName.REQUESTER_REPLY, 7, SUBJECT_TAG)


def test_thanks_on_a_resolved_ticket_is_thanks_and_on_an_open_one_a_reply():
    thanks = mail("Thanks, works now!")
    for status in ("resolved", "closed"):
        decided = route(thanks, facts(thread=on_ticket(status), survey=None, proof=None))
        assert decided.name == RouteName.THANKS
    decided = route(thanks, facts(thread=on_ticket("open"), survey=None, proof=None))
    assert decided.name == RouteName.REQUESTER_REPLY
    decided = route(mail("Thanks, but it still jams"),
                    facts(thread=on_ticket("resolved"), survey=None, proof=None))
    assert decided.name == RouteName.REQUESTER_REPLY


def test_mail_on_a_ticket_closed_long_ago_is_a_follow_up_naming_it():
    closed = NOW - timedelta(days=31)
    decided = route(mail("Thanks!"), facts(thread=on_ticket("closed", closed_at=closed),
                                           survey=None, proof=None))
    assert decided.name == RouteName.FOLLOW_UP and decided.ticket_id == 7
    recent = route(mail("It jams again"),
                   facts(thread=on_ticket("closed", closed_at=NOW - timedelta(days=29)),
                         survey=None, proof=None))
    assert recent.name == RouteName.REQUESTER_REPLY


def test_staff_mail_is_an_answer_with_its_commands():
    decided = route(mail("#resolve\n#priority high\n\nReplaced the drum.",
                         sender="tech1@school.test"),
                    facts(thread=on_ticket(), survey=None, proof=None, sender_is_staff=True))
    assert decided.name == RouteName.STAFF_ANSWER and decided.ticket_id == 7
    assert [c.name for c in decided.commands.commands] == ["resolve", "priority"]
    assert decided.commands.text == "Replaced the drum."


def test_thanks_on_a_pending_ticket_is_thanks_and_does_not_reopen_it():
    decided = route(mail("Works now, thank you!"),
                    facts(thread=on_ticket("pending"), survey=None, proof=None))
    assert decided.name == RouteName.THANKS and decided.ticket_id == 7
    assert decided.reason == "only thanks on a pending ticket"
    decided = route(mail("Thank you, but the screen still flickers"),
                    facts(thread=on_ticket("pending"), survey=None, proof=None))
    assert decided.name == RouteName.REQUESTER_REPLY


OLD_SUBJECT = "Projector in room 12"


@pytest.mark.parametrize("status", ["resolved", "closed"])
def test_a_new_subject_on_a_resolved_or_closed_ticket_is_a_follow_up(status):
    decided = route(mail("The document camera shows nothing.",
                         subject="Re: Document camera in 7b dead"),
                    facts(thread=on_ticket(status, subject=OLD_SUBJECT,
                                           closed_at=NOW - timedelta(days=1)),
                          survey=None, proof=None))
    assert decided.name == RouteName.FOLLOW_UP and decided.ticket_id == 7
    assert decided.reason == f"new subject on {status} #7"


@pytest.mark.parametrize("subject", [
    "Re: Projector in room 12", "AW: WG: Fwd: projector in Room 12!",
    "Re: [#7] Document camera in 7b dead",  # the writer kept the tag
    "Re: Resolved: Projector in room 12", "Re:", "",
])
def test_a_subject_that_still_names_the_ticket_is_no_follow_up(subject):
    decided = route(mail("It flickers again.", subject=subject),
                    facts(thread=on_ticket("resolved", subject=OLD_SUBJECT),
                          survey=None, proof=None))
    assert decided.name == RouteName.REQUESTER_REPLY and decided.new_subject == ""


def test_thanks_under_a_new_subject_on_a_resolved_ticket_is_a_new_request():
    # A new problem must not pass for thanks because it says thank you.
    decided = route(mail("Document camera dead. Thanks!", subject="Document camera in 7b"),
                    facts(thread=on_ticket("resolved", subject=OLD_SUBJECT),
                          survey=None, proof=None))
    assert decided.name == RouteName.FOLLOW_UP


@pytest.mark.parametrize("status", ["new", "open", "pending"])
def test_a_new_subject_on_an_open_ticket_is_a_reply_naming_it(status):
    decided = route(mail("Also, the camera is dead.", subject="Re: Document camera in 7b"),
                    facts(thread=on_ticket(status, subject=OLD_SUBJECT),
                          survey=None, proof=None))
    assert decided.name == RouteName.REQUESTER_REPLY
    assert decided.new_subject == "Re: Document camera in 7b"


INTERLEAVED = """#pending
Hi Jane,

On Mon, Nov 23, 2026 at 08:12:45AM -0500, Help Desk wrote:
> New ticket [#7] from Jane Teacher <teacher1@school.test>
>
> Can it print double-sided?

Yes, with the new driver.

> Do I need to bring paper?

No need.

> --
> Reply to this message to answer Jane Teacher.

Sam"""


def test_staff_answers_between_quotes_are_relayed_with_their_questions():
    decided = route(mail(INTERLEAVED, sender="tech1@school.test"),
                    facts(thread=on_ticket(), survey=None, proof=None, sender_is_staff=True))
    assert decided.name == RouteName.STAFF_ANSWER
    assert [c.name for c in decided.commands.commands] == ["pending"]
    assert decided.commands.text == (
        "Hi Jane,\n\n> Can it print double-sided?\n\nYes, with the new driver.\n\n"
        "> Do I need to bring paper?\n\nNo need.\n\nSam")


def test_staff_mail_whose_commands_do_not_parse_is_a_command_error():
    decided = route(mail("#frobnicate\n\nHi", sender="tech1@school.test"),
                    facts(thread=on_ticket(), survey=None, proof=None, sender_is_staff=True))
    assert decided.name == RouteName.COMMAND_ERROR
    assert decided.reason == "#frobnicate: unknown command"


def test_staff_mail_the_server_says_is_forged_is_unverified():
    decided = route(mail("#close", sender="tech1@school.test"),
                    facts(thread=on_ticket(), survey=None, sender_is_staff=True,
                          proof=Proof("failed", "spf=fail")))
    assert decided.name == RouteName.UNVERIFIED and decided.reason == "spf=fail"


def test_staff_mail_without_proof_is_a_note_only_when_so_configured():
    unknown = Proof("unknown", "no Authentication-Results from a trusted server")
    staff = mail("#close", sender="tech1@school.test")
    noted = route(staff, facts(thread=on_ticket(), survey=None, sender_is_staff=True,
                               proof=unknown, unauthenticated_staff="note"))
    assert noted.name == RouteName.UNVERIFIED
    accepted = route(staff, facts(thread=on_ticket(), survey=None, sender_is_staff=True,
                                  proof=unknown, unauthenticated_staff="accept"))
    assert accepted.name == RouteName.STAFF_ANSWER
    # A district sender who is not staff, unproven but not refuted, is an ordinary reply.
    district = route(mail("Any news?"), facts(thread=on_ticket(), survey=None, proof=unknown,
                                              unauthenticated_staff="note"))
    assert district.name == RouteName.REQUESTER_REPLY


def test_a_survey_answer_by_token_names_the_survey_and_the_rating():
    survey = SurveyFacts(3, 7, "teacher1@school.test")
    decided = route(mail("4 - quick fix", subject=f"Survey answer (survey-{TOKEN})"),
                    facts(thread=None, survey=lambda token, _ticket: survey
                          if token == TOKEN else None))
    assert (decided.name, decided.survey_id, decided.ticket_id) == (
        RouteName.SURVEY_ANSWER, 3, 7)
    assert (decided.answer.rating, decided.answer.comment) == (4, "quick fix")


def test_a_reply_to_the_survey_mail_counts_only_if_it_rates():
    survey = SurveyFacts(3, 7, "teacher1@school.test")
    rated = route(mail("5"), facts(thread=on_ticket("closed"), survey=survey))
    assert rated.name == RouteName.SURVEY_ANSWER and rated.answer.rating == 5
    # Asked with the ticket it threads to, for its survey mail.
    asked = []
    route(mail("5"), facts(thread=on_ticket("closed"),
                           survey=lambda token, ticket: asked.append((token, ticket)),
                           proof=None))
    assert asked == [("", 7)]
    unrated = route(mail("The printer jams again, on every page now."),
                    facts(thread=on_ticket("closed"), survey=survey, proof=None))
    assert unrated.name == RouteName.REQUESTER_REPLY


def test_a_reply_quoting_a_survey_token_counts_only_if_it_rates():
    """The resolved notice that carries the survey ([survey] delay "0s") has no Reply-To
    with the token: a reply to it quotes the token in its text only. "Still broken" is
    then a reply that reopens the ticket, "5" a rating; sent to the survey's address
    (a rating link's message), a comment alone is still a survey answer."""
    survey = SurveyFacts(3, 7, "teacher1@school.test")
    quoted = f"\n\n> 5 - Excellent: mailto:help+survey-{TOKEN}@school.test?subject=x"
    reply = route(mail("It is broken again." + quoted),
                  facts(thread=on_ticket("resolved", subject="Printer jam"), survey=survey,
                        proof=None))
    assert reply.name == RouteName.REQUESTER_REPLY
    rated = route(mail("5" + quoted), facts(thread=on_ticket("resolved"), survey=survey))
    assert rated.name == RouteName.SURVEY_ANSWER and rated.answer.rating == 5
    # A rating word there is about the fix, not a rating: "Bad" reopens, never rates 1.
    worded = route(mail("Bad, it is broken again." + quoted),
                   facts(thread=on_ticket("resolved", subject="Printer jam"), survey=survey,
                         proof=None))
    assert worded.name == RouteName.REQUESTER_REPLY
    named = route(mail("Bad, it is broken again.", to=f"help+survey-{TOKEN}@school.test"),
                  facts(thread=on_ticket("resolved"), survey=survey))
    assert named.name == RouteName.SURVEY_ANSWER and named.answer.rating == 1
    comment = route(mail("It is broken again." + quoted, to=f"help+survey-{TOKEN}@school.test"),
                    facts(thread=on_ticket("resolved"), survey=survey))
    assert comment.name == RouteName.SURVEY_ANSWER and comment.answer is None


def test_a_survey_answer_from_a_stranger_is_refused():
    survey = SurveyFacts(3, 7, "teacher1@school.test")
    decided = route(mail("1", sender="mallory@school.test", subject=f"x survey-{TOKEN}"),
                    facts(thread=None, survey=survey))
    assert decided.name == RouteName.SURVEY_REFUSED and decided.ticket_id == 7


def test_an_answer_to_the_survey_of_a_ticket_merged_since_is_recorded_on_the_survivor():
    # #7 was merged into #2 after its survey went out: the answer is kept where its
    # request went on; the rating is still for #7's survey (and only its requester's).
    survey = SurveyFacts(3, 7, "teacher1@school.test", survivor_id=2)
    decided = route(mail("4 - quick fix", subject=f"Survey answer (survey-{TOKEN})"),
                    facts(thread=None, survey=survey))
    assert (decided.name, decided.survey_id, decided.ticket_id) == (
        RouteName.SURVEY_ANSWER, 3, 2)
    assert decided.answer.rating == 4
    refused = route(mail("1", sender="mallory@school.test", subject=f"x survey-{TOKEN}"),
                    facts(thread=None, survey=survey))
    assert (refused.name, refused.ticket_id) == (RouteName.SURVEY_REFUSED, 2)


def test_an_auto_reply_on_a_ticket_is_noted_and_on_none_dropped():
    away = classify.Verdict(classify.AUTO_REPLY, "Auto-Submitted: auto-replied")
    noted = route(mail(), facts(verdict=away, thread=on_ticket()))
    assert (noted.name, noted.ticket_id, noted.kind) == (
        RouteName.AUTOMATIC_ON_TICKET, 7, classify.AUTO_REPLY)
    dropped = route(mail(), facts(verdict=away, thread=None))
    assert dropped.name == RouteName.AUTOMATIC and dropped.reason == away.reason
    # A staff member's, on no ticket: kept on none, but they are away ([staff] away_after).
    staff = route(mail(sender="tech1@school.test"),
                  facts(verdict=away, thread=None, sender_is_staff=True))
    assert (staff.name, staff.ticket_id, staff.kind) == (
        RouteName.STAFF_AWAY, None, classify.AUTO_REPLY)


def test_a_bounce_is_a_bounce_even_when_it_threads_to_a_ticket():
    bounce = classify.Verdict(classify.BOUNCE, "delivery status notification")
    decided = route(mail(), facts(verdict=bounce, thread=on_ticket()))
    assert decided.name == RouteName.BOUNCE and decided.reason == bounce.reason


# The authorisation rule, and the order it comes in ---------------------------------------

def test_a_guessable_ticket_number_from_a_stranger_makes_a_new_ticket():
    decided = route(mail(sender="mallory@school.test"),
                    facts(thread=on_ticket(may_join=False, reason=PLUS_ADDRESS), survey=None,
                          proof=None))
    assert decided.name == RouteName.NEW_REQUEST and decided.ticket_id is None
    assert decided.refused == Match(7, PLUS_ADDRESS)


def test_a_stranger_answering_mail_sent_to_them_joins_the_ticket():
    thread = on_ticket(may_join=False, recipients=frozenset({"bob@school.test"}))
    decided = route(mail(sender="bob@school.test"), facts(thread=thread, survey=None,
                                                          proof=None))
    assert decided.name == RouteName.REQUESTER_REPLY and decided.refused is None
    refused = route(mail(sender="mallory@school.test"), facts(thread=thread, survey=None,
                                                              proof=None))
    assert refused.name == RouteName.NEW_REQUEST and refused.refused.ticket_id == 7


def test_a_refused_ticket_is_not_asked_for_its_survey():
    asked = []
    route(mail("5", sender="mallory@school.test"),
          facts(thread=on_ticket(may_join=False, reason=SUBJECT_TAG),
                survey=lambda token, ticket: asked.append(ticket), proof=None))
    assert asked == [None]


def test_a_refused_stranger_on_a_bounce_is_still_a_bounce():
    bounce = classify.Verdict(classify.BOUNCE, "delivery status notification")
    decided = route(mail(sender="mailer-daemon@elsewhere.test"),
                    facts(verdict=bounce, thread=on_ticket(may_join=False,
                                                           reason=SUBJECT_TAG)))
    assert decided.name == RouteName.BOUNCE and decided.refused is not None


def test_a_survey_answer_comes_before_the_proof_and_the_staff_rules():
    survey = SurveyFacts(3, 7, "tech1@school.test")
    decided = route(mail("5", sender="tech1@school.test", subject=f"survey-{TOKEN}"),
                    facts(thread=on_ticket(), survey=survey, sender_is_staff=True))
    assert decided.name == RouteName.SURVEY_ANSWER


def test_an_outsider_is_turned_away_even_if_unproven():
    decided = route(mail(sender="x@elsewhere.test"),
                    facts(thread=None, survey=None, outsider=True,
                          proof=Proof("failed", "dkim=fail")))
    assert decided.name == RouteName.OUTSIDER


@pytest.mark.parametrize(("text", "expected"), [
    ("Thanks!", True), ("thank you, works now", True), ("Thanks, but it still jams", False),
    ("Thanks? It does not work", False), ("", False),
    ("thanks " + "and more words " * 10, False),
])
def test_is_thanks(text, expected):
    assert is_thanks(text) is expected
