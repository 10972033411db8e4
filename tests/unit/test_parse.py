from __future__ import annotations

import base64
import struct
import time
from pathlib import Path

import pytest

from mailhelp.errors import ParseError
from mailhelp.mail.parse import Address, message_id_of, parse
from tests.corpus import CORPUS, raw_messages, skip_without_corpus
from tests.winmail import tnef_attribute, winmail

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


# --- Mail hygiene: charsets, broken headers, winmail.dat, hostile structure ---------

def _mail(headers: bytes, body: bytes = b"hello\n") -> bytes:
    return b"From: a@x.test\nTo: help@school.test\n" + headers + b"\n" + body


def _no_surrogates(inbound) -> None:
    for text in (inbound.subject, inbound.text, inbound.html, inbound.sender.name,
                 *(a.name for a in inbound.to), *(a.filename for a in inbound.attachments),
                 *(v for values in inbound.headers.values() for v in values)):
        text.encode("utf-8")  # raises on a lone surrogate
        assert "\x00" not in text


def test_raw_latin1_subject_and_name_are_decoded_not_dropped():
    raw = (b"From: J\xf6rg M\xfcller <joerg@x.test>\nTo: help@school.test\n"
           b"Subject: Gr\xfc\xdfe aus K\xf6ln\nContent-Type: text/plain; charset=iso-8859-1\n"
           b"\nSch\xf6ne Gr\xfc\xdfe\n")
    inbound = parse(raw)
    assert inbound.subject == "Grüße aus Köln"
    assert inbound.sender == Address("Jörg Müller", "joerg@x.test")
    assert inbound.text == "Schöne Grüße\n"
    _no_surrogates(inbound)


def test_raw_utf8_header_beats_a_latin1_body_label():
    raw = (b"From: Ups R\xc3\xa9mi <r@x.test>\nSubject: \xc3\xa9l\xc3\xa9gibilit\xc3\xa9\n"
           b"Content-Type: text/plain; charset=iso-8859-1\n\nbody\n")
    inbound = parse(raw)
    assert inbound.subject == "élégibilité"
    assert inbound.sender.name == "Ups Rémi"


def test_raw_gb2312_headers_are_read_together():
    subject = "转发：整体提升企业服务水平".encode("gb2312")
    raw = _mail(b"Subject: " + subject + b"\nContent-Type: text/plain; charset=gb2312\n",
                "你好".encode("gb2312"))
    inbound = parse(raw)
    assert inbound.subject == "转发：整体提升企业服务水平"
    assert inbound.text == "你好"


@pytest.mark.parametrize(("declared", "body", "expected"), [
    ("utf-8", "Grüße".encode("latin-1"), "Grüße"),  # lying: latin-1 labelled UTF-8
    ("iso-8859-1", "Grüße".encode(), "Grüße"),  # lying: UTF-8 labelled latin-1
    ("x-unknown", "Grüße".encode(), "Grüße"),  # unknown label
    ("gb2312", "內應力產生".encode("gbk"), "內應力產生"),  # GBK labelled GB2312
    ("us-ascii", "café".encode("cp1252"), "café"),  # 8-bit labelled ASCII
    ("punycode", b"plain words", "plain words"),  # a codec that is no charset
    ("iso-2022-jp", b"\x1b$B-!#1ET\x1b(B", "①１都"),  # Outlook's JIS with NEC digits
])
def test_body_charset_falls_back_through_the_chain(declared, body, expected):
    raw = _mail(b"Content-Type: text/plain; charset=" + declared.encode() + b"\n", body)
    assert parse(raw).text == expected


def test_mixed_utf8_and_latin1_bytes_keep_both():
    body = "äöü 差出人 / ".encode() + "äöü".encode("latin-1")
    inbound = parse(_mail(b"Content-Type: text/plain; charset=bogus\n", body))
    assert inbound.text == "äöü 差出人 / äöü"


def test_html_without_mime_charset_uses_its_meta_tag():
    html = '<html><head><meta charset="windows-1251"></head><body>Привет</body></html>'
    raw = _mail(b"Content-Type: text/html\n", html.encode("cp1251"))
    assert parse(raw).text == "Привет"


