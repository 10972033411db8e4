"""Merging tickets (desk/merge.py, issue 19): what a merge moves and leaves, who it
refuses, and where mail threaded on the merged ticket goes. The decisions are pure; the
merge itself runs on the test database (SQLite, or PostgreSQL with
MAILHELP_TEST_DATABASE), through the pipeline as mail arrives."""

from __future__ import annotations

import email
import email.policy
import threading

import pytest

from mailhelp.app import App
from mailhelp.db.models import (
    Job,
    Message,
    Outbox,
    Participant,
    Suppression,
    Survey,
    Ticket,
    TicketEvent,
)
from mailhelp.db.session import transaction
from mailhelp.desk import commands, notices, survey_due, surveys
from mailhelp.desk.merge import MergeError, merge, refusal, survivor_status
from mailhelp.desk.threads import follow_merges
from mailhelp.desk.tickets import set_status
from mailhelp.web.site import SurveySite
from tests.helpers import mail_of
from tests.security.desk import NOW, mail
from tests.security.test_forged_bounces import dsn

TRUST = '[authentication]\nunauthenticated_staff = "trust"\n'
JANE, BOB = "Jane Teacher <teacher1@school.test>", "Bob Miller <teacher2@school.test>"


# Decisions --------------------------------------------------------------------------

def test_follow_merges_goes_to_the_survivor_and_never_round_a_loop():
    chain = {5: 3, 3: 1}
    assert follow_merges(5, chain.get) == 1
    assert follow_merges(1, chain.get) == 1
    assert follow_merges(7, {7: 8, 8: 7}.get) == 8  # a damaged record: one round, no more
    long = {n: n + 1 for n in range(100)}
    assert follow_merges(0, long.get) == 5  # MERGE_HOPS


def test_refusals_are_one_line_and_name_the_way():
    assert refusal(2, 2, None, None) == "cannot merge ticket #2 into itself"
    assert refusal(1, 9, None, False) == "no ticket #9"
    assert refusal(9, 2, False, None) == "no ticket #9"
    assert refusal(1, 2, None, 4) == "ticket #2 was merged into #4 already"
    assert refusal(1, 2, 3, None) == "ticket #1 was merged into #3; merge into #3 instead"
    assert refusal(1, 2, None, None) == ""


@pytest.mark.parametrize(("survivor", "merged", "expected"), [
    ("pending", "open", "open"), ("resolved", "new", "open"), ("closed", "open", "open"),
    ("pending", "pending", None), ("new", "open", None), ("open", "resolved", None),
])
def test_an_open_request_reopens_a_survivor_waiting_on_the_requester(survivor, merged,
                                                                     expected):
    assert survivor_status(survivor, merged) == expected


def test_merge_command_takes_a_ticket_number_and_comes_last():
    parsed = commands.parse("#merge 12\n\nSame printer as Jane's.")
    assert [(c.name, c.argument) for c in parsed.commands] == [("merge", "12")]
    assert parsed.text == "Same printer as Jane's." and not parsed.error
    assert not commands.parse("#merge #12").error
    assert commands.parse("#merge twelve").error == "#merge twelve: #merge needs a ticket number"
    assert commands.parse("#merge").error == "#merge: #merge needs a ticket number"
    assert commands.parse("#merge 3\n#resolve").error.startswith(
        "#resolve: #merge must be the last command")
    assert not commands.parse("#take\n#merge 3").error


# The merge, on the database ---------------------------------------------------------

def _two_requests(desk) -> None:
    desk.send(mail(sender=JANE, subject="Printer jam in room 12", message_id="<r1@x.test>"))
    desk.send(mail(sender=BOB, subject="Printer room 12 jams again", message_id="<r2@x.test>",
                   headers="Cc: carol@school.test\n", body="Paper stuck again."))


def _merge(desk, survivor: int, merged: int, actor: str = "cli:tester") -> None:
    with transaction(desk.db) as tx:
        merge(tx, desk.pipeline.config, survivor, merged, actor, NOW)


def _ticket(desk, number: int) -> Ticket:
    [ticket] = desk.rows(Ticket, Ticket.id == number)
    return ticket


