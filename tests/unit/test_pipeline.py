"""Store -> parse -> apply, on a real database (SQLite, or PostgreSQL in CI's second run)."""

from __future__ import annotations

import email
import email.message
import email.policy
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import (
    Job,
    Message,
    Outbox,
    Person,
    RawMessage,
    RawMessageBody,
    Ticket,
    TicketEvent,
)
from mailhelp.db.session import Database
from mailhelp.db.storage import AttachmentStore
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.helpers import desk_config, mail_of

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@pytest.fixture
def pipeline(tmp_path, database_url) -> Pipeline:
    config = desk_config(tmp_path, database_url,
                         staff=("tech1@school.test", "tech2@school.test"))
    db = Database(database_url)
    upgrade(db)
    yield Pipeline(config, db, lambda: NOW)
    db.dispose()


def mail(sender="Jane Teacher <teacher1@school.test>", subject="Printer jam", cc="",
         message_id="<m1@school.test>", extra="") -> bytes:
    head = f"From: {sender}\nTo: help@school.test\nSubject: {subject}\n"
    head += f"Message-ID: {message_id}\nDate: Mon, 23 Nov 2026 08:00:00 +0000\n"
    if cc:
        head += f"Cc: {cc}\n"
    return (head + extra + "\nThe printer in the staff room jams on every page.\n").encode()


def count(pipeline, model, *where) -> int:
    with pipeline.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def outbox(pipeline) -> list[Outbox]:
    with pipeline.db.sessions() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def test_new_message_makes_a_ticket_an_ack_and_notifications(pipeline):
    [result] = pipeline.accept([Arrival(mail(cc="Bob <teacher2@school.test>, "
                                            "tech1@school.test, help+3@school.test"), "test")])
    assert result.state == "processed" and result.outcome.action == "new_ticket"
    with pipeline.db.sessions() as session:
        ticket = session.get(Ticket, result.outcome.ticket_id)
        assert ticket.status == "new" and ticket.requester.address == "teacher1@school.test"
        assert [p.person.address for p in ticket.participants] == ["teacher2@school.test"]
        assert ticket.created_at == NOW
    rows = outbox(pipeline)
    assert [(r.kind, r.recipients) for r in rows] == [
        ("ack", ["teacher1@school.test"]),
        ("notification", ["tech1@school.test"]),
        ("notification", ["tech2@school.test"]),
    ]
    ack = email.message_from_bytes(mail_of(rows[0]), policy=email.policy.default)
    assert ack["Subject"] == "[#1] Printer jam"
    assert ack["In-Reply-To"] == "<m1@school.test>"
    assert ack["Auto-Submitted"] == "auto-replied"
    # Automatic mail names a person by the first word of their display name, never the
    # whole of it (anyone can write a phishing line there).
    assert ack["To"] == "Jane <teacher1@school.test>"
    assert all(r.status == "queued" and r.next_attempt_at == NOW for r in rows)
    assert count(pipeline, Message) == 4  # the request, the ack, two notifications


def test_a_stored_message_left_by_a_crash_is_processed_once(pipeline):
    arrival = Arrival(mail(), "imap:INBOX", uidvalidity=7, uid=12)
    [(raw_id, uid, state)] = pipeline.store([arrival])  # ...and then the process died
    assert state == "new" and count(pipeline, Ticket) == 0
    [result] = pipeline.accept([arrival])  # the message is still in the inbox
    assert result.raw_id == raw_id and result.state == "processed"
    [again] = pipeline.accept([arrival])  # the move failed; the next pass sees it once more
    assert again.state == "processed" and again.outcome is None
    assert count(pipeline, Ticket) == 1 and count(pipeline, RawMessage) == 1
    assert len(outbox(pipeline)) == 3


def test_same_message_id_twice_is_one_ticket_entry(pipeline):
    first, second = pipeline.accept([Arrival(mail(), "a"), Arrival(mail(), "b")])
    assert (first.state, second.state) == ("processed", "duplicate")
    assert count(pipeline, Ticket) == 1 and len(outbox(pipeline)) == 3