def test_utf7_lone_surrogates_never_reach_the_inbound():
    raw = _mail(b"Subject: =?utf-7?Q?+2D3-x?=\nContent-Type: text/plain; charset=utf-7\n",
                b"a +2D3- b\x00c\n")
    inbound = parse(raw)
    _no_surrogates(inbound)
    assert inbound.text == "a +2D3- bc\n"  # refused by the utf-7 codec, read as ASCII


def test_encoded_display_name_with_a_comma_is_one_address():
    raw = b"From: =?utf-8?B?TcO8bGxlciwgQmVybmQ=?= <Bernd.Mueller@example.com>\n\nx\n"
    assert parse(raw).sender == Address("Müller, Bernd", "bernd.mueller@example.com")


def test_broken_encoded_words_are_read_leniently():
    raw = (b"From: =?iso-8859-1?Q?B=FCrling, =20Andreas?= <smith@example.com>\n"
           b"Subject: Benachrichtung \n\tzum \n\t=?unicode-1-1-utf-7?Q?+ANw-bermittlungsstatus \n"
           b"\t(Fehlgeschlagen)?=\n\nx\n")
    inbound = parse(raw)
    assert inbound.sender == Address("Bürling, Andreas", "smith@example.com")
    assert inbound.subject == "Benachrichtung zum Übermittlungsstatus (Fehlgeschlagen)"


def test_encoded_words_split_inside_a_character_are_joined():
    word = "Grüße".encode()
    raw = (b"Subject: =?utf-8?B?" + base64.b64encode(word[:3]) + b"?= =?utf-8?B?"
           + base64.b64encode(word[3:]) + b"?=\n\nx\n")
    assert parse(raw).subject == "Grüße"


def test_header_line_that_lost_its_indent_does_not_end_the_headers():
    raw = (b"Return-Path: <k@example.com>\nX-Junk: abc\nDEFGHIJ+KLMNOP/\nQRST==\n"
           b"From: \"Smith, Karoline\" <k@example.com>\nSubject: AW: One Net Business\n"
           b"Content-Type: text/plain\n\nsome text\n")
    inbound = parse(raw)
    assert inbound.sender == Address("Smith, Karoline", "k@example.com")
    assert inbound.subject == "AW: One Net Business"
    assert inbound.text == "some text\n"
    assert "HeaderBlockRepaired" in inbound.defects


def test_junk_line_above_the_headers_is_skipped():
    raw = b"---- Original email message ----\r\nSubject: Contact\r\nFrom: x@y.cz\r\n\r\nhi\r\n"
    inbound = parse(raw)
    assert (inbound.subject, inbound.sender.address) == ("Contact", "x@y.cz")


def test_sender_falls_back_to_reply_to_and_bare_names():
    assert parse(b"Reply-To: <r@x.test>\nSubject: s\n\nb\n").sender.address == "r@x.test"
    bounce = parse(b"From: MAILER-DAEMON (Mail Delivery System)\nSubject: s\n\nb\n")
    assert bounce.sender == Address("Mail Delivery System", "mailer-daemon")
    assert not bounce.sender.deliverable
    assert parse(b"From: Test test@example.com\n\nb\n").sender == Address("Test",
                                                                          "test@example.com")


def test_missing_or_garbage_date_is_none_and_classify_copes():
    from mailhelp.mail.classify import classify

    for header in (b"", b"Date: yesterday-ish\n", b"Date: Mon, 1 Jan 99999 00:00:00 +0000\n",
                   b"Date: Fri, 31 Dec 9999 23:59:59 -2359\n"):  # past year 9999 in UTC
        inbound = parse(_mail(header))
        assert inbound.date is None
        assert classify(inbound, "help@school.test").kind == "human"
    assert parse(_mail(b"Date: Mon, 23 Nov 2026 08:12:45 -0000\n")).date.isoformat() \
        == "2026-11-23T08:12:45+00:00"


def test_message_id_with_control_characters_is_replaced_stably():
    raw = _mail(b"Message-ID: <a\x01b@x.test>\n")
    assert parse(raw).message_id == message_id_of(raw)
    assert parse(raw).message_id.endswith("@mailhelp.invalid>")


