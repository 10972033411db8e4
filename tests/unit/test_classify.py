from __future__ import annotations

from pathlib import Path

import pytest

from mailhelp.classify import AUTO_REPLY, BOUNCE, HUMAN, LOOP, SPAM, classify
from mailhelp.parse import parse

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