def test_merge_moves_messages_and_people_and_leaves_history(make_desk):
    desk = make_desk(TRUST)
    _two_requests(desk)
    with transaction(desk.db) as tx:  # B waits on Bob; its jobs must go
        bob_ticket = tx.get(Ticket, 2)
        set_status(tx, desk.pipeline.config, bob_ticket, "pending", "tech1@school.test", NOW)
    _merge(desk, 1, 2)
    survivor, merged = _ticket(desk, 1), _ticket(desk, 2)
    assert (merged.status, merged.merged_into_id) == ("closed", 1)
    assert survivor.status == "new" and survivor.merged_into_id is None
    # Every message of #2 (Bob's request, his ack, the staff notifications) is on #1.
    assert desk.rows(Message, Message.ticket_id == 2) == []
    moved = desk.rows(Message, Message.message_id == "<r2@x.test>")
    assert [m.ticket_id for m in moved] == [1]
    people = {p.person_id for p in desk.rows(Participant, Participant.ticket_id == 1)}
    with desk.db.sessions() as session:
        addresses = {session.get(Ticket, 2).requester.address,
                     *(p.person.address for p in session.get(Ticket, 1).participants)}
    assert len(people) == 2
    assert addresses == {"teacher2@school.test", "carol@school.test"}
    events = [(e.ticket_id, e.action, e.detail) for e in desk.rows(TicketEvent)
              if e.action == "merged"]
    assert events == [(2, "merged", "merged into #1"), (1, "merged", "#2 merged in")]
    assert desk.rows(Job, Job.ticket_id == 2, Job.cancelled_at.is_(None),
                     Job.done_at.is_(None)) == []
    # Bob, and only Bob, is told where his request went, in his thread of #2.
    [notice] = [r for r in desk.rows(Outbox) if r.created_at == NOW and r.kind == "status"]
    sent = email.message_from_bytes(mail_of(notice), policy=email.policy.default)
    assert notice.ticket_id == 1 and notice.recipients == ["teacher2@school.test"]
    assert sent["Subject"].startswith("[#1] Your request #2 continues as #1")
    [bob_ack] = [m for m in desk.rows(Message, Message.kind == "ack")
                 if m.to == ["teacher2@school.test"]]
    assert sent["In-Reply-To"] == bob_ack.message_id
    assert "Printer room 12 jams again" in sent.get_body(("plain",)).get_content()


def test_mail_threaded_on_the_merged_ticket_lands_on_the_survivor(make_desk):
    desk = make_desk(TRUST)
    _two_requests(desk)
    [bob_ack] = [m for m in desk.rows(Message, Message.kind == "ack")
                 if m.to == ["teacher2@school.test"]]
    _merge(desk, 1, 2)
    by_id = desk.send(mail(sender=BOB, subject="Re: [#2] Printer room 12 jams again",
                           headers=f"In-Reply-To: {bob_ack.message_id}\n", body="Still."))
    by_tag = desk.send(mail(sender=BOB, subject="Re: [#2] Printer", body="And now?"))
    by_plus = desk.send(mail(sender="carol@school.test", subject="Printer",
                             to="help+2@school.test", body="Me too."))
    assert [(r.outcome.action, r.outcome.ticket_id) for r in (by_id, by_tag, by_plus)] \
        == [("reply", 1)] * 3
    # A stranger who knows the number gets a ticket of their own.
    stranger = desk.send(mail(sender="eve@outside.test", subject="Re: [#2] Printer"))
    assert (stranger.outcome.action, stranger.outcome.ticket_id) == ("new_ticket", 3)
    assert desk.rows(Message, Message.ticket_id == 2) == []


def test_refused_merges_change_nothing(make_desk):
    desk = make_desk(TRUST)
    _two_requests(desk)
    for survivor, merged, error in ((2, 2, "into itself"), (1, 7, "no ticket #7"),
                                    (7, 1, "no ticket #7")):
        with pytest.raises(MergeError, match=error):
            _merge(desk, survivor, merged)
    _merge(desk, 1, 2)
    with pytest.raises(MergeError, match="#2 was merged into #1 already"):
        _merge(desk, 1, 2)
    with pytest.raises(MergeError, match="merge into #1 instead"):
        _merge(desk, 2, 1)  # a loop would be made: refused
    assert [(t.id, t.merged_into_id) for t in desk.rows(Ticket)] == [(1, None), (2, 1)]
    assert len([e for e in desk.rows(TicketEvent) if e.action == "merged"]) == 2