def test_reply_with_the_tag_from_the_requester_joins_the_ticket(pipeline):
    pipeline.accept([Arrival(mail(), "t")])
    [reply] = pipeline.accept([Arrival(mail(subject="RE: [#1] Printer jam",
                                            message_id="<m2@school.test>"), "t")])
    assert reply.outcome.action == "reply" and reply.outcome.ticket_id == 1
    assert count(pipeline, Ticket) == 1


def test_a_stranger_using_the_tag_gets_a_new_ticket(pipeline):
    pipeline.accept([Arrival(mail(), "t")])
    [stranger] = pipeline.accept([Arrival(mail(sender="mallory@evil.example",
                                               subject="Re: [#1] Printer jam",
                                               message_id="<x@evil.example>"), "t")])
    assert stranger.outcome.action == "new_ticket" and stranger.outcome.ticket_id == 2
    ack = email.message_from_bytes(mail_of(outbox(pipeline)[3]), policy=email.policy.default)
    assert ack["To"] == "mallory@evil.example"
    assert "staff room" not in ack.get_body(("plain",)).get_content()


def test_out_of_office_on_a_ticket_is_recorded_without_mail(pipeline):
    pipeline.accept([Arrival(mail(), "t")])
    [oof] = pipeline.accept([Arrival((DATA / "out_of_office.eml").read_bytes(), "t")])
    assert oof.outcome.action == "recorded" and oof.outcome.ticket_id == 1
    assert len(outbox(pipeline)) == 3
    with pipeline.db.sessions() as session:
        kinds = list(session.scalars(select(Message.kind).where(Message.direction == "in")))
        assert kinds == ["request", "note"]


@pytest.mark.parametrize("extra", ["Auto-Submitted: auto-replied\n", "Precedence: bulk\n",
                                   "X-Mailhelp-Loop: help@school.test\n"])
def test_automatic_mail_threading_nowhere_is_ignored(pipeline, extra):
    [result] = pipeline.accept([Arrival(mail(extra=extra), "t")])
    assert result.state == "ignored"
    assert count(pipeline, Ticket) == 0 and outbox(pipeline) == []


def test_a_failing_message_is_marked_with_its_reason(pipeline):
    good, bad = pipeline.accept([Arrival(mail(), "t"),
                                 Arrival(b"\xd0\xcf\x11\xe0" + b"\0" * 40, "t")])
    assert good.state == "processed"
    assert bad.state == "failed" and "Outlook .msg" in bad.error
    with pipeline.db.sessions() as session:
        row = session.get(RawMessage, bad.raw_id)
        assert row.state == "failed"
        assert session.get(RawMessageBody, bad.raw_id).raw.startswith(b"\xd0\xcf")


def test_attachments_are_stored_by_hash_with_safe_names(pipeline):
    raw = (DATA / "teacher_projector.eml").read_bytes().replace(
        b'filename="no signal.png"', b'filename="../../etc/no signal.png"')
    pipeline.accept([Arrival(raw, "t")])
    with pipeline.db.sessions() as session:
        request = session.scalar(select(Message).where(Message.kind == "request"))
        [attachment] = request.attachments
    assert attachment.filename == "_.._etc_no signal.png"
    assert pipeline.context.store.get(attachment.sha256).startswith(b"\x89PNG")


def test_ticket_events_record_who_did_what(pipeline):
    pipeline.accept([Arrival(mail(cc="teacher2@school.test"), "t")])
    with pipeline.db.sessions() as session:
        events = [(e.actor, e.action) for e in session.scalars(select(TicketEvent))]
    assert ("teacher1@school.test", "created") in events
    assert ("teacher2@school.test", "participant_added") in events


