"""Attached messages opened for staff (mail/forwarded.py), and the files a staff
notification carries within [limits]; through the pipeline, the notification shows the
forwarded message and carries its files."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Outbox
from mailhelp.db.session import Database
from mailhelp.mail import forwarded
from mailhelp.mail.attachment import Attachment
from mailhelp.mail.parse import parse
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.corpus import CORPUS, corpus_rows, skip_without_corpus
from tests.helpers import desk_config, mail_of

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def original(html: bool = False, body: str = "Your password expires today. Click here.",
             files: tuple[tuple[str, bytes], ...] = (("invoice.pdf", PDF),)) -> EmailMessage:
    """The mail a teacher forwards: from outside, with its own attachment."""
    message = EmailMessage()
    message["From"] = "IT Support <support@strange.example>"
    message["To"] = "teacher1@school.test"
    message["Date"] = "Fri, 20 Nov 2026 09:15:00 -0600"
    message["Subject"] = "Mailbox quota exceeded"
    message["Message-ID"] = "<quota@strange.example>"
    if html:
        message.set_content(f"<html><body><p><b>{body}</b></p></body></html>", subtype="html")
    else:
        message.set_content(body)
    for name, data in files:
        message.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return message


def forwarding(inner: EmailMessage | bytes, as_file: bool = False) -> bytes:
    """The teacher's mail with ``inner`` attached as message/rfc822 (or as a .eml file)."""
    outer = EmailMessage()
    outer["From"] = "Jane Teacher <teacher1@school.test>"
    outer["To"] = "help@school.test"
    outer["Subject"] = "Is this real?"
    outer["Message-ID"] = "<fwd1@school.test>"
    outer["Date"] = "Mon, 23 Nov 2026 08:00:00 +0000"
    outer.set_content("I got this, is it real?\nJane")
    if as_file:
        data = inner if isinstance(inner, bytes) else inner.as_bytes()
        outer.add_attachment(data, maintype="application", subtype="octet-stream",
                             filename="quota.eml")
    else:
        outer.add_attachment(inner)  # message/rfc822
    return outer.as_bytes(policy=email.policy.SMTP)


def test_a_forwarded_message_is_read_with_its_sender_date_subject_text_and_files():
    inbound = parse(forwarding(original()))
    [message] = forwarded.opened_of(inbound)
    assert message.sender == "IT Support <support@strange.example>"
    assert message.to == "teacher1@school.test"
    assert message.date == datetime(2026, 11, 20, 15, 15, tzinfo=UTC)
    assert message.subject == "Mailbox quota exceeded"
    assert message.text == "Your password expires today. Click here."
    assert not message.cut
    [pdf] = message.attachments
    assert (pdf.filename, pdf.content_type, pdf.payload) == ("invoice.pdf", "application/pdf",
                                                             PDF)
    # Worked out once: the same value again, from the message's memo.
    assert forwarded.opened_of(inbound) is forwarded.opened_of(inbound)
    shown = forwarded.shown(message, ZoneInfo("America/Chicago"))
    assert shown["date"] == "Fri 20 Nov 2026 09:15 CST"
    assert shown["attachments"] == [{"filename": "invoice.pdf",
                                     "content_type": "application/pdf", "size": len(PDF)}]


def test_an_html_only_forward_is_shown_as_text():
    [message] = forwarded.opened_of(parse(forwarding(original(html=True))))
    assert message.text == "Your password expires today. Click here."


def test_a_eml_sent_as_a_plain_file_is_recognised_and_a_random_eml_is_not():
    [message] = forwarded.opened_of(parse(forwarding(original(), as_file=True)))
    assert message.subject == "Mailbox quota exceeded" and message.filename == "quota.eml"
    for junk in (b"\x00\x01binary garbage\n\nFrom: x\n", b"Just some notes\nFrom: me\n",
                 b"", b"X-Only: header\n\nbody"):
        attachment = Attachment("notes.eml", "application/octet-stream", junk)
        assert not forwarded.is_message(attachment), junk
    # A .pdf whose first bytes look like headers is still a PDF.
    assert not forwarded.is_message(Attachment("a.pdf", "application/pdf",
                                               b"From: a@b\n\nx"))


