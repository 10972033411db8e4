"""Large part bodies read from the raw bytes give exactly what the standard library's
parser gives: the same Inbound, whatever the structure, the line ends or the damage."""

from __future__ import annotations

import base64
import email
import os
import quopri
import random
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhelp.mail import largeparts
from mailhelp.mail.parse import Inbound, parse

HEAD = (b"From: Jane Teacher <teacher1@school.test>\nTo: help@school.test\n"
        b"Subject: The recording\nMessage-ID: <big@school.test>\nMIME-Version: 1.0\n")
EOLS = pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])


@contextmanager
def large_part(size: int) -> Iterator[None]:
    saved, largeparts.LARGE_PART = largeparts.LARGE_PART, size
    try:
        yield
    finally:
        largeparts.LARGE_PART = saved


def plain(raw: bytes) -> Inbound:
    """The parse with every body left to the standard library."""
    with large_part(2**62):
        return parse(raw)


def cut_out(raw: bytes, size: int = 1024) -> Inbound:
    """The parse with every body from ``size`` bytes on read from the raw bytes."""
    with large_part(size):
        return parse(raw)


def fast_path_taken(raw: bytes, size: int = 1024) -> bool:
    with large_part(size):
        reduced, cuts = largeparts.cut(raw)
    return bool(cuts) and largeparts.bodies(email.message_from_bytes(reduced), raw,
                                            cuts) is not None


def lines(text: bytes, eol: bytes) -> bytes:
    return text.replace(b"\n", eol)


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data)


def leaf(ctype: bytes, encoding: bytes, body: bytes, name: bytes = b"") -> bytes:
    disposition = b'Content-Disposition: attachment; filename="%s"\n' % name if name else b""
    return (b"Content-Type: %s\n%sContent-Transfer-Encoding: %s\n\n" % (ctype, disposition,
                                                                     encoding) + body)


def multipart(subtype: bytes, boundary: bytes, parts: list[bytes], end: bool = True) -> bytes:
    text = b'Content-Type: multipart/%s; boundary="%s"\n\n' % (subtype, boundary)
    for part in parts:
        text += b"--%s\n%s\n" % (boundary, part)
    return text + (b"--%s--\n" % boundary if end else b"")


DATA = random.Random(6).randbytes(60_000)
TEXT = leaf(b"text/plain; charset=utf-8", b"7bit", b"Hi,\n\nthe recording is attached.\n")
PDF = leaf(b"application/pdf", b"base64", b64(DATA), b"lesson.pdf")


@EOLS
def test_base64_attachment_in_multipart_mixed(eol):
    raw = lines(HEAD + multipart(b"mixed", b"outer", [TEXT, PDF]), eol)
    assert fast_path_taken(raw)
    inbound = cut_out(raw)
    assert inbound == plain(raw)
    assert [a.payload for a in inbound.attachments] == [DATA]


@EOLS
def test_quoted_printable_attachment(eol):
    text = b"".join(b"line %d = caf\xc3\xa9 " % n + b"x" * (n % 90) + b"\n" for n in range(900))
    # A signature separator and a "--" line that is no delimiter stay in the body.
    body = quopri.encodestring(text) + b"-- \nJane\n--not-the-boundary\n"
    raw = lines(HEAD + multipart(b"mixed", b"outer", [
        TEXT, leaf(b"text/plain; charset=utf-8", b"quoted-printable", body, b"notes.txt")]), eol)
    assert fast_path_taken(raw)
    assert cut_out(raw) == plain(raw)


@EOLS
def test_nested_multiparts_and_an_attached_message(eol):
    alternative = multipart(b"alternative", b"alt", [
        TEXT, leaf(b"text/html", b"quoted-printable", b"<p>Hi=2C</p>\n" * 2000)])
    related = multipart(b"related", b"rel", [
        leaf(b"text/html", b"7bit", b'<img src="cid:i">\n'),
        b"Content-ID: <i>\n" + leaf(b"image/png", b"base64", b64(DATA[:30_000]))])
    forwarded = (b"Content-Type: message/rfc822\n\nFrom: a@x.test\nSubject: Fwd\n"
                 + multipart(b"mixed", b"inner", [TEXT, PDF]))
    raw = lines(HEAD + multipart(b"mixed", b"outer", [alternative, related, forwarded]), eol)
    assert fast_path_taken(raw)
    assert cut_out(raw) == plain(raw)