def test_staff_who_wrote_the_merged_ticket_do_not_become_participants(make_desk):
    # A technician who opened a ticket for a teacher sees every ticket already; as a
    # participant they would be sent the survivor's public mail too.
    desk = make_desk(TRUST)
    _two_requests(desk)
    desk.send(mail(sender="tech1@school.test", subject="Printer 12 (for Jane)"))
    _merge(desk, 1, 3)
    assert _ticket(desk, 3).merged_into_id == 1
    assert desk.rows(Participant, Participant.ticket_id == 1) == []


def test_a_held_request_is_not_merged_until_released(make_desk):
    # Its sender is unproven: merged, they would be sent the survivor's conversation.
    desk = make_desk(TRUST)
    _two_requests(desk)
    with transaction(desk.db) as tx:
        tx.get(Ticket, 2).held = "dmarc=fail"
    with pytest.raises(MergeError, match=r"#2 is held \(unverified sender\): #release"):
        _merge(desk, 1, 2)
    assert _ticket(desk, 2).merged_into_id is None
    assert desk.rows(Participant, Participant.ticket_id == 1) == []


def test_merge_by_mail_from_staff(make_desk):
    desk = make_desk(TRUST)
    _two_requests(desk)
    wrong = desk.send(mail(sender="tech1@school.test", subject="Re: [#2] Printer",
                           body="#merge 9"))
    assert wrong.outcome.detail == "command error: #merge 9: no ticket #9"
    itself = desk.send(mail(sender="tech1@school.test", subject="Re: [#2] Printer",
                            body="#merge 2"))
    assert "into itself" in itself.outcome.detail
    assert _ticket(desk, 2).merged_into_id is None
    errors = [r for r in desk.rows(Outbox) if r.recipients == ["tech1@school.test"]
              and b"#merge" in mail_of(r)]
    assert len(errors) == 2
    done = desk.send(mail(sender="tech1@school.test", subject="Re: [#2] Printer",
                          body="#merge 1\n\nBob, Jane reported the same; we are on it."))
    assert (done.outcome.action, done.outcome.ticket_id) == ("staff_reply", 1)
    assert _ticket(desk, 2).merged_into_id == 1
    # The answer is kept and relayed on the survivor, to Jane, Bob and Carol.
    [answer] = desk.rows(Message, Message.kind == "staff_reply")
    assert answer.ticket_id == 1
    [relay] = [r for r in desk.rows(Outbox) if r.kind == "relay"]
    assert relay.ticket_id == 1 and sorted(relay.recipients) == [
        "carol@school.test", "teacher1@school.test", "teacher2@school.test"]


def test_two_merges_the_opposite_way_at_once_make_no_loop(make_desk):
    # #1 into #2 asked while #2 into #1 is being done: the second waits for the first
    # (PostgreSQL: the rows' locks; SQLite: the write lock) and then sees its result.
    desk = make_desk(TRUST)
    _two_requests(desk)
    second: list[str] = []

    def merge_the_other_way() -> None:
        try:
            _merge(desk, 2, 1)
            second.append("merged")
        except MergeError as error:
            second.append(str(error))

    with transaction(desk.db) as tx:
        merge(tx, desk.pipeline.config, 1, 2, "tech1@school.test", NOW)
        other = threading.Thread(target=merge_the_other_way)
        other.start()
        other.join(0.5)  # (it waits meanwhile; the outcome below is what is checked)
    other.join(30)
    assert second == ["ticket #2 was merged into #1; merge into #1 instead"]
    assert [(t.id, t.merged_into_id) for t in desk.rows(Ticket)] == [(1, None), (2, 1)]


# After the merge: news of the merged ticket's own mail -------------------------------

SURVEY_SITE = TRUST + '[survey]\nbase_url = "http://127.0.0.1:9/survey"\nsecret = "s3cret"\n'