def test_raw_8bit_attachment_filename_is_decoded():
    raw = _mail(b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n",
                b"--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: image/jpeg\n"
                b"Content-Disposition: attachment; filename=\"Hofj\xe4geralle.jpg\"\n"
                b"Content-Transfer-Encoding: base64\n\n/9j/4AAQSkZJ\n--b--\n")
    [attachment] = parse(raw).attachments
    assert attachment.filename == "Hofjägeralle.jpg"
    assert attachment.payload == base64.b64decode("/9j/4AAQSkZJ")


def test_attached_message_is_one_attachment_named_after_its_subject():
    inner = b"From: t@x.test\nSubject: Neue Anfrage\nContent-Type: text/plain\n\ninner text\n"
    raw = _mail(b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n",
                b"--b\nContent-Type: text/plain\n\nsee attached\n--b\n"
                b"Content-Type: message/rfc822\nContent-Disposition: attachment\n\n"
                + inner + b"\n--b--\n")
    inbound = parse(raw)
    assert inbound.text == "see attached"
    [attachment] = inbound.attachments
    assert (attachment.filename, attachment.content_type) == ("Neue Anfrage.eml", "message/rfc822")
    assert b"inner text" in attachment.payload and b"Subject: Neue Anfrage" in attachment.payload


def test_outlook_inline_image_is_named_from_its_content_id():
    raw = _mail(b"MIME-Version: 1.0\nContent-Type: multipart/related; boundary=b\n",
                b"--b\nContent-Type: text/html\n\n<img src=\"cid:image001.png@01D9\">\n--b\n"
                b"Content-Type: image/png\nContent-ID: <image001.png@01D9>\n"
                b"Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--b--\n")
    [image] = parse(raw).attachments
    assert (image.filename, image.content_id) == ("image001.png", "<image001.png@01D9>")


def _with_winmail(data: bytes) -> bytes:
    return _mail(b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n",
                 b"--b\nContent-Type: text/plain\n\nsee attached\n--b\n"
                 b"Content-Type: application/ms-tnef; name=winmail.dat\n"
                 b"Content-Disposition: attachment; filename=winmail.dat\n"
                 b"Content-Transfer-Encoding: base64\n\n"
                 + base64.encodebytes(data) + b"--b--\n")


def test_winmail_dat_is_replaced_by_the_files_inside():
    files = [("Stundenplan Übersicht.pdf", b"%PDF-1.4 plan"), ("error.png", b"\x89PNG data")]
    inbound = parse(_with_winmail(winmail(files)))
    assert [(a.filename, a.content_type, a.payload) for a in inbound.attachments] == [
        ("Stundenplan Übersicht.pdf", "application/pdf", b"%PDF-1.4 plan"),
        ("error.png", "image/png", b"\x89PNG data")]


def test_winmail_dat_without_files_or_broken_is_kept():
    empty = winmail([])
    for data in (empty, b"not tnef at all", winmail([("a.txt", b"x")])[:40]):
        [kept] = parse(_with_winmail(data)).attachments
        assert kept.filename == "winmail.dat"


def test_hostile_winmail_dat_costs_no_time():
    # tnefparse loops 2**32 times on this: a property list that claims four billion entries.
    hostile = struct.pack("<IH", 0x223E9F78, 1) + tnef_attribute(
        2, 0x00069005, b"\xff\xff\xff\xff" + b"\x00" * 8)
    hostile = struct.pack("<IH", 0x223E9F78, 1) + tnef_attribute(
        2, 0x00069002, b"\x00" * 14) + hostile[6:]
    started = time.process_time()
    [kept] = parse(_with_winmail(hostile)).attachments
    assert kept.filename == "winmail.dat"
    assert time.process_time() - started < 1


def _nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\n\ndeep text\n"
    for level in range(depth):
        boundary = b"b%d" % level
        body = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\n\n--" + boundary
                + b"\n" + body + b"\n--" + boundary + b"--\n")
    return b"From: a@x.test\nSubject: deep\nMIME-Version: 1.0\n" + body


@pytest.mark.parametrize("depth", [10, 100, 900, 5000])
def test_deep_nesting_is_bounded(depth):
    started = time.process_time()
    try:
        inbound = parse(_nested(depth))
    except ParseError as error:
        assert "nested" in str(error)
    else:
        assert ("deep text" in inbound.text) == (depth <= 40)
    assert time.process_time() - started < 2