@EOLS
@pytest.mark.parametrize("ending", [b"\n", b""], ids=["newline", "none"])
def test_missing_end_boundary(eol, ending):
    raw = lines(HEAD + multipart(b"mixed", b"outer", [TEXT, PDF], end=False), eol)
    raw = raw.rstrip(b"\r\n") + lines(ending, eol)
    assert fast_path_taken(raw)
    assert cut_out(raw) == plain(raw)


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 77])
def test_truncated_base64(cut):
    body = b64(DATA)[:-cut]
    raw = HEAD + multipart(b"mixed", b"outer", [TEXT, leaf(b"application/pdf", b"base64", body,
                                                           b"lesson.pdf")], end=False)
    assert cut_out(raw) == plain(raw)


def test_a_delimiter_inside_a_large_body_ends_the_part():
    encoded = b64(DATA)
    middle = len(encoded) // 2 // 77 * 77
    body = encoded[:middle] + b"--outer\n" + encoded[middle:]
    raw = HEAD + multipart(b"mixed", b"outer", [TEXT, leaf(b"application/pdf", b"base64", body)])
    assert cut_out(raw) == plain(raw)


def test_a_boundary_declared_in_rfc2231_form_that_never_comes():
    raw = (HEAD + b"Content-Type: multipart/signed;\n\tboundary*=us-ascii''sig\n\n\n--sig\n"
           + leaf(b"text/plain", b"base64", b64(DATA)) + b"\n--sig--\n")
    assert cut_out(raw) == plain(raw)


def test_eight_bit_bytes_in_a_large_body_leave_it_to_the_parser():
    body = b64(DATA)[:40_000] + b"\xe9t\xe9\n" + b64(DATA)[40_000:]
    raw = HEAD + multipart(b"mixed", b"outer", [TEXT, leaf(b"application/pdf", b"base64", body)])
    assert not fast_path_taken(raw)
    assert cut_out(raw) == plain(raw)


@pytest.mark.parametrize("ending", [b"\n", b""], ids=["newline", "none"])
@pytest.mark.parametrize("encoding", [b"base64", b"quoted-printable"])
def test_a_single_part_message(encoding, ending):
    # No multipart strips the last line break here: it belongs to the payload.
    body = b64(DATA) if encoding == b"base64" else quopri.encodestring(DATA)
    raw = (HEAD + b'Content-Type: application/pdf; name="a.pdf"\n'
           b"Content-Transfer-Encoding: %s\n\n" % encoding + body.rstrip(b"\n") + ending)
    assert fast_path_taken(raw)
    assert cut_out(raw) == plain(raw)


@pytest.mark.parametrize("encoding", [b"x-uuencode", b"uue", b"8bit", b"binary", b"BASE64 ",
                                      b"quoted-printable "])
def test_other_transfer_encodings(encoding):
    uu = b"".join(base64.b64encode(DATA[n:n + 45]) + b"\n" for n in range(0, 30_000, 45))
    raw = HEAD + multipart(b"mixed", b"outer", [TEXT, leaf(b"application/octet-stream",
                                                           encoding, uu, b"data.bin")])
    assert cut_out(raw) == plain(raw)


def test_a_large_delivery_status_is_left_to_the_parser():
    status = b"Reporting-MTA: dns; mx.school.test\n\n" + b"X-Note: padding\n" * 5000
    raw = (HEAD + b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\n\n"
           b"--r\nContent-Type: message/delivery-status\n\n" + status + b"\n--r--\n")
    assert cut_out(raw) == plain(raw)


def test_text_that_looks_like_a_marker():
    body = b"X-Mailhelp-Cut-0123456789abcdef-0: .\n" + b"just text\n" * 3000
    raw = HEAD + multipart(b"mixed", b"outer", [leaf(b"text/plain", b"7bit", body)])
    assert fast_path_taken(raw)
    assert cut_out(raw) == plain(raw)


