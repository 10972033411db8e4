"""Loops, bounces, spam, forged staff mail, oversized mail: on a real database."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Message, Outbox, Suppression, Ticket, TicketEvent
from mailhelp.db.session import Database
from mailhelp.mail.authenticity import FAILED, UNKNOWN, VERIFIED, check
from mailhelp.mail.bounces import failed_recipients
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.corpus import CORPUS, corpus_rows, skip_without_corpus
from tests.helpers import desk_config, mail_of

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@pytest.fixture
def make_pipeline(tmp_path, database_url):
    made = []

    def make(extra: str = "") -> Pipeline:
        config = desk_config(tmp_path, database_url, extra)
        db = Database(database_url)
        upgrade(db)
        clock = {"now": NOW}
        pipeline = Pipeline(config, db, lambda: clock["now"])
        pipeline.clock_state = clock
        made.append(db)
        return pipeline

    yield make
    for db in made:
        db.dispose()


def mail(sender="Jane <teacher1@school.test>", subject="Printer jam", message_id=None,
         extra="", body="The printer jams.") -> bytes:
    message_id = message_id or f"<{abs(hash((sender, subject, extra, body)))}@x.test>"
    return (f"From: {sender}\nTo: help@school.test\nSubject: {subject}\n"
            f"Message-ID: {message_id}\n{extra}\n{body}\n").encode()


def rows(pipeline, model, *where):
    with pipeline.db.sessions() as session:
        return list(session.scalars(select(model).where(*where).order_by(model.id)))


# Rate limits ------------------------------------------------------------------------

def test_acknowledgements_to_one_address_are_rate_limited(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 3\n")
    for n in range(6):
        pipeline.accept([Arrival(mail(subject=f"Problem {n}"), "t")])
    acks = rows(pipeline, Outbox, Outbox.kind == "ack")
    assert [a.status for a in acks] == ["queued"] * 3 + ["suppressed"] * 3
    assert "rate limit" in acks[-1].last_error
    assert len(rows(pipeline, Ticket)) == 6  # the mail is recorded, just not sent
    pipeline.clock_state["now"] = NOW + timedelta(hours=1, seconds=1)
    pipeline.accept([Arrival(mail(subject="An hour later"), "t")])
    assert rows(pipeline, Outbox, Outbox.kind == "ack")[-1].status == "queued"


def test_rate_limits_and_suppressions_hold_within_a_batch(make_pipeline):
    # A batch is applied in one transaction with its senders' counts read up front: they
    # must still count the acknowledgements of the batch's earlier messages.
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 3\n")
    pipeline.accept([Arrival(mail(subject="Before the batch"), "t")])
    with pipeline.db.sessions() as session, session.begin():
        session.add(Suppression(address="bounced@school.test", reason="5.1.1",
                                until=NOW + timedelta(days=1), created_at=NOW))
    pipeline.accept([Arrival(mail(subject=f"Problem {n}"), "t") for n in range(4)]
                    + [Arrival(mail(sender="bounced@school.test", subject="Hello"), "t")])
    acks = rows(pipeline, Outbox, Outbox.kind == "ack")
    assert [(a.to_address, a.status) for a in acks] == [
        *[("teacher1@school.test", "queued")] * 3,
        *[("teacher1@school.test", "suppressed")] * 2,
        ("bounced@school.test", "suppressed")]
    assert "bounced lately" in acks[-1].last_error


def test_staff_answers_are_never_rate_limited(make_pipeline):
    pipeline = make_pipeline("[limits]\nauto_mails_per_address = 1\nauto_mails_per_ticket = 2\n")
    pipeline.accept([Arrival(mail(), "t")])
    for n in range(4):
        pipeline.accept([Arrival(mail(sender="tech1@school.test", subject="Re: [#1] Printer",
                                      body=f"Answer {n}"), "t")])
    relays = rows(pipeline, Outbox, Outbox.kind == "relay")
    assert [r.status for r in relays] == ["queued"] * 4


# Bounces ----------------------------------------------------------------------------

def dsn_for(outbox_row: Outbox, recipient: str, status: str = "5.1.1") -> bytes:
    returned = email.message_from_bytes(mail_of(outbox_row), policy=email.policy.default)
    return f"""From: MAILER-DAEMON@mx.school.test
