from __future__ import annotations

from pathlib import Path

import pytest

from mailhelp.mail.classify import AUTO_REPLY, BOUNCE, HUMAN, LOOP, SPAM, classify
from mailhelp.mail.parse import parse
from tests.corpus import CORPUS, corpus_rows, skip_without_corpus

DATA = Path(__file__).resolve().parents[1] / "data"
HELP = "help@school.test"


def message(headers: str, body: str = "hello") -> bytes:
    base = "From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Help\n"
    return (base + headers + "\n" + body + "\n").encode()


@pytest.mark.parametrize(("headers", "kind"), [
    ("", HUMAN),
    ("Auto-Submitted: no\n", HUMAN),
    ("Auto-Submitted: auto-replied\n", AUTO_REPLY),
    ("Auto-Submitted: auto-generated\n", AUTO_REPLY),
    ("X-Autoreply: yes\n", AUTO_REPLY),
    ("X-Autorespond: yes\n", AUTO_REPLY),
    ("Precedence: bulk\n", AUTO_REPLY),
    ("Precedence: list\n", AUTO_REPLY),
    ("List-Id: <staff.school.test>\n", AUTO_REPLY),
    ("Return-Path: <>\n", BOUNCE),
    ("X-Failed-Recipients: nobody@x.test\n", BOUNCE),
    ("Content-Type: multipart/report; report-type=delivery-status; boundary=x\n", BOUNCE),
    ("X-Spam-Flag: YES\n", SPAM),
    (f"X-Mailhelp-Loop: {HELP}\n", LOOP),
])
def test_headers_decide(headers, kind):
    assert classify(parse(message(headers)), HELP).kind == kind


def test_out_of_office_subject():
    raw = (DATA / "out_of_office.eml").read_bytes()
    assert classify(parse(raw), HELP).kind == AUTO_REPLY
    raw = raw.replace(b"Auto-Submitted: auto-replied\n", b"")
    verdict = classify(parse(raw), HELP)
    assert verdict.kind == AUTO_REPLY and "out-of-office" in verdict.reason


@pytest.mark.parametrize("sender", ["help@school.test", "HELP+12@school.test"])
def test_mail_from_the_help_address_is_a_loop(sender):
    raw = message("").replace(b"teacher1@school.test", sender.encode(), 1)
    assert classify(parse(raw), HELP).kind == LOOP


def test_mailer_daemon_is_a_bounce():
    raw = message("").replace(b"Jane <teacher1@school.test>", b"MAILER-DAEMON@mx.school.test")
    assert classify(parse(raw), HELP).kind == BOUNCE


def test_a_teacher_is_human():
    assert classify(parse((DATA / "teacher_projector.eml").read_bytes()), HELP).kind == HUMAN


# Real-world shapes from the corpus: sisimai's bounces from many MTAs and providers,
# its RFC 3834 auto-replies and ARF complaints, flanker's bounces.

def corpus_paths(*prefixes: str) -> list:

    found = [r["path"] for r in corpus_rows() if "sisimai" in r["path"] or "flanker" in r["path"]]
    return [p for p in found if p.split("/")[-1].startswith(prefixes) or
            any(f"/{prefix}" in p for prefix in prefixes)]


def verdict_of(path: str):
    return classify(parse((CORPUS / path).read_bytes()), HELP)


@pytest.mark.parametrize("mta", ["postfix", "exim", "sendmail", "qmail", "exchange2007",
                                 "office365", "gmail", "courier", "opensmtpd", "notes"])
def test_corpus_bounces_of_common_mtas(mta):
    paths = corpus_paths(f"lhost-{mta}-")
    if not paths:
        skip_without_corpus()
    kinds = [verdict_of(p).kind for p in paths]
    assert kinds.count(BOUNCE) / len(kinds) >= 0.9, list(zip(paths, kinds, strict=True))


def test_corpus_bounces_are_never_answered():
    paths = corpus_paths("lhost-", "rhost-", "rfc3464-", "bounce/")
    if not paths:
        skip_without_corpus()
    verdicts = [verdict_of(p) for p in paths]
    bounces = sum(v.kind == BOUNCE for v in verdicts)
    automatic = sum(v.automatic for v in verdicts)
    assert bounces / len(paths) >= 0.95
    assert automatic / len(paths) >= 0.97


def test_corpus_auto_replies_and_complaints_are_automatic():
    replies = corpus_paths("rfc3834-")
    complaints = corpus_paths("arf-", "complaints/")
    if not replies:
        skip_without_corpus()
    assert all(verdict_of(p).kind == AUTO_REPLY for p in replies)
    # Three of twenty ARF samples carry no report type at all: they look like mail.
    assert sum(verdict_of(p).automatic for p in complaints) / len(complaints) >= 0.85