def test_a_batch_is_applied_together_replies_and_repeats_included(pipeline, caplog):
    # One transaction for several messages: each sees what the ones before it wrote.
    request = mail(message_id="<first@school.test>")
    reply = mail(message_id="<second@school.test>", subject="Re: Printer jam",
                 extra="In-Reply-To: <first@school.test>\n")
    other = mail(sender="teacher2@school.test", message_id="<third@school.test>")
    results = pipeline.accept([Arrival(request, "test"), Arrival(reply, "test"),
                               Arrival(request, "test"), Arrival(other, "test")])
    assert [r.outcome.action for r in results] == ["new_ticket", "reply", "duplicate",
                                                   "new_ticket"]
    assert [r.outcome.ticket_id for r in results[:2]] == [1, 1]
    assert results[3].outcome.ticket_id == 2
    assert count(pipeline, Ticket) == 2
    assert count(pipeline, Person) == 2  # teacher1 made once, though named thrice
    assert "batch_undone" not in caplog.text
    # The batch's mail is written together, yet each ticket's messages stay in order.
    with pipeline.db.sessions() as session:
        kinds = list(session.scalars(select(Message.kind).where(Message.ticket_id == 1)
                                     .order_by(Message.id)))
    assert kinds == ["request", "ack", "notification", "notification", "reply",
                     "notification", "notification"]


def test_a_batchs_replies_read_their_threads_and_tickets_once(pipeline):
    # Replies to tickets of an earlier batch: what they answer, and those tickets with
    # their people, are read with one statement each for the whole batch.
    pipeline.accept([Arrival(mail(message_id="<a@school.test>"), "test"),
                     Arrival(mail(sender="teacher2@school.test", message_id="<b@school.test>"),
                             "test")])
    statements = []
    event.listen(pipeline.db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: statements.append(statement))
    replies = [mail(sender=("teacher1@school.test", "teacher2@school.test")[i % 2],
                    message_id=f"<r{i}@school.test>", subject="Re: Printer jam",
                    extra=f"In-Reply-To: <{'ab'[i % 2]}@school.test>\n") for i in range(6)]
    # ...and one that answers a message of its own batch: it is looked up as before.
    replies.append(mail(message_id="<r6@school.test>", subject="Re: Printer jam",
                        extra="In-Reply-To: <r4@school.test>\nReferences: <a@school.test> "
                              "<r4@school.test>\n"))
    results = pipeline.accept([Arrival(raw, "test") for raw in replies])
    assert [(r.outcome.action, r.outcome.ticket_id) for r in results] == \
        [("reply", 1), ("reply", 2)] * 3 + [("reply", 1)]
    threads = [s for s in statements if "messages.message_id, messages.ticket_id" in s]
    tickets = [s for s in statements if s.lstrip().startswith("SELECT tickets.id, tickets.")]
    assert (len(threads), len(tickets)) == (2, 1)  # the look-ahead's, and r6's own lookup


def test_a_batchs_status_changes_read_open_jobs_and_mail_counts_once(pipeline):
    # Jobs and last hour's automatic mail of the tickets a batch's replies answer are read
    # once for the batch, and kept current as it changes them: a ticket set pending,
    # reopened, set pending and reopened again in one batch ends with every job cancelled.
    pipeline.accept([Arrival(mail(message_id="<a@school.test>"), "test"),
                     Arrival(mail(sender="teacher2@school.test", message_id="<b@school.test>"),
                             "test")])

    def staff(n: int, answers: str) -> bytes:
        return mail(sender="tech1@school.test", message_id=f"<s{n}@school.test>",
                    subject="Re: Printer jam", extra=f"In-Reply-To: {answers}\n")

    def teacher(n: int, who: str, answers: str) -> bytes:
        return mail(sender=who, message_id=f"<t{n}@school.test>", subject="Re: Printer jam",
                    extra=f"In-Reply-To: {answers}\n")

    pipeline.accept([Arrival(staff(1, "<a@school.test>"), "test"),
                     Arrival(staff(2, "<b@school.test>"), "test")])
    assert count(pipeline, Job, Job.cancelled_at.is_(None)) == 4  # reminder, auto-resolve
    statements = []
    event.listen(pipeline.db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: statements.append(statement))
    results = pipeline.accept([
        Arrival(teacher(1, "teacher1@school.test", "<s1@school.test>"), "test"),
        Arrival(teacher(2, "teacher2@school.test", "<s2@school.test>"), "test"),
        Arrival(staff(3, "<t1@school.test>"), "test"),
        Arrival(teacher(3, "teacher1@school.test", "<a@school.test>"), "test")])
    assert [(r.outcome.action, r.outcome.ticket_id) for r in results] == \
        [("reply", 1), ("reply", 2), ("staff_reply", 1), ("reply", 1)]
    jobs = [s for s in statements if s.lstrip().startswith("SELECT jobs.")]
    counts = [s for s in statements if "count(*)" in s and "outbox.ticket_id" in s]
    assert (len(jobs), len(counts)) == (1, 1)
    with pipeline.db.sessions() as session:
        assert session.scalar(select(Ticket.status).where(Ticket.id == 1)) == "open"
        jobs = list(session.execute(select(Job.ticket_id, Job.kind, Job.cancelled_at)
                                    .order_by(Job.id)))
    assert [(t, k) for t, k, _ in jobs] == [(1, "reminder"), (1, "auto_resolve"),
                                           (2, "reminder"), (2, "auto_resolve"),
                                           (1, "reminder"), (1, "auto_resolve")]
    assert all(cancelled is not None for _, _, cancelled in jobs)


