"""Whatever bytes arrive, parse and classify give a value or a ParseError, nothing else.

Hypothesis feeds them random bytes, real messages from the corpus with bytes
flipped, cut off or headers repeated, and headers whose values carry CR, LF, NUL
and 8-bit bytes. Every string that comes out must be fit for the database and
JSON (valid UTF-8, no NUL), and subjects and names must be one line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhelp.errors import ParseError
from mailhelp.mail.charsets import decode, header_text
from mailhelp.mail.classify import classify
from mailhelp.mail.parse import Inbound, parse
from tests.corpus import CORPUS, corpus_rows

DATA = Path(__file__).resolve().parents[1] / "data"
# Small real messages keep each example fast; the synthetic ones work without the corpus.
SEEDS = [(CORPUS / r["path"]).read_bytes() for r in corpus_rows()
         if "body-only" not in r["tag"] and int(r["bytes"]) < 20_000][::4] + [
    path.read_bytes() for path in sorted(DATA.glob("*.eml"))] + [
    b"From: a@x.test\nSubject: hi\n\nhello\n",
    b"From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\nContent-Type: multipart/mixed; boundary=b\n\n"
    b"--b\nContent-Type: text/plain; charset=latin1\n\nGr\xfc\xdfe\n--b\n"
    b"Content-Type: application/ms-tnef; name=winmail.dat\nContent-Transfer-Encoding: base64\n\n"
    b"eJ8+IgEAAgKQBgAOAAAAAQD/////AAAAAAAA\n--b--\n",
]
HEADER_NAMES = ["From", "To", "Cc", "Reply-To", "Sender", "Subject", "Date", "Message-ID",
                "In-Reply-To", "References", "Content-Type", "Content-Disposition",
                "Content-Transfer-Encoding", "Auto-Submitted", "Return-Path", "X-Other"]
# MAILHELP_PROPERTY_EXAMPLES=5000 for a long hunt; the default keeps the suite quick.
PROPERTY = settings(max_examples=int(os.environ.get("MAILHELP_PROPERTY_EXAMPLES", "200")),
                    deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Bytes that break parsers: line ends, NUL, 8-bit, and the syntax of encoded words.
nasty_bytes = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b"\xff", b"\xe4",
                                        b"\xc3", b"=?", b"?=", b"?q?", b"?b?", b"utf-7", b"<",
                                        b">", b",", b'"', b";", b"@", b" ", b"\t", b"a", b"=C3"])
                       | st.binary(max_size=6), max_size=30).map(b"".join)


def strings(value: object):
    """Every str inside an Inbound, however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | int | float | type(None)) or hasattr(value, "isoformat"):
        return
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from strings(item)
    elif dataclasses.is_dataclass(value):
        for item in dataclasses.fields(value):
            yield from strings(getattr(value, item.name))


def check(raw: bytes) -> None:
    try:
        inbound = parse(raw)
    except ParseError as error:
        assert not str(error).startswith("internal error"), error  # a bug, not bad mail
        return
    assert isinstance(inbound, Inbound)
    classify(inbound, "help@school.test")
    for text in strings(inbound):
        text.encode("utf-8")  # no lone surrogates
        assert "\x00" not in text
    for line in (inbound.subject, inbound.sender.name, *(a.name for a in inbound.to),
                 *(a.name for a in inbound.cc), *(a.filename for a in inbound.attachments)):
        assert "\r" not in line and "\n" not in line


@PROPERTY
@given(st.binary(max_size=4096))
def test_random_bytes(raw):
    check(raw)


@PROPERTY
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                        max_size=20), st.floats(0.05, 1))
def test_corpus_messages_with_flipped_bytes_and_cut_short(seed, flips, keep):
    raw = bytearray(seed[:max(1, int(len(seed) * keep))])
    for where, byte in flips:
        raw[min(int(where * len(raw)), len(raw) - 1)] = byte
    check(bytes(raw))


@PROPERTY
@given(st.sampled_from(SEEDS), st.integers(0, 40), st.integers(1, 30))
def test_corpus_messages_with_repeated_headers(seed, which, times):
    head, separator, body = seed.partition(b"\n\n")
    lines = head.split(b"\n")
    line = lines[which % len(lines)]
    check(b"\n".join(lines + [line] * times) + separator + body)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), nasty_bytes), max_size=12),
       nasty_bytes)
def test_header_values_with_line_ends_nul_and_8bit(headers, body):
    check(b"".join(name.encode() + b": " + value + b"\n" for name, value in headers)
          + b"\n" + body)


@PROPERTY
@given(nasty_bytes, st.sampled_from(["utf-8", "utf-7", "iso-2022-jp", "gb2312", "latin1",
                                     "x-unknown", "utf-16", "punycode", "base64", ""]))
def test_every_decode_gives_clean_text(data, label):
    for text in (decode(data, label), header_text(data.decode("ascii", "surrogateescape"))):
        text.encode("utf-8")
        assert "\x00" not in text
