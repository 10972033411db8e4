"""Timed work and surveys on a real database, with the clock moved by hand."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Job, Outbox, Survey, Ticket, TicketEvent
from mailhelp.db.session import Database
from mailhelp.desk.lifecycle import run_due
from mailhelp.desk.surveys import read_answer, sign, verify
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.helpers import desk_config, mail_of

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Desk:
    def __init__(self, tmp_path, database_url, survey="after_auto_resolve = true"):
        self.config = desk_config(tmp_path, database_url, "[survey]\n" + survey)
        self.db = Database(database_url)
        upgrade(self.db)
        self.now = T0
        self.pipeline = Pipeline(self.config, self.db, lambda: self.now)

    def at(self, delta: timedelta) -> Desk:
        self.now = T0 + delta
        return self

    def mail(self, raw: str) -> None:
        [result] = self.pipeline.accept([Arrival(raw.encode(), "t")])
        assert not result.failed, result.error

    def run(self) -> int:
        return run_due(self.db, self.config, lambda: self.now)

    def ticket(self) -> Ticket:
        with self.db.sessions() as session:
            return session.get(Ticket, 1)

    def outbox(self, kind: str) -> list[Outbox]:
        with self.db.sessions() as session:
            return list(session.scalars(select(Outbox).where(Outbox.kind == kind)
                                        .order_by(Outbox.id)))

    def survey(self) -> Survey | None:
        with self.db.sessions() as session:
            return session.scalar(select(Survey))


@pytest.fixture
def desk(tmp_path, database_url):
    desk = Desk(tmp_path, database_url)
    desk.mail("From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Wifi\n"
              "Message-ID: <r1@x>\n\nNo wifi in room 3.\n")
    desk.at(timedelta(minutes=5)).mail(
        "From: Sam <tech1@school.test>\nTo: help@school.test\nSubject: Re: [#1] Wifi\n"
        "Message-ID: <s1@x>\n\nPlease restart the laptop and tell me.\n")
    yield desk
    desk.db.dispose()


def test_pending_reminder_auto_resolve_survey_close(desk):
    assert desk.ticket().status == "pending"
    assert desk.at(timedelta(days=3)).run() == 0  # not quite due
    assert desk.at(timedelta(days=3, minutes=6)).run() == 1
    assert len(desk.outbox("reminder")) == 1
    assert desk.at(timedelta(days=7, minutes=6)).run() == 1
    ticket = desk.ticket()
    assert ticket.status == "resolved" and ticket.resolved_by == "system:auto-resolve"
    [notice] = desk.outbox("status")
    assert b"did not hear back" in mail_of(notice)
    assert desk.at(timedelta(days=7, hours=1, minutes=6)).run() == 1
    [survey_mail] = desk.outbox("survey")
    assert desk.survey() is not None
    assert desk.at(timedelta(days=10, hours=1, minutes=6)).run() == 1
    assert desk.ticket().status == "closed"
    assert desk.at(timedelta(days=30)).run() == 0
    assert len(desk.outbox("reminder")) == 1 and len(desk.outbox("survey")) == 1
    with desk.db.sessions() as session:
        actors = [e.actor for e in session.scalars(select(TicketEvent).where(
            TicketEvent.action == "status"))]
    assert actors == ["tech1@school.test", "system:auto-resolve", "system:auto-close"]


def test_a_requester_answer_cancels_the_reminder(desk):
    desk.at(timedelta(days=1)).mail(
        "From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Re: [#1] Wifi\n"
        "Message-ID: <r2@x>\n\nRestarted, still no wifi.\n")
    assert desk.ticket().status == "open"
    assert desk.at(timedelta(days=30)).run() == 0
    assert desk.outbox("reminder") == []


def test_the_mailto_link_answer_is_recorded_without_reopening(desk):
    desk.at(timedelta(days=8)).run()
    desk.at(timedelta(days=9)).run()
    [survey_mail] = desk.outbox("survey")
    mail = email.message_from_bytes(mail_of(survey_mail), policy=email.policy.default)
    link = next(line.split(": ", 1)[1] for line in
                mail.get_body(("plain",)).get_content().splitlines() if "4 - Good: " in line)
    parts = urlparse(link)
    query = parse_qs(parts.query)
    answer = (f"From: Jane <teacher1@school.test>\nTo: {unquote(parts.path)}\n"
              f"Subject: {query['subject'][0]}\nMessage-ID: <ans@x>\n\n{query['body'][0]}")
    desk.at(timedelta(days=9, hours=1)).mail(answer)
    survey = desk.survey()
    assert (survey.rating, survey.comment) == (4, "")
    assert desk.ticket().status == "resolved"
    with desk.db.sessions() as session:
        assert session.scalar(select(Ticket).where(Ticket.id == 2)) is None
    assert len(desk.outbox("status")) == 2  # the resolved notice and the thank-you


def test_a_forged_answer_is_refused(desk):
    desk.at(timedelta(days=8)).run()
    desk.at(timedelta(days=9)).run()
    token = desk.survey().token
    desk.mail(f"From: mallory@evil.example\nTo: help+survey-{token}@school.test\n"
              f"Subject: 1\nMessage-ID: <forged@x>\n\n1 - terrible\n")
    assert desk.survey().rating is None


def test_survey_once_per_interval_per_requester(tmp_path, database_url):
    desk = Desk(tmp_path, database_url)
    for n in (1, 2):
        desk.at(timedelta(minutes=n)).mail(
            f"From: teacher1@school.test\nTo: help@school.test\nSubject: Problem {n}\n"
            f"Message-ID: <p{n}@x>\n\nHelp.\n")
        desk.mail(f"From: tech1@school.test\nTo: help@school.test\nSubject: Re: [#{n}] x\n"
                  f"Message-ID: <f{n}@x>\n\n#resolve\nFixed.\n")
    desk.at(timedelta(hours=2)).run()
    assert len(desk.outbox("survey")) == 1
    with desk.db.sessions() as session:
        results = [j.result for j in session.scalars(select(Job).where(Job.kind == "survey"))]
    assert results == ["sent", "skipped: requester was surveyed on #1 lately"]
    desk.db.dispose()


def test_disabled_surveys_send_nothing(tmp_path, database_url):
    desk = Desk(tmp_path, database_url, survey="enabled = false")
    desk.mail("From: teacher1@school.test\nTo: help@school.test\nSubject: x\n"
              "Message-ID: <d1@x>\n\nHelp.\n")
    desk.mail("From: tech1@school.test\nTo: help@school.test\nSubject: Re: [#1] x\n"
              "Message-ID: <d2@x>\n\n#resolve\n")
    desk.at(timedelta(days=30)).run()
    assert desk.outbox("survey") == []
    desk.db.dispose()


@pytest.mark.parametrize(("text", "rating", "comment"), [
    ("4 - quick fix, thanks", 4, "quick fix, thanks"),
    ("Great", 5, ""),
    ("okay, but slow", 3, "but slow"),
    ("2. took a week", 2, "took a week"),
    ("Rating: 3 - Okay\n\nComment (optional): the printer still squeaks\n", 3,
     "the printer still squeaks"),
])
def test_read_answer(text, rating, comment):
    answer = read_answer(text)
    assert (answer.rating, answer.comment) == (rating, comment)


@pytest.mark.parametrize("text", ["It is broken again", "10 out of 10", "3.5", ""])
def test_not_an_answer(text):
    assert read_answer(text) is None


def test_signed_links():
    expires = T0 + timedelta(days=30)
    signed = sign("s3cret", "tok", 4, expires)
    assert verify("s3cret", signed, T0) == ("tok", 4)
    assert verify("other", signed, T0) is None
    assert verify("s3cret", signed, expires + timedelta(seconds=1)) is None
    assert verify("s3cret", signed.replace(".4.", ".5."), T0) is None
    assert verify("s3cret", "garbage", T0) is None