def test_one_level_is_opened_and_a_message_inside_it_stays_a_file():
    inner = original()
    middle = EmailMessage()
    middle["From"] = "Bob <teacher2@school.test>"
    middle["Subject"] = "Fwd: Mailbox quota exceeded"
    middle.set_content("Look at this one.")
    middle.add_attachment(inner)
    [message] = forwarded.opened_of(parse(forwarding(middle)))
    assert message.sender == "Bob <teacher2@school.test>"
    [nested] = message.attachments
    assert nested.content_type == "message/rfc822"
    assert nested.filename == "Mailbox quota exceeded.eml"
    assert b"Your password expires today" in nested.payload


def test_text_opened_messages_and_files_are_capped(monkeypatch):
    long = "word " * (forwarded.MAX_TEXT // 2)
    [message] = forwarded.opened_of(parse(forwarding(original(body=long))))
    assert message.cut and len(message.text) == forwarded.MAX_TEXT
    monkeypatch.setattr(forwarded, "MAX_FILES", 2)
    files = tuple((f"page{n}.pdf", PDF) for n in range(5))
    [message] = forwarded.opened_of(parse(forwarding(original(files=files))))
    assert [a.filename for a in message.attachments] == ["page0.pdf", "page1.pdf"]
    assert message.more_files == 3
    outer = email.message_from_bytes(forwarding(original()), policy=email.policy.default)
    for _ in range(forwarded.MAX_OPENED + 3):
        outer.add_attachment(original())
    assert len(forwarded.opened_of(parse(outer.as_bytes()))) == forwarded.MAX_OPENED


def test_staff_files_carry_the_forward_as_a_file_with_its_files_after_it():
    inbound = parse(forwarding(original()))
    opened = forwarded.opened_of(inbound)
    files = forwarded.staff_files(inbound.attachments, opened, 10_000, 1_000_000)
    eml, pdf = files.attached
    assert (eml.content_type, eml.payload) == ("application/octet-stream",
                                               inbound.attachments[0].payload)
    assert eml.filename.endswith(".eml") and pdf.payload == PDF and files.listed == ()
    # A delivery report's part (message/delivery-status) goes as a file too: the
    # standard library cannot write a message/* part from bytes.
    status = Attachment("delivery-status.txt", "message/delivery-status", b"Action: failed\n")
    [carried] = forwarded.staff_files([status], (), 10_000, 1_000_000).attached
    assert (carried.content_type, carried.payload) == ("application/octet-stream",
                                                       status.payload)


def test_staff_files_list_what_is_over_each_limit():
    small, big, other = (Attachment("a.png", "image/png", b"a" * 100),
                         Attachment("b.zip", "application/zip", b"b" * 500),
                         Attachment("c.png", "image/png", b"c" * 150))
    files = forwarded.staff_files([small, big, other], (), per_file=400, total=200)
    assert files.attached == (small,)
    assert files.listed == (big, other)  # over per_file; over what is left of total
    files = forwarded.staff_files([small, big, other], (), per_file=1000, total=10_000)
    assert files.attached == (small, big, other) and files.listed == ()


def test_one_staff_mail_carries_at_most_max_carried_files():
    many = [Attachment(f"{n}.png", "image/png", b"p") for n in range(forwarded.MAX_CARRIED + 5)]
    files = forwarded.staff_files(many, (), per_file=1000, total=10_000)
    assert files.attached == tuple(many[:forwarded.MAX_CARRIED])
    assert files.listed == tuple(many[forwarded.MAX_CARRIED:])


def rfc822_corpus() -> list:
    rows = [r for r in corpus_rows() if "rfc822" in r["tag"].split(",")]
    return [pytest.param(r, id=r["path"]) for r in rows] or [pytest.param(None)]


@pytest.mark.parametrize("row", rfc822_corpus())
def test_corpus_messages_with_attached_messages_open_without_error(row):
    """Real mail with message/rfc822 parts (bounces, ARF reports, forwards, the flanker
    torture tests): every attached message opens or stays a file, nothing raises."""
    if row is None:
        skip_without_corpus()
    try:
        inbound = parse((CORPUS / row["path"]).read_bytes())
    except Exception as error:  # parse's own verdict on it; not this module's to test
        pytest.skip(f"not a message parse reads: {error}")
    opened = forwarded.opened_of(inbound)
    assert len(opened) <= forwarded.MAX_OPENED
    for message in opened:
        assert len(message.text) <= forwarded.MAX_TEXT
        assert len(message.attachments) <= forwarded.MAX_FILES
        forwarded.shown(message, ZoneInfo("America/Chicago"))
    files = forwarded.staff_files(inbound.attachments, opened, 10 << 20, 25 << 20)
    assert len(files.attached) + len(files.listed) == len(inbound.attachments) + sum(
        len(m.attachments) for m in opened)


@pytest.fixture
def pipeline(tmp_path, database_url):
    config = desk_config(tmp_path, database_url, extra="""
        [helpdesk]
        timezone = "America/Chicago"
        """)
    db = Database(database_url)
    upgrade(db)
    yield Pipeline(config, db, lambda: NOW)
    db.dispose()


def test_the_new_ticket_notification_shows_the_forward_and_carries_every_file(pipeline):
    [result] = pipeline.accept([Arrival(forwarding(original()), "test")])
    assert result.outcome.action == "new_ticket"
    with pipeline.db.sessions() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == "notification")).all()
        sent = email.message_from_bytes(mail_of(row), policy=email.policy.default)
    text = sent.get_body(("plain",)).get_content()
    block = text[text.index("Attached message"):text.index("End of attached message")]
    for line in ("From: IT Support <support@strange.example>", "To: teacher1@school.test",
                 "Date: Fri 20 Nov 2026 09:15 CST", "Subject: Mailbox quota exceeded",
                 "Your password expires today. Click here.", "invoice.pdf"):
        assert line in block, line
    assert "#assign ADDRESS #take" in text
    html = sent.get_body(("html",)).get_content()
    assert "Attached message" in html and "support@strange.example" in html
    names = [(a.get_filename(), a.get_content_type()) for a in sent.iter_attachments()]
    assert names == [("Mailbox quota exceeded.eml", "application/octet-stream"),
                     ("invoice.pdf", "application/pdf")]
    assert [a.get_content() for a in sent.iter_attachments()][1] == PDF