def test_endless_attached_messages_raise_parse_error_only():
    body = b"From: x@y\n\nhello\n"
    for level in range(5000):
        body = b"Subject: s%d\nContent-Type: message/rfc822\n\n" % level + body
    with pytest.raises(ParseError):
        parse(b"From: a@x.test\n" + body)


def test_enormous_headers_are_bounded():
    recipients = b", ".join(b"user%d@x.test" % i for i in range(50_000))
    started = time.process_time()
    inbound = parse(_mail(b"Cc: " + recipients + b"\nReferences: " + b"<r@x> " * 20_000
                          + b"\nSubject: " + b"=?utf-8?q?x?= " * 50_000 + b"\n"))
    assert time.process_time() - started < 2
    assert len(inbound.cc) == 500 and len(inbound.references) == 100
    assert len(inbound.subject) <= 1000


def test_worst_corpus_message_parses_quickly():
    path = CORPUS / "mailgun__flanker" / "enclosed-endless.eml"
    if not path.exists():
        skip_without_corpus()
    raw = path.read_bytes()
    started = time.process_time()
    inbound = parse(raw)
    assert time.process_time() - started < 2
    assert inbound.sender.address == "example@example.net"


ZAMMAD = CORPUS / "zammad__zammad"


@pytest.mark.parametrize(("box", "sender", "subject"), [
    ("mail014.box", ("Müller, Bernd", "bernd.mueller@example.com"), "AW: OTRS [Ticket#118192]"),
    ("mail031.box", ("bertha mou", "zhengkang@ha.chinamobile.com"),
     "內應力產生与注塑工艺条件之间的关系；"),
    ("mail046.box", ("武兰成", "glopelf7121@example.com"), "转发：整体提升企业服务水平"),
    ("mail054.box", ("Smith, Karoline, Example DE", "karoline.smith@example.com"),
     "AW: One Net Business"),
    ("mail068.box", ("", "xxxxx@xxxxx.cz"), "Contact from Server"),
    ("mail093.box", ("ツール EXAMPLE", "bar@example.org"), "ツール"),
])
def test_zammad_fixtures_that_used_to_lose_their_headers(box, sender, subject):
    if not (ZAMMAD / box).exists():
        skip_without_corpus()
    inbound = parse((ZAMMAD / box).read_bytes())
    assert (inbound.sender.name, inbound.sender.address) == sender
    assert inbound.subject == subject
    _no_surrogates(inbound)


def test_rfc2231_parameters_go_through_the_same_charset_chain():
    raw = _mail(b"Content-Type: application/pdf\nContent-Disposition: attachment; "
                b"filename*0*=utf-8''Gr%C3%BC; filename*1=\"sse.pdf\"\n")
    assert parse(raw).attachments[0].filename == "Grüsse.pdf"
    # Found by the property test: the standard library raises on a NUL in a label.
    hostile = _mail(b"Content-Type: text/plain; charset*=ut\x00f-8''x\n"
                    b"Content-Disposition: attachment; filename*=punycode''a%C3%A4.txt\n")
    [attachment] = parse(hostile).attachments
    assert attachment.filename == "aä.txt"


def test_odd_content_type_is_not_passed_on():
    [attachment] = parse(_mail(b"Content-Type: tex\x00/plain\nContent-Disposition: attachment\n")
                         ).attachments
    assert attachment.content_type == "application/octet-stream"


def test_uuencoded_attachment_without_begin_line_is_decoded():
    raw = _mail(b"Content-Type: application/msword\nContent-Disposition: attachment; "
                b"filename=\"notes.txt\"\nContent-Transfer-Encoding: x-uuencode\n",
                b",2&5L;&\\@6F%M;6%D\n`\n")
    assert parse(raw).attachments[0].payload == b"Hello Zammad"


def test_nul_in_a_charset_label_of_8bit_text_is_survived():
    # Found by the property test: the library decodes 8-bit payloads by their label.
    raw = _mail(b"Content-Type: text/plain; charset=\"us-a\x00scii\"\n", b"Gr\xfc\xdfe\n")
    assert parse(raw).text == "Grüße\n"
    # ... and on an RFC 2231 label, where it passes a tuple as the codec name.
    raw = _mail(b"Content-Type: text/plain; charset*=iso-8859-1''\n", b"Gr\xfc\xdfe\n")
    assert parse(raw).text == "Grüße\n"
