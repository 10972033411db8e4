"""Header blocks written by composer.py read back exactly as the email package's own."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhelp.delivery.templating import Rendered
from mailhelp.mail import composer

FIELDS = [
    ("From", "Maria García via Springfield SD Help Desk <help@school.test>"),
    ("To", "Maria Garcia <mgarcia@school.test>, \"Doe, John\" <jdoe@school.test>"),
    ("Subject", "[#12] Projector in room 204 does not turn on since Monday morning, "
                "also the screen is flickering"),
    ("Subject", "[#12] Beamer défectueux – salle 204"),
    ("Date", "Sat, 28 Nov 2026 16:15:55 +0000"),
    ("Message-ID", "<179588255540.9080.3656447022268404720.mailhelp.t1234@school.test>"),
    ("X-Mailhelp-Ticket", "12"),
]


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.mark.parametrize(("name", "value"), FIELDS)
def test_headers_read_back_as_the_policy_writes_them(name, value):
    ours = parsed(composer.headers([(name, value)]) + b"\r\n")
    mail = EmailMessage()
    mail[name] = value
    theirs = parsed(mail.as_bytes(policy=email.policy.SMTP))
    assert str(ours[name]) == str(theirs[name]) == " ".join(value.split())
    assert all(len(line) <= 78 for line in composer.headers([(name, value)]).split(b"\r\n"))


def test_short_ascii_header_is_written_as_it_is():
    assert composer.headers([("Auto-Submitted", "auto-replied")]) == \
        b"Auto-Submitted: auto-replied\r\n"


def test_non_ascii_is_encoded():
    line = composer.headers([("Subject", "Beamer défectueux")])
    assert line.isascii() and b"=?utf-8?" in line


@pytest.mark.parametrize("value", ["a\r\nBcc: x@evil.example", "a\nb", "a\rb"])
def test_line_breaks_are_refused(value):
    with pytest.raises(ValueError, match="Subject"):
        composer.headers([("Subject", value)])


def test_references_fold_between_ids():
    ids = [f"<{i}.{'x' * 30}@mail.school.test>" for i in range(6)]
    block = composer.id_list("References", ids)
    lines = block.split(b"\r\n")[:-1]
    assert len(lines) > 1 and all(len(line) <= 78 for line in lines)
    assert parsed(block + b"\r\n")["References"].split() == ids


def test_odd_references_go_through_the_policy():
    ids = ["<a@x>", "not-an-id", "<" + "y" * 90 + "@x>"]
    block = composer.id_list("References", ids)
    assert parsed(block + b"\r\n")["References"].split() == ids


def test_body_is_a_complete_mime_entity():
    content = composer.body(Rendered("s", "hello\n", "<p>hello</p>\n"))
    mail = parsed(composer.headers([("Subject", "s")]) + content)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_body(("plain",)).get_content().splitlines() == ["hello"]
    assert mail.get_body(("html",)).get_content().splitlines() == ["<p>hello</p>"]


def test_bodies_share_one_boundary_that_never_occurs_in_the_parts():
    content = composer.body(Rendered("s", "x\n", "<p>x</p>\n"))
    assert f'boundary="{composer.BOUNDARY}"'.encode() in content
    # Text that carries the boundary (sent as it is: short ASCII lines) gets another one.
    sly = f"--{composer.BOUNDARY}\nContent-Type: text/html\n\n<script>\n"
    content = composer.body(Rendered("s", sly, "<p>x</p>\n"))
    assert f'boundary="{composer.BOUNDARY}"'.encode() not in content
    mail = parsed(composer.headers([("Subject", "s")]) + content)
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail.get_body(("plain",)).get_content().splitlines() == sly.splitlines()


def test_body_is_what_the_default_policy_builds():
    rendered = Rendered("s", "Grüße, " + "long line " * 20 + "\n", "<p>é</p>\n")
    mail = EmailMessage(policy=email.policy.SMTP)
    mail.set_content(rendered.text)
    mail.add_alternative(rendered.html, subtype="html")
    mail.set_boundary(composer.BOUNDARY)
    assert composer.body(rendered) == mail.as_bytes()


_TEXT = st.text(st.sampled_from("ab xy\n\r\t.=-é€🙂\x0b\u2028"), max_size=300)


@settings(max_examples=400, deadline=None)
@given(text=_TEXT, html=_TEXT, long_line=st.integers(0, 120))
def test_the_written_body_is_the_packages_byte_for_byte(text, html, long_line):
    # The body nearly every mail has is written directly; it must never differ from
    # what the email package makes of the same words (encoding choice, line ends).
    text = "w" * long_line + text
    rendered = Rendered("s", text, html)
    assert composer._alternative(text, html) == composer._by_package(rendered)


@pytest.mark.parametrize("content_type", [
    "message/delivery-status", "message/rfc822", "multipart/mixed", "MESSAGE/global"])
def test_a_stored_message_or_multipart_file_goes_as_its_bytes(content_type):
    """Such a file (a bounce's status part, an attached message) kept on a ticket and sent
    on to staff made the email package fail the whole mail (#assign on such a ticket)."""
    from mailhelp.mail.attachment import Attachment

    data = b"Reporting-MTA: dns; x\r\n\r\nAction: failed\r\n"
    raw = composer.body(Rendered("s", "text", "<p>html</p>"),
                        [Attachment("status.txt", content_type, data)])
    part = next(email.message_from_bytes(raw, policy=email.policy.default).iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_content() == data
