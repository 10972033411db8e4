from __future__ import annotations

from pathlib import Path

import pytest

from mailhelp.errors import ParseError
from mailhelp.parse import message_id_of, parse
from tests.corpus import CORPUS, raw_messages

DATA = Path(__file__).resolve().parents[1] / "data"


def test_gmail_message_with_attachment():
    inbound = parse((DATA / "teacher_projector.eml").read_bytes())
    assert inbound.sender.address == "teacher1@school.test"
    assert inbound.sender.name == "Jane Teacher"
    assert [a.address for a in inbound.to] == ["help@school.test"]
    assert [(a.name, a.address) for a in inbound.cc] == [("Bob Colleague", "teacher2@school.test")]
    assert inbound.subject == "Projector in room 12 does not turn on"
    assert inbound.message_id == "<CAF1234567890projector@mail.gmail.com>"
    assert inbound.date.isoformat() == "2026-11-23T13:12:45+00:00"
    assert 'shows "No signal" since this morning. I tried another HDMI cable.' in inbound.text
    [attachment] = inbound.attachments
    assert attachment.filename == "no signal.png"
    assert attachment.content_type == "image/png"
    assert attachment.payload.startswith(b"\x89PNG")


def test_outlook_html_only_latin1_is_converted_to_text():
    inbound = parse((DATA / "outlook_html_only.eml").read_bytes())
    assert inbound.subject == "Kein Zugang zum Notenbuch – dringend"
    assert inbound.sender.name == "Françoise Müller"
    assert inbound.sender.address == "teacher2@school.test"  # lower-cased for comparison
    assert "ich komme seit heute früh nicht mehr in das Notenbuch" in inbound.text
    assert '"Konto gesperrt"' in inbound.text
    assert "<b>" not in inbound.text


def test_threading_headers():
    raw = (b"From: a@x.test\r\nTo: help@school.test\r\nSubject: Re: [#4] x\r\n"
           b"Message-ID: <m2@x.test>\r\nIn-Reply-To: <ack-4@school.test>\r\n"
           b"References: <m1@x.test>\r\n <ack-4@school.test>\r\n\r\nbody\r\n")
    inbound = parse(raw)
    assert inbound.in_reply_to == "<ack-4@school.test>"
    assert inbound.references == ("<m1@x.test>", "<ack-4@school.test>")


def test_missing_message_id_is_stable_and_content_derived():
    raw = b"From: a@x.test\nTo: help@school.test\nSubject: hi\n\nhello\n"
    first, second = parse(raw), parse(raw)
    assert first.message_id == second.message_id == message_id_of(raw)
    assert first.message_id.endswith("@mailhelp.invalid>")
    assert parse(raw + b"other\n").message_id != first.message_id


def test_message_id_of_reads_folded_header():
    raw = b"From: a@x.test\r\nMessage-ID:\r\n <folded@x.test>\r\n\r\nbody"
    assert message_id_of(raw) == "<folded@x.test>"


def test_header_injection_characters_are_removed_from_subject():
    inbound = parse(b"From: a@x.test\nSubject: =?utf-8?q?a=0D=0ABcc=3A_evil=40x.test?=\n\nb\n")
    assert "\n" not in inbound.subject and "\r" not in inbound.subject


def test_outlook_msg_file_is_refused_clearly():
    with pytest.raises(ParseError, match="Outlook .msg"):
        parse(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)


@pytest.mark.parametrize("row", raw_messages())
def test_corpus_message_parses_or_is_refused_with_a_reason(row):
    raw = (CORPUS / row["path"]).read_bytes()
    try:
        inbound = parse(raw)
    except ParseError as error:
        assert "outlook-msg" in row["tag"], f"{row['path']}: {error}"
        return
    assert inbound.message_id.startswith("<") and inbound.message_id.endswith(">")
    assert "\n" not in inbound.subject
    assert inbound.size == len(raw)