def test_a_ticket_named_twice_in_a_batch_keeps_its_messages_in_order(pipeline):
    # The second message finds the ticket by its tag alone (no threading headers).
    results = pipeline.accept([
        Arrival(mail(message_id="<first@school.test>"), "test"),
        Arrival(mail(message_id="<second@school.test>", subject="Re: [#1] Printer jam"),
                "test")])
    assert [r.outcome.action for r in results] == ["new_ticket", "reply"]
    with pipeline.db.sessions() as session:
        kinds = list(session.scalars(select(Message.kind).where(Message.ticket_id == 1)
                                     .order_by(Message.id)))
    assert kinds == ["request", "ack", "notification", "notification", "reply",
                     "notification", "notification"]


class FullDisk(AttachmentStore):
    """An attachment store whose disk is full for one attachment."""

    def put(self, payload: bytes) -> str:
        if b"the bad one" in payload:
            raise OSError(28, "No space left on device")
        return super().put(payload)


def with_attachment(sender: str, message_id: str, payload: bytes) -> bytes:
    message = email.message.EmailMessage()
    message["From"], message["To"] = sender, "help@school.test"
    message["Subject"], message["Message-ID"] = "Printer jam", message_id
    message["Date"] = "Mon, 23 Nov 2026 08:00:00 +0000"
    message.set_content("The printer in the staff room jams on every page.")
    message.add_attachment(payload, maintype="application", subtype="octet-stream",
                           filename="log.txt")
    return message.as_bytes()


def test_one_message_failing_in_a_batch_fails_alone(pipeline, tmp_path, caplog):
    # The batch's transaction is undone; each message is done again on its own, so the
    # others are processed and only the one at fault goes to the failed folder.
    pipeline.context = replace(pipeline.context, store=FullDisk(tmp_path / "full"))
    arrivals = [Arrival(with_attachment(f"teacher{i}@school.test", f"<{i}@school.test>",
                                        b"the bad one" if i == 2 else b"fine"), "test")
                for i in range(1, 5)]
    results = pipeline.accept(arrivals)
    assert [r.state for r in results] == ["processed", "failed", "processed", "processed"]
    assert "No space left on device" in results[1].error
    assert "action=batch_undone messages=4" in caplog.text
    assert count(pipeline, Ticket) == 3
    assert count(pipeline, RawMessage, RawMessage.state == "failed") == 1
    assert len(outbox(pipeline)) == 9  # three acks, six notifications: none twice
    # The numbers the undone batch handed out were handed out again: no gaps.
    assert [r.outcome.ticket_id for r in results if r.outcome] == [1, 2, 3]
    with pipeline.db.sessions() as session:
        acks = sorted(session.scalars(select(Message.subject).where(Message.kind == "ack")))
    assert [s[:4] for s in acks] == ["[#1]", "[#2]", "[#3]"]


