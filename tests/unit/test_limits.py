"""The limits hold mail that feeds a loop and nothing else: a teacher's separate requests
are all acknowledged, staff mail is never held, and held mail is shown as such."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Outbox, Ticket, TicketEvent
from mailhelp.db.session import Database
from mailhelp.delivery.loops import alike, normalised
from mailhelp.mail import signing
from mailhelp.service.pipeline import Arrival, Pipeline
from mailhelp.states import OutboxStatus
from mailhelp.web.views import ticket_deliveries, ticket_json, ticket_messages, ticket_text
from tests.helpers import desk_config

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
STAFF = tuple(f"tech{n}@school.test" for n in range(1, 11))
REQUESTS = ["The projector in 12 shows no picture.", "Printer in the library jams.",
            "I forgot my password for the grade book.", "Smartboard pen is missing.",
            "Wifi drops in the gym.", "Can I get a second monitor?",
            "The document camera in 7b is dead.", "Please install GeoGebra on cart 3."]


@pytest.fixture
def make_pipeline(tmp_path, database_url):
    made = []

    def make(extra: str = "", staff: tuple[str, ...] = ("tech1@school.test",)) -> Pipeline:
        db = Database(database_url)
        upgrade(db)
        clock = {"now": NOW}
        pipeline = Pipeline(desk_config(tmp_path, database_url, extra, staff), db,
                            lambda: clock["now"])
        pipeline.clock_state = clock
        made.append(db)
        return pipeline

    yield make
    for db in made:
        db.dispose()


def mail(body: str, subject: str = "Help", n: int = 0, sender="teacher2@school.test",
         extra: str = "") -> Arrival:
    return Arrival((f"From: {sender}\nTo: help@school.test\nSubject: {subject}\n"
                    f"Message-ID: <{abs(hash((subject, body, n)))}.{n}@x.test>\n{extra}\n"
                    f"{body}\n").encode(), "t")


def rows(pipeline, model, *where):
    with pipeline.db.sessions() as session:
        return list(session.scalars(select(model).where(*where).order_by(model.id)))


def test_eight_separate_requests_are_all_acknowledged_and_staff_hear_of_each(make_pipeline):
    pipeline = make_pipeline(staff=STAFF)
    for n, body in enumerate(REQUESTS):
        pipeline.clock_state["now"] = NOW + timedelta(seconds=75 * n)
        pipeline.accept([mail(body, subject=f"Request {n}", n=n)])
    acks = rows(pipeline, Outbox, Outbox.kind == "ack")
    assert [a.status for a in acks] == [OutboxStatus.QUEUED] * 8
    notifications = rows(pipeline, Outbox, Outbox.kind == "notification")
    assert len(notifications) == 8 * len(STAFF)
    assert {n.status for n in notifications} == {OutboxStatus.QUEUED}


def test_staff_follow_ups_notify_every_time(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_ticket = 2\n",
                             staff=("tech1@school.test", "tech2@school.test"))
    pipeline.accept([mail("The printer jams.", subject="Printer")])
    for n in range(4):
        pipeline.accept([mail(f"Still jammed, try {n}: paper tray {n}", subject="Re: [#1] Printer",
                              n=n + 1)])
    notifications = rows(pipeline, Outbox, Outbox.kind == "notification")
    assert len(notifications) == 5 * 2
    assert {n.status for n in notifications} == {OutboxStatus.QUEUED}


def test_the_same_text_again_is_held_past_the_limit_and_noted_once(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 3\n")
    same = "Thank you, your request has been received and will be handled."
    pipeline.accept([mail(same, subject=f"Ticket OTHER-{n} received", n=n) for n in range(3)])
    pipeline.accept([mail(same, subject=f"Ticket OTHER-{n} received", n=n)
                     for n in range(3, 6)])
    acks = rows(pipeline, Outbox, Outbox.kind == "ack")
    assert [a.status for a in acks] == [OutboxStatus.QUEUED] * 3 + [OutboxStatus.SUPPRESSED] * 3
    assert "repeats an earlier message" in acks[-1].last_error
    held_on = {a.ticket_id for a in acks if a.status == OutboxStatus.SUPPRESSED}
    events = rows(pipeline, TicketEvent, TicketEvent.action == "mail_suppressed")
    assert {e.ticket_id for e in events} == held_on
    notes = [r for r in rows(pipeline, Outbox, Outbox.kind == "notification")
             if "Not sent" in r.raw.decode()]
    assert sorted(r.ticket_id for r in notes) == sorted(held_on)  # one per ticket
    assert {r.status for r in notes} == {OutboxStatus.QUEUED}


def test_mail_answering_no_message_is_not_held_by_the_limits(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 1\nauto_mails_per_ticket = 1\n")
    pipeline.accept([mail("Printer jams", subject="Printer")])
    with pipeline.db.sessions() as session, session.begin():
        from mailhelp.delivery.outbox import Draft, enqueue
        from mailhelp.desk.notices import variables
        from mailhelp.mail.parse import Address

        ticket = session.get(Ticket, 1)
        for _ in range(2):
            enqueue(session, pipeline.config, ticket, Draft(
                kind="status", template="resolved", to=(Address("", "teacher2@school.test"),),
                variables=variables(pipeline.config, ticket, automatic=True)), NOW)
    # No message answered, so no sign of a loop: both go out.
    statuses = [r.status for r in rows(pipeline, Outbox, Outbox.kind == "status")]
    assert statuses == [OutboxStatus.QUEUED] * 2


def test_mail_answering_the_desks_own_mail_is_held_past_the_limit(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 1\n")
    pipeline.accept([mail("Printer jams", subject="Printer")])
    with pipeline.db.sessions() as session, session.begin():
        # Mail of ours that is on no ticket here (sent by a desk since restored, say):
        # answering it starts a new request.
        ours = signing.message_id(signing.desk_key(session), 99, "school.test")
    pipeline.accept([mail("We got your mail.", subject="Case 1 opened", n=1,
                          extra=f"In-Reply-To: {ours}")])
    acks = rows(pipeline, Outbox, Outbox.kind == "ack")
    assert acks[-1].status == OutboxStatus.SUPPRESSED, acks[-1].last_error
    assert "answers the desk's own" in acks[-1].last_error


def test_volume_beyond_a_person_is_held_whatever_it_looks_like(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 1\n"
                             "auto_mails_per_address_cap = 4\n")
    pipeline.accept([mail(body, subject=f"R{n}", n=n) for n, body in enumerate(REQUESTS[:6])])
    acks = rows(pipeline, Outbox, Outbox.kind == "ack")
    assert [a.status for a in acks] == [OutboxStatus.QUEUED] * 4 + [OutboxStatus.SUPPRESSED] * 2
    assert "far more than a person writes" in acks[-1].last_error


def test_a_held_mail_is_shown_as_held(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 1\n"
                             "auto_mails_per_address_cap = 1\n")
    pipeline.accept([mail("one", subject="One"), mail("two", subject="Two", n=1)])
    with pipeline.db.sessions() as session:
        ticket = session.get(Ticket, 2)
        messages = ticket_messages(session, 2)
        deliveries = ticket_deliveries(session, 2)
        shown = ticket_json(ticket, messages, deliveries)["messages"]
        text = ticket_text(ticket, messages, deliveries)
    [ack] = [m for m in shown if m["kind"] == "ack"]
    assert ack["outbox_status"] == "suppressed"
    assert "far more than a person writes" in ack["outbox_reason"]
    assert [m["outbox_status"] for m in shown if m["direction"] == "in"] == [None]
    assert "-> ack teacher2@school.test" in text and "[SUPPRESSED: rate limit:" in text


def test_the_cap_is_never_below_the_limit_for_loops(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 6\n"
                             "auto_mails_per_address_cap = 2\n")
    pipeline.accept([mail(body, subject=f"R{n}", n=n) for n, body in enumerate(REQUESTS)])
    acks = rows(pipeline, Outbox, Outbox.kind == "ack")
    assert [a.status for a in acks] == [OutboxStatus.QUEUED] * 6 + [OutboxStatus.SUPPRESSED] * 2


def test_near_identical_texts():
    assert alike(normalised("Ticket 4711 received.\n Thanks"),
                 normalised("Ticket 4712 received. Thanks"))
    assert not alike(normalised("The printer jams."), normalised("Wifi drops in the gym."))
    assert alike("", "")