def test_a_forward_of_a_forward_goes_to_staff_with_the_inner_one_as_a_file(pipeline):
    middle = EmailMessage()
    middle["From"] = "Bob <teacher2@school.test>"
    middle["Subject"] = "Fwd: Mailbox quota exceeded"
    middle.set_content("Look at this one.")
    middle.add_attachment(original())
    [result] = pipeline.accept([Arrival(forwarding(middle), "test")])
    assert result.outcome.action == "new_ticket", result.error
    with pipeline.db.sessions() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == "notification")).all()
        sent = email.message_from_bytes(mail_of(row), policy=email.policy.default)
    assert "From: Bob <teacher2@school.test>" in sent.get_body(("plain",)).get_content()
    files = [(a.get_filename(), a.get_content_type()) for a in sent.iter_attachments()]
    assert files == [("Fwd_ Mailbox quota exceeded.eml", "application/octet-stream"),
                     ("Mailbox quota exceeded.eml", "application/octet-stream")]


def test_the_forward_text_is_escaped_in_the_html_part(pipeline):
    inner = original(body="<script>alert(1)</script> <a href='https://evil.example'>x</a>")
    pipeline.accept([Arrival(forwarding(inner), "test")])
    with pipeline.db.sessions() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == "notification")).all()
        sent = email.message_from_bytes(mail_of(row), policy=email.policy.default)
    html = sent.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_files_past_the_size_of_one_mail_are_listed_not_attached(tmp_path, database_url):
    config = desk_config(tmp_path, database_url, extra="""
        [limits]
        max_message_size = "100KB"
        max_attachment_size = "1KB"
        """)
    db = Database(database_url)
    upgrade(db)
    try:
        request = email.message_from_bytes(forwarding(original()), policy=email.policy.default)
        request.add_attachment(b"x" * 1500, maintype="application", subtype="zip",
                               filename="big.zip")
        Pipeline(config, db, lambda: NOW).accept([Arrival(request.as_bytes(), "test")])
        with db.sessions() as session:
            [row] = session.scalars(select(Outbox).where(Outbox.kind == "notification")).all()
            sent = email.message_from_bytes(mail_of(row), policy=email.policy.default)
    finally:
        db.dispose()
    text = sent.get_body(("plain",)).get_content()
    listed = text[text.index("Not attached to this mail"):]
    attached = [a.get_filename() for a in sent.iter_attachments()]
    assert "big.zip (1500 bytes)" in listed and "big.zip" not in attached
    assert "invoice.pdf" in attached  # small files still go