def _surveyed_then_merged(desk) -> str:
    """Bob's #2 resolved and surveyed, then merged into Jane's #1; the survey's token."""
    _two_requests(desk)
    config = desk.pipeline.config
    with transaction(desk.db) as tx:
        bob_ticket = tx.get(Ticket, 2)
        set_status(tx, config, bob_ticket, "resolved", "tech1@school.test", NOW)
        record = survey_due.start(tx, bob_ticket, NOW)
        notices.survey(tx, config, bob_ticket, record, NOW)
        token = record.token
    _merge(desk, 1, 2)
    return token


def _survey_events(desk) -> list[tuple[int, str, str]]:
    return [(e.ticket_id, e.actor, e.detail)
            for e in desk.rows(TicketEvent, TicketEvent.action == "survey_answer")]


def test_a_mailed_survey_answer_for_the_merged_ticket_is_kept_on_the_survivor(make_desk):
    desk = make_desk(TRUST)
    token = _surveyed_then_merged(desk)
    answer = desk.send(mail(sender=BOB, subject="Re: [#2] How did we do?",
                            to=surveys.reply_address("help@school.test", token),
                            body="5 - quick fix"))
    assert (answer.outcome.action, answer.outcome.ticket_id) == ("recorded", 1)
    # The rating is #2's survey's, the rating of #2's fix (reports count it by its
    # sending); the answer and its event are on #1, where staff look.
    [survey] = desk.rows(Survey)
    assert (survey.ticket_id, survey.rating, survey.comment) == (2, 5, "quick fix")
    [response] = desk.rows(Message, Message.kind == "survey_response")
    assert response.ticket_id == 1
    assert _survey_events(desk) == [(1, "teacher2@school.test", "rating 5, the survey of #2")]
    # Bob, who was asked, is thanked, on #1; Jane's request is not reopened.
    [thanks] = [r for r in desk.rows(Outbox) if b"Thank you for your rating" in mail_of(r)]
    assert (thanks.ticket_id, thanks.recipients) == (1, ["teacher2@school.test"])
    assert _ticket(desk, 1).status == "new"


def test_a_survey_answer_on_the_web_for_the_merged_ticket_is_kept_on_the_survivor(make_desk):
    desk = make_desk(SURVEY_SITE)
    token = _surveyed_then_merged(desk)
    site = SurveySite(App(desk.pipeline.config, desk.db, lambda: NOW))
    view = site._record(token, 4, "Took a day.", NOW)
    assert (view["id"], view["rating"]) == (2, 4)  # the page names the ticket asked about
    [survey] = desk.rows(Survey)
    assert (survey.ticket_id, survey.rating, survey.answered_via) == (2, 4, "web")
    assert _survey_events(desk) == [
        (1, "teacher2@school.test", "rating 4, the survey of #2 (web)")]
    [thanks] = [r for r in desk.rows(Outbox) if b"Thank you for your rating" in mail_of(r)]
    assert (thanks.ticket_id, thanks.recipients) == (1, ["teacher2@school.test"])


def test_a_bounce_of_mail_sent_on_the_merged_ticket_is_noted_on_the_survivor(make_desk):
    desk = make_desk(TRUST)
    _two_requests(desk)
    [bob_ack] = [r for r in desk.rows(Outbox, Outbox.kind == "ack")
                 if r.recipients == ["teacher2@school.test"]]
    _merge(desk, 1, 2)
    # Through the signed return path of Bob's acknowledgement, sent on #2.
    result = desk.send(dsn(bob_ack.mail_from, ["teacher2@school.test"], "Subject: x"))
    assert (result.outcome.action, result.outcome.ticket_id) == ("recorded", 1)
    [bounce] = desk.rows(Message, Message.kind == "bounce")
    assert bounce.ticket_id == 1
    assert [e.ticket_id for e in desk.rows(TicketEvent, TicketEvent.action == "bounced")] \
        == [1]
    [returned] = desk.rows(Outbox, Outbox.id == bob_ack.id)
    assert (returned.status, returned.ticket_id) == ("bounced", 2)  # history stays B's
    assert [(s.address, s.reason) for s in desk.rows(Suppression)] == [
        ("teacher2@school.test", "bounce on #1")]
