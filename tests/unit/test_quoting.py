from __future__ import annotations

import pytest

from mailhelp.mail.parse import parse
from mailhelp.mail.quoting import QUESTION_LINES, inline_answer, new_text, new_text_of


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


# --- Bounded work (issue 15): what the library is shown, and what comes back --------

def test_runs_of_blank_lines_come_back_as_two():
    text = "Still broken." + "\n" * 30_000 + "Jane\n\nOn Mon, X <help@school.test> wrote:\n> hi"
    assert new_text(text) == "Still broken.\n\n\nJane"


def test_a_long_line_is_kept_whole_and_indented():
    line = "    " + "error " * 10_000
    text = f"Log:\n{line}\n\nOn Mon, Nov 23, 2026 at 8:12 AM Help Desk <help@school.test> " \
           "wrote:\n> New ticket"
    assert new_text(text) == f"Log:\n{line.rstrip()}"


def test_two_spaces_after_a_dash_are_no_signature():
    # Runs of spaces are cut short for the library only from nine on: "-  x" stays
    # as written, and is no "- x" signature line to it.
    text = "Thanks\n\n   -  European Foundation for Quality Management\n"
    assert "European" in new_text(text, signature=False)


def test_a_reply_longer_than_the_library_reads_is_cut_where_it_finds_quotes():
    from mailhelp.mail.quoting import LIBRARY_TEXT

    quote = "\n\nOn Mon, Nov 23, 2026 at 8:12 AM Help Desk <help@school.test> wrote:\n"
    text = "Fixed, thanks." + quote + "> old line\n" * LIBRARY_TEXT
    assert new_text(text) == "Fixed, thanks."


def test_a_long_reply_without_quotes_in_what_is_read_is_kept_whole():
    from mailhelp.mail.quoting import SOURCE_TEXT

    text = "A pasted log:\n" + "line of output\n" * (SOURCE_TEXT // 10)
    assert new_text(text) == text.strip("\n")
    # Without the signature (to judge the reply) it is what was read of it.
    assert len(new_text(text, signature=False)) < len(text) // 2


def test_a_messages_new_text_comes_in_either_form_whichever_is_asked_first():
    # A message remembers its new text (test_pipeline checks that it is worked out once,
    # before the write transaction): what it remembers must answer for both forms.
    text = b"Fixed.\n\n--\nSam\nExt. 214\n\nOn Mon, X <h@x.test> wrote:\n> old\n"
    head = b"From: a@x.test\nSubject: Re: x\n\n"
    for first in (False, True):
        inbound = parse(head + text)
        asked = [new_text_of(inbound, signature=first),
                 new_text_of(inbound, signature=not first),
                 new_text_of(inbound, signature=first)]
        signed, unsigned = "Fixed.\n\n--\nSam\nExt. 214", "Fixed."
        expected = [signed, unsigned, signed] if first else [unsigned, signed, unsigned]
        assert asked == expected
        assert asked[:2] == [new_text(text.decode(), signature=first),
                             new_text(text.decode(), signature=not first)]


def test_outlook_html_with_two_reply_markers():
    # The second marker is gone with the first one's following siblings (lxml's
    # drop_tree then failed with an AssertionError, and the message with it).
    raw = (b"From: a@x.test\r\nSubject: RE: [#1] x\r\nContent-Type: text/html\r\n\r\n"
           b"<html><body><div>Done.</div><div id=\"appendonsend\"></div><div>old</div>"
           b"<div id=\"appendonsend\"></div><div>older</div></body></html>")
    assert new_text_of(parse(raw)) == "Done."


# Answers between the quoted lines (mutt style) -----------------------------------------

MUTT = """Hi Jane,

On Mon, Nov 23, 2026 at 08:12:45AM -0500, Help Desk wrote:
> New ticket [#1] from Jane Teacher <teacher1@school.test>
> CC: teacher2@school.test
>
> Can the printer in room 12 print double-sided?
> Or only single pages?

Yes, single pages work; double-sided needs the new driver.

>
> Do I need to bring paper tomorrow?
>

No need, I will be there before 8:00.

> Thanks,
> Jane
>
> --
> Reply to this message to answer Jane Teacher.

--
Sam Tech, ext. 204"""


def test_an_interleaved_answer_keeps_each_answered_question_above_its_answer():
    assert inline_answer(MUTT) == (
        "Hi Jane,\n\n"
        "> Can the printer in room 12 print double-sided?\n> Or only single pages?\n\n"
        "Yes, single pages work; double-sided needs the new driver.\n\n"
        "> Do I need to bring paper tomorrow?\n\n"
        "No need, I will be there before 8:00.\n\n"
        "--\nSam Tech, ext. 204")


def test_the_desk_s_own_lines_above_a_question_are_not_relayed():
    # The notification's header and CC line are staff's; the quoted signature and the
    # footer are no question, even with the writer's signature below them.
    answer = inline_answer(MUTT)
    assert "New ticket" not in answer and "CC:" not in answer
    assert "Reply to this message" not in answer and "wrote:" not in answer


@pytest.mark.parametrize("text", [
    "Top answer.\n\nOn Mon, Nov 23, 2026, Help Desk <help@school.test> wrote:\n> a\n> b\n",
    "On Mon, Nov 23, 2026, Help Desk <help@school.test> wrote:\n> a\n> b\n\nBottom answer.",
    "Top.\n\n> a\n\nBottom.",  # one quote between: no question answered, then another
    "No quotes at all.\nJust text.",
    "",
])
def test_a_top_or_bottom_posted_answer_is_not_interleaved(text):
    assert inline_answer(text) is None


def test_an_answered_quote_keeps_only_its_last_lines():
    long_question = "\n".join(f"> line {n}" for n in range(30))
    answer = inline_answer(f"{long_question}\nAnswer one.\n> q2\nAnswer two.")
    kept = [line for line in answer.split("\n") if line.startswith(">")]
    assert len(kept) == QUESTION_LINES + 1 and kept[QUESTION_LINES - 1] == "> line 29"


def test_nested_and_unspaced_quotes_become_quoted_lines():
    assert inline_answer(">q1\nA1\n>> q2\n> > q3\nA2") == "> q1\n\nA1\n\n> q2\n> q3\n\nA2"


def test_inline_answer_of_a_message_and_of_html_only_mail():
    from mailhelp.mail.quoting import inline_answer_of

    raw = (b"From: tech1@school.test\nTo: help@school.test\nSubject: Re: [#1] x\n"
           b"Message-ID: <i1@school.test>\n\n" + MUTT.encode())
    inbound = parse(raw)
    assert inline_answer_of(inbound).startswith("Hi Jane,\n\n> Can the printer")
    html = parse(raw.replace(b"\n\n", b"\nContent-Type: text/html\n\n", 1))
    assert inline_answer_of(html) is None