To: help@school.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{outbox_row.id}@mx.school.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.school.test

Final-Recipient: rfc822; {recipient}
Action: failed
Status: {status}
Diagnostic-Code: smtp; 550 {status} User unknown

--B
Content-Type: text/rfc822-headers

From: {returned['From']}
To: {returned['To']}
Subject: {returned['Subject']}
Message-ID: {returned['Message-ID']}

--B--
""".encode()


def test_a_bounce_of_an_ack_is_recorded_and_the_address_rests(make_pipeline):
    pipeline = make_pipeline()
    pipeline.accept([Arrival(mail(sender="gone@school.test"), "t")])
    [ack] = rows(pipeline, Outbox, Outbox.kind == "ack")
    [result] = pipeline.accept([Arrival(dsn_for(ack, "gone@school.test"), "t")])
    assert result.outcome.action == "recorded" and result.outcome.ticket_id == 1
    assert rows(pipeline, Outbox, Outbox.id == ack.id)[0].status == "bounced"
    assert [m.kind for m in rows(pipeline, Message, Message.direction == "in")] == \
        ["request", "bounce"]
    [suppression] = rows(pipeline, Suppression)
    assert suppression.address == "gone@school.test"
    assert suppression.until == NOW + timedelta(days=1)
    assert any(e.action == "bounced" for e in rows(pipeline, TicketEvent))
    assert len(rows(pipeline, Ticket)) == 1  # no ticket from the bounce
    # No automatic mail to that address for a while.
    pipeline.accept([Arrival(mail(sender="gone@school.test", subject="Another"), "t")])
    assert rows(pipeline, Outbox, Outbox.kind == "ack")[-1].status == "suppressed"


def test_a_bounce_of_nothing_we_sent_is_ignored(make_pipeline):
    pipeline = make_pipeline()
    raw = (CORPUS / "sisimai__set-of-emails/bsd/lhost-postfix-01.eml")
    if not raw.exists():
        skip_without_corpus()
    [result] = pipeline.accept([Arrival(raw.read_bytes(), "t")])
    assert result.state == "ignored" and rows(pipeline, Ticket) == []


def test_bounce_reports_from_real_mtas_name_the_failed_recipient():
    bounces = [r for r in corpus_rows() if "lhost-postfix" in r["path"]
               or "lhost-exim" in r["path"] or "lhost-sendmail" in r["path"]]
    if not bounces:
        skip_without_corpus()
    named = sum(bool(failed_recipients((CORPUS / r["path"]).read_bytes())[0])
                for r in bounces)
    assert named / len(bounces) > 0.8


# Spam -------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", ["X-Spam-Flag: YES\n", "X-Spam-Score: 7.5\n",
                                   "X-Spam-Status: Yes, score=9.1 required=5.0\n"])
def test_flagged_spam_gets_no_ticket(make_pipeline, extra):
    pipeline = make_pipeline()
    [result] = pipeline.accept([Arrival(mail(extra=extra), "t")])
    assert result.state == "spam" and rows(pipeline, Ticket) == []


def test_a_low_spam_score_is_a_ticket(make_pipeline):
    pipeline = make_pipeline()
    [result] = pipeline.accept([Arrival(mail(extra="X-Spam-Score: 1.2\n"), "t")])
    assert result.state == "processed"


# Staff authenticity -------------------------------------------------------------------

AUTH_PASS = ("Authentication-Results: mx.school.test; dkim=pass header.d=school.test; "
             "spf=pass smtp.mailfrom=tech1@school.test; dmarc=pass header.from=school.test\n")
AUTH_FAIL = ("Authentication-Results: mx.school.test; dkim=none; spf=fail "
             "smtp.mailfrom=evil.example; dmarc=fail header.from=school.test\n")
AUTH_OTHER = ("Authentication-Results: mx.evil.example; dkim=pass header.d=school.test; "
              "dmarc=pass header.from=school.test\n")


@pytest.mark.parametrize(("headers", "status"), [
    (AUTH_PASS, VERIFIED), (AUTH_FAIL, FAILED), (AUTH_OTHER, UNKNOWN), ("", UNKNOWN),
    ("Authentication-Results: spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=school.test\n",
     UNKNOWN),
])
def test_authenticity(headers, status):
    raw = mail(sender="tech1@school.test", extra=headers)
    assert check(raw, "tech1@school.test", ("mx.school.test",)).status == status


def test_forged_staff_command_is_not_acted_on(make_pipeline):
    pipeline = make_pipeline('[authentication]\ntrusted_authserv_ids = ["mx.school.test"]\n')
    pipeline.accept([Arrival(mail(), "t")])
    [result] = pipeline.accept([Arrival(mail(sender="tech1@school.test",
                                             subject="Re: [#1] Printer jam", extra=AUTH_FAIL,
                                             body="#resolve\nDone."), "t")])
    assert "unverified" in result.outcome.detail
    [ticket] = rows(pipeline, Ticket)
    assert ticket.status == "new"
    assert rows(pipeline, Outbox, Outbox.kind == "relay") == []
    note = rows(pipeline, Message, Message.kind == "note")[0]
    assert note.text.startswith("[unverified sender:")
    [alert] = [r for r in rows(pipeline, Outbox) if b"Not acted on" in mail_of(r)]
    assert alert.recipients == ["tech1@school.test"]
    # The real staff member, verified, is acted on.
    pipeline.accept([Arrival(mail(sender="tech1@school.test", subject="Re: [#1] Printer jam",
                                  extra=AUTH_PASS, body="#resolve\nDone."), "t")])
    assert rows(pipeline, Ticket)[0].status == "resolved"


def test_unauthenticated_staff_mail_can_be_refused_by_policy(make_pipeline):
    pipeline = make_pipeline('[authentication]\nunauthenticated_staff = "note"\n')
    pipeline.accept([Arrival(mail(), "t")])
    pipeline.accept([Arrival(mail(sender="tech1@school.test", subject="Re: [#1] Printer jam",
                                  body="On my way."), "t")])
    assert rows(pipeline, Outbox, Outbox.kind == "relay") == []


# Size limit -----------------------------------------------------------------------------

def test_large_attachments_are_dropped_with_a_note(make_pipeline):
    pipeline = make_pipeline('[limits]\nmax_message_size = "100KB"\n'
                             'max_attachment_size = "50KB"\n')
    message = email.message.EmailMessage()
    message["From"] = "teacher1@school.test"
    message["To"] = "help@school.test"
    message["Subject"] = "Video of the problem"
    message["Message-ID"] = "<big@x.test>"
    message.set_content("See the video.")
    message.add_attachment(b"v" * 200_000, maintype="video", subtype="mp4",
                           filename="problem.mp4")
    message.add_attachment(b"small", maintype="text", subtype="plain", filename="log.txt")
    [result] = pipeline.accept([Arrival(message.as_bytes(), "t")])
    assert result.outcome.action == "new_ticket"
    request = rows(pipeline, Message, Message.kind == "request")[0]
    with pipeline.db.sessions() as session:
        names = [a.filename for a in session.get(Message, request.id).attachments]
    assert names == ["log.txt"]
    ack = rows(pipeline, Outbox, Outbox.kind == "ack")[0]
    assert b"too large to keep" in mail_of(ack) and b"problem.mp4" in mail_of(ack)
    note = rows(pipeline, Outbox, Outbox.kind == "notification")[0]
    assert b"Not kept" in mail_of(note)