def test_default_threshold_on_a_megabyte_attachment():
    data = random.Random(7).randbytes(2**20)
    raw = HEAD + multipart(b"mixed", b"outer", [TEXT, leaf(b"video/mp4", b"base64", b64(data),
                                                           b"lesson.mp4")])
    assert fast_path_taken(raw, largeparts.LARGE_PART)
    inbound = parse(raw)
    assert inbound == plain(raw)
    assert inbound.attachments[0].payload == data


def test_parsing_holds_little_more_than_the_attachment():
    data = random.Random(8).randbytes(4 * 2**20)
    raw = HEAD + multipart(b"mixed", b"outer", [TEXT, leaf(b"video/mp4", b"base64", b64(data),
                                                           b"lesson.mp4")])
    parse(raw)  # imports and caches, outside the measurement
    tracemalloc.start()
    try:
        parse(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The decoded attachment is 0.74 of the message; the whole-message parse held 7.7.
    assert peak < 1.2 * len(raw)


# Random structures: every kind of part, damage and line end, each body cut out.

BOUNDARIES = [b"b1", b"b2", b"b", b"b1b", b"=_x"]


@st.composite
def bodies(draw) -> tuple[bytes, bytes]:
    data = draw(st.binary(max_size=120))
    kind = draw(st.sampled_from(["base64", "qp", "plain", "dashes"]))
    if kind == "base64":
        text = b64(data)
        return b"base64", text[:draw(st.integers(0, len(text)))]
    if kind == "qp":
        return b"quoted-printable", quopri.encodestring(data)
    if kind == "dashes":
        choices = [b"-- ", b"--b1", b"--b1--", b"--b", b"--x", b"", b"abc", b"Subject: hi"]
        return (draw(st.sampled_from([b"7bit", b"base64", b"quoted-printable"])),
                b"\n".join(draw(st.lists(st.sampled_from(choices), max_size=5))) + b"\n")
    return (draw(st.sampled_from([b"7bit", b"8bit", b""])),
            b"".join(draw(st.lists(st.sampled_from([b"abc", b"\n", b"\xe9", b"=41", b"--"]),
                                   max_size=20))))


@st.composite
def parts(draw, depth: int = 0) -> bytes:
    kind = draw(st.sampled_from(["leaf", "leaf", "multipart", "message", "status"]
                                if depth < 3 else ["leaf"]))
    if kind == "multipart":
        boundary = draw(st.sampled_from(BOUNDARIES))
        declared = draw(st.sampled_from([b'boundary="%s"', b"boundary=%s",
                                         b"boundary*=us-ascii''%s"])) % boundary
        text = b"Content-Type: multipart/%s; %s\n\n" % (
            draw(st.sampled_from([b"mixed", b"digest", b"alternative"])), declared)
        for inner in draw(st.lists(parts(depth + 1), max_size=3)):
            text += b"--%s\n%s\n" % (boundary, inner)
        return text + draw(st.sampled_from([b"--%s--\n" % boundary, b""]))
    if kind == "message":
        return b"Content-Type: message/rfc822\n\nSubject: inner\n" + draw(parts(depth + 1))
    if kind == "status":
        return (b"Content-Type: message/delivery-status\n\nReporting-MTA: x\n\n"
                b"Final-Recipient: rfc822; a@b\n")
    encoding, body = draw(bodies())
    header = b"Content-Transfer-Encoding: %s\n" % encoding if encoding else b""
    return b"Content-Type: text/plain\n" + header + b"\n" + body


@settings(max_examples=int(os.environ.get("MAILHELP_PROPERTY_EXAMPLES", "200")),
          deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts(), st.sampled_from([b"\r\n", b"\n", b"\r"]), st.integers(0, 30))
def test_any_structure_parses_the_same(part, eol, truncate):
    raw = lines(HEAD + part, eol)
    raw = raw[:len(raw) - truncate] if truncate < 30 else raw
    assert cut_out(raw, size=1) == plain(raw)
