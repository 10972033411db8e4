from __future__ import annotations

import pytest

from mailhelp.parse import parse
from mailhelp.quoting import new_text, new_text_of


@pytest.mark.parametrize(("text", "expected"), [
    ("Works now.\n\nOn Mon, Nov 23, 2026 at 8:12 AM Help Desk <\nhelp@school.test> wrote:\n"
     "> Hello Jane,\n> we have received your request\n", "Works now."),
    ("Still broken.\n\n-----Original Message-----\nFrom: Help Desk\nSent: Monday\n"
     "Subject: [#1] x\n\nHello Jane", "Still broken."),
    ("Danke!\n\nAm 23.11.2026 um 08:12 schrieb Help Desk <help@school.test>:\n> Hallo",
     "Danke!"),
    ("On 04/02/2012 06:26 PM, Megan One wrote:\n> Hi\nHello", "Hello"),
    ("Try this:\n\n    sudo systemctl restart cups\n\nSam\n\n"
     "On Mon, Nov 23, 2026, Help Desk <help@school.test> wrote:\n> New ticket",
     "Try this:\n\n    sudo systemctl restart cups\n\nSam"),
    ("Here it is.\n\n________________________________\nFrom: Help Desk <help@school.test>\n"
     "Sent: Monday, November 23, 2026 8:12 AM\nSubject: [#1] x\n\nHello",
     "Here it is."),
    ("", ""),
])
def test_new_text(text, expected):
    assert new_text(text) == expected


def test_signature_is_kept_unless_asked():
    text = "Thanks!\n\n--\nJane Teacher\nRoom 12\n\nOn Mon, X <help@school.test> wrote:\n> hi"
    assert new_text(text) == "Thanks!\n\n--\nJane Teacher\nRoom 12"
    assert new_text(text, signature=False) == "Thanks!"


def test_a_message_of_quotes_only_keeps_its_unquoted_lines():
    assert new_text("> all quoted\n> here") == "> all quoted\n> here" or \
        new_text("> all quoted\n> here") == ""


def test_html_only_reply_is_cut_after_conversion():
    raw = (b"From: a@x.test\r\nSubject: Re: [#1] x\r\nContent-Type: text/html; charset=utf-8"
           b"\r\n\r\n<div>Fixed, thank you.</div><div class=\"gmail_quote\">On Mon, Nov 23, "
           b"2026 at 8:12 AM Help Desk &lt;help@school.test&gt; wrote:<blockquote>Hello Jane,"
           b" we have received your request</blockquote></div>")
    assert new_text_of(parse(raw)) == "Fixed, thank you."


def test_outlook_html_reply_drops_everything_after_the_reply_marker():
    raw = (b"From: a@x.test\r\nSubject: RE: [#1] x\r\nContent-Type: text/html\r\n\r\n"
           b"<html><body><div>Sure, Tuesday works.</div><div id=\"appendonsend\"></div><hr>"
           b"<div id=\"divRplyFwdMsg\"><b>From:</b> Help Desk<br><b>Sent:</b> Monday</div>"
           b"<div>Hello Jane, we have received your request</div></body></html>")
    inbound = parse(raw)
    assert "we have received" in inbound.text  # the full text is kept as received
    assert new_text_of(inbound) == "Sure, Tuesday works."