def test_pipelines_at_once_never_hand_out_a_number_twice(pipeline):
    # The daemon, a cron `run --once` and an MTA's ingest may make tickets at the same
    # moment: each transaction numbers its tickets while it alone may make them.
    import threading

    pipelines = [Pipeline(pipeline.config, Database(pipeline.db.url), lambda: NOW)
                 for _ in range(3)]
    results: dict[int, list] = {}

    def run(n: int) -> None:
        results[n] = pipelines[n].accept([
            Arrival(mail(sender=f"t{n}{i}@school.test", message_id=f"<{n}-{i}@school.test>"),
                    "test") for i in range(8)])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    numbers = sorted(r.outcome.ticket_id for batch in results.values() for r in batch)
    assert numbers == list(range(1, 25))
    for other in pipelines:
        other.db.dispose()


def transactions(engine) -> list[int]:
    """Counts, as they happen, the transactions begun on ``engine`` (one item each)."""
    begun: list[int] = []
    event.listen(engine, "begin", lambda connection: begun.append(1))
    return begun


def test_a_big_message_is_applied_alone_and_in_its_place(pipeline):
    # A big request (photos of the broken projector) and the teacher's follow-up in the
    # same batch: the request has a transaction to itself, and still comes first.
    photos = "\n".join(["iVBORw0KGgoAAAANSUhEUgAAB4AAAAQ4CAIAAABnsVYUAAAAA"] * 22000)
    request = mail(message_id="<big@school.test>") + photos.encode() + b"\n"
    assert len(request) > 1 << 20
    follow_up = mail(message_id="<small@school.test>", subject="Re: Printer jam",
                     extra="In-Reply-To: <big@school.test>\n")
    other = mail(sender="teacher2@school.test", message_id="<other@school.test>")
    small = mail(sender="teacher3@school.test", message_id="<small2@school.test>")
    begun = transactions(pipeline.db.engine)
    results = pipeline.accept([Arrival(other, "test"), Arrival(small, "test"),
                               Arrival(request, "test"), Arrival(follow_up, "test")])
    assert [r.outcome.action for r in results] == ["new_ticket"] * 3 + ["reply"]
    assert results[3].outcome.ticket_id == results[2].outcome.ticket_id == 3
    # Storing, then the two before it together, the big one, the one after it.
    assert len(begun) == 4


@pytest.mark.parametrize("together", [False, True], ids=["alone", "in a batch"])
def test_a_replys_new_text_is_worked_out_before_the_transaction(pipeline, together):
    # SQLite holds its write lock for the whole of a transaction: quote cutting, the
    # slowest pure stage after parsing, must not run in there. Watched, not replaced:
    # each call of quoting.cut notes whether a transaction is open on the engine.
    from mailhelp.mail import quoting

    pipeline.accept([Arrival(mail(), "test")])
    inside, cuts = [False], []
    event.listen(pipeline.db.engine, "begin", lambda connection: inside.__setitem__(0, True))
    for end in ("commit", "rollback"):
        event.listen(pipeline.db.engine, end, lambda connection: inside.__setitem__(0, False))

    def watch(frame, what, _arg):
        if what == "call" and frame.f_code is quoting.cut.__code__:
            cuts.append(inside[0])

    reply = mail(subject="Re: [#1] Printer jam", message_id="<m2@school.test>",
                 extra="In-Reply-To: <m1@school.test>\n")
    request = mail(sender="teacher2@school.test", message_id="<m3@school.test>")
    arrivals = [Arrival(reply, "test")] + ([Arrival(request, "test")] if together else [])
    sys.setprofile(watch)
    try:
        results = pipeline.accept(arrivals)
    finally:
        sys.setprofile(None)
    assert results[0].outcome.action == "reply"
    # Read once, before: a new request (nothing it could answer) needs no new text.
    assert cuts == [False]
