"""The worst input found for each text pass a message goes through (issue 15).

Each case builds one input and runs one pass on it. test_bounded_work.py runs the
cases marked for it against a time limit; the table in benchmarks/RESULTS.md was
made by running them all, each in a fresh process, on this code and on the code
before it (the calls used exist in both):

    python -m tests.security.worst_inputs [--timeout 120] [NAME...]
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.winmail import REPLY_HEAD as HEAD
from tests.winmail import tnef_bomb, with_winmail

HTML = b"Content-Type: text/html; charset=utf-8\n"


@dataclass(frozen=True)
class Case:
    stage: str  # the text pass
    name: str  # what the input is
    make: Callable[[], object]
    run: Callable[[object], object]
    in_tests: bool = True  # small enough for test_bounded_work.py to run every time


def _mail(body: bytes, head: bytes = b"") -> bytes:
    return HEAD + head + b"\n" + body


def _new_text(text: str) -> str:
    from mailhelp.mail.quoting import new_text

    return new_text(text) + new_text(text, signature=False)


def _html_to_text(html: str) -> str:
    from mailhelp.mail.parse import html_to_text  # where it was, and still is importable

    return html_to_text(html)


def _reply_of(raw: bytes) -> str:
    from mailhelp.mail.parse import parse
    from mailhelp.mail.quoting import new_text_of

    inbound = parse(raw)
    return new_text_of(inbound) + new_text_of(inbound, signature=False)


def _parse(raw: bytes) -> object:
    from mailhelp.mail.parse import parse

    return parse(raw)


def _drop_html_quotes(html: str) -> object:
    from mailhelp.mail.quoting import _drop_html_quotes

    return _drop_html_quotes(html)


def _commands(text: str) -> object:
    from mailhelp.desk.commands import parse

    return parse(text)


def _survey_answer(text: str) -> object:
    from mailhelp.desk.surveys import read_answer

    return read_answer(text)


def _tag(subject: str) -> object:
    from mailhelp.desk.threads import tag_pattern, ticket_subject

    return tag_pattern("#{id}").search(subject), ticket_subject(subject, "#{id}")


def _classify(raw: bytes) -> object:
    from mailhelp.mail.classify import classify
    from mailhelp.mail.parse import parse

    return classify(parse(raw), "help@school.test")


def _is_thanks(text: str) -> object:
    from mailhelp.desk.workflow import is_thanks
    from mailhelp.mail.quoting import new_text

    return is_thanks(new_text(text, signature=False))  # what the workflow hands it


def _bounce(raw: bytes) -> object:
    from mailhelp.mail.bounces import analyse

    if "key" in inspect.signature(analyse).parameters:  # signed return paths (issue 15)
        return analyse(raw, b"k" * 32, "help@school.test")
    return analyse(raw, "school.test")


def _largeparts(raw: bytes) -> object:
    from mailhelp.mail import largeparts

    return largeparts.cut(raw)


def _decode(data: bytes) -> object:
    import encodings.aliases

    from mailhelp.mail.charsets import codec, decode

    labels = sorted({codec(a) for a in set(encodings.aliases.aliases.values()) if codec(a)})
    return decode(data, "utf-8", labels)


def _ticket_text(text: str) -> object:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from mailhelp.web.views import ticket_text

    now = datetime(2026, 11, 23, tzinfo=UTC)
    person = SimpleNamespace(address=text[:320])
    ticket = SimpleNamespace(id=1, subject=text[:1000], status="open", priority="normal",
                             requester=person, assignee=None, participants=[],
                             created_at=now, updated_at=now)
    message = SimpleNamespace(id=1, direction="in", kind="reply", from_address=text[:320],
                              to=[], date=now, created_at=now, subject=text[:1000],
                              text=text, attachments=[])
    return ticket_text(ticket, [message])


def _inline_answer(text: str) -> object:
    from mailhelp.mail.quoting import inline_answer

    return inline_answer(text)


def _new_subject(subject: str) -> object:
    from mailhelp.desk.subjects import is_new_subject

    return is_new_subject(subject, subject, "#{id}")


def table_padding() -> str:
    """One cell of 20,000 short lines beside one of 100,000 characters: every line is
    padded to the width of both (200 KB of HTML made 2 GB of text)."""
    return ("<table><tr><td>" + "x<br>" * 20_000 + "</td><td>" + "y" * 100_000
            + "</td></tr></table>")


def am_schrieb_lines() -> str:
    """The German "Am ... schrieb" header pattern is cubic in a line's length."""
    return ("Am " + "schrieb " * 125 + "\n") * 30


CASES = [
    Case("quoting (mail-parser-reply)", "30,000 blank lines",
         lambda: "a" + "\n" * 30_000 + "b", _new_text),
    Case("quoting (mail-parser-reply)", "1,000,000 blank lines",
         lambda: "a" + "\n" * 1_000_000 + "b", _new_text),
    Case("quoting (mail-parser-reply)", "200,000 spaces in one line",
         lambda: "a" + " " * 200_000 + "b", _new_text),
    Case("quoting (mail-parser-reply)", "30 lines of 'Am schrieb schrieb ...' (1,000 chars)",
         am_schrieb_lines, _new_text),
    Case("quoting (mail-parser-reply)", "'On ' and a 100,000-character line",
         lambda: "On " + "x " * 50_000, _new_text),
    Case("quoting (mail-parser-reply)", "24 MB of short lines", lambda: "x\n" * 12_000_000,
         _new_text, in_tests=False),
    Case("HTML to text", "table: 20,000 lines beside a 100,000-char cell",
         table_padding, _html_to_text),
    Case("HTML to text", "padding-left:100000em on 1,000 lines (5 KB)",
         lambda: "<div style='padding-left:100000em'>" + "x<br>" * 1000 + "</div>",
         _html_to_text),
    Case("HTML to text", "300 x 300 table (0.9 MB)",
         lambda: "<table>" + ("<tr>" + "<td>x</td>" * 300 + "</tr>") * 300 + "</table>",
         _html_to_text),
    Case("HTML to text", "5 MB of <p>hello world</p>",
         lambda: "<p>hello world</p>" * 300_000, _html_to_text),
    Case("HTML to text", "<pre> with a 2 MB indent (textwrap.dedent)",
         lambda: "<pre>" + " " * 2_000_000 + "x</pre>", _html_to_text),
    Case("HTML to text", "128 KB of 'x<br>' (as much as inscriptis is given)",
         lambda: "x<br>" * 26_000, _html_to_text),
    Case("HTML to text", "a row of 5,000 cells", lambda: "<table><tr>" + "<td>x</td>" * 5000
         + "</tr></table>", _html_to_text),
    Case("HTML to text", "200 nested divs around 20,000 lines (indents)",
         lambda: "<div>" * 200 + "x<br>" * 20_000, _html_to_text),
    Case("HTML to text", "24 MB of 'a<br>' (plain conversion)",
         lambda: "a<br>" * 4_800_000, _html_to_text, in_tests=False),
    Case("HTML to text", "100,000 unclosed '<script' and '<'",
         lambda: "<script" * 100_000 + "<" * 1_000_000, _html_to_text),
    Case("HTML quotes (lxml)", "20,000 'appendonsend' markers",
         lambda: "<body>" + "<div id='appendonsend'>x</div>" * 20_000 + "</body>",
         _drop_html_quotes),
    Case("reply of an HTML-only mail", "table padding as an HTML-only reply",
         lambda: _mail(table_padding().encode(), HTML), _reply_of),
    Case("parse (TNEF)", "winmail.dat: 130,000 files of 22 bytes (2.9 MB)",
         lambda: with_winmail(tnef_bomb(130_000)), _parse),
    Case("parse (headers)", "100,000 To: headers",
         lambda: HEAD + b"To: a@b.test\n" * 100_000 + b"\nx\n", _parse),
    Case("parse (headers)", "64 KB of '(' in To:",
         lambda: HEAD.replace(b"To: help@school.test", b"To: " + b"(" * 65_000) + b"\nx\n",
         _parse),
    Case("parse (headers)", "64 KB Subject of encoded words",
         lambda: HEAD.replace(b"Subject: Re: [#1] Printer jam",
                              b"Subject: " + b"=?utf-8?q?a?= " * 5000) + b"\nx\n", _parse),
    Case("parse (body)", "24 MB plain ASCII body", lambda: _mail(b"a\n" * 12_000_000),
         _parse, in_tests=False),
    Case("parse (body)", "24 MB 8-bit UTF-8 body",
         lambda: _mail("é\n".encode() * 8_000_000, b"Content-Type: text/plain; charset=utf-8\n"),
         _parse, in_tests=False),
    Case("charsets (decode chain)", "5 MB valid UTF-8 but the last byte, 80 charsets",
         lambda: b"\xc3\xa9" * 2_500_000 + b"\xff", _decode),
    Case("largeparts", "100 boundaries, 99,000 delimiter lines",
         lambda: HEAD + b"Content-Type: multipart/mixed; boundary=b0\n\n--b0\n"
         + b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n" % i for i in range(100))
         + b"\n" + b"\n--b5x" * 99_000 + b"\n" + b"a" * 70_000 + b"\n--b0--\n", _largeparts),
    Case("commands", "'#cc a@' and 20,000 dots", lambda: "#cc a@" + "." * 20_000 + "<",
         _commands),
    Case("commands", "100,000 '#note' lines", lambda: "#note\n" * 100_000, _commands),
    Case("surveys.read_answer", "'rating' and 20,000 spaces",
         lambda: "rating" + " " * 20_000 + "!", _survey_answer),
    Case("surveys.read_answer", "'comment' and 20,000 spaces on 100 lines",
         lambda: "5\n" + ("comment" + " " * 20_000 + "x\n") * 100, _survey_answer),
    Case("threading (subject tag)", "a 1,000-character subject of '[#1'",
         lambda: "[" + "#1" * 499 + " re" + " " * 500, _tag),
    Case("classify", "1,000-character subjects, 64 KB score header",
         lambda: HEAD.replace(b"Subject: Re: [#1] Printer jam", b"Subject: " + b"re: " * 250)
         + b"X-Spam-Score: " + b"9" * 65_000 + b"\n\nx\n", _classify),
    Case("workflow.is_thanks", "a reply of 5 MB of words", lambda: "thanks " * 700_000,
         _is_thanks),
    Case("quoting (inline answers)", "64 KB of quote, answer, quote, answer lines",
         lambda: ">" + "> q\na\n" * 10_000, _inline_answer),
    Case("quoting (inline answers)", "64 KB of quoted blank lines between two answers",
         lambda: "a\n> q\n" + ">\n" * 32_000 + "b\n> q\nc", _inline_answer),
    Case("subjects (new subject)", "a 64 KB subject of words and tags",
         lambda: "Re: [#1] word " * 4_500, _new_subject),
    Case("bounces (flufl.bounce)", "5 MB 'bounce' of '550 a@b.test' lines",
         lambda: b"From: MAILER-DAEMON@x.test\nSubject: Undelivered\n\n"
         + b"550 a@b.test user unknown\n" * 200_000, _bounce, in_tests=False),
    Case("tickets show (terminal output)", "a message of 24 MB of ESC",
         lambda: "\x1b" * 24_000_000, _ticket_text, in_tests=False),
]


def warm_up() -> None:
    """Import what the passes use and build the reply parser: their first use is not
    the pass's cost."""
    for name in ("mail.parse", "mail.quoting", "desk.workflow", "mail.bounces",
                 "desk.commands", "desk.surveys", "web.views"):
        __import__(f"mailhelp.{name}")
    from mailhelp.mail.parse import html_to_text
    from mailhelp.mail.quoting import new_text

    new_text("Hi\n\nOn Mon, X wrote:\n> y")
    html_to_text("<p>x</p>")


def timed(case: Case, clock=time.perf_counter) -> tuple[float, str]:
    """Seconds the pass takes on its input (the input's making not counted), and what
    came of it: "" or the ParseError that refused the message (a bounded answer too).
    The tests pass ``time.process_time``: the CPU the pass holds, whatever else the
    machine (or the test run's other workers) is doing."""
    from mailhelp.errors import ParseError

    value = case.make()
    started = clock()
    try:
        case.run(value)
    except ParseError as error:
        return clock() - started, f"ParseError: {error}"[:120]
    return clock() - started, ""


def _child(index: int, answers: multiprocessing.Queue) -> None:
    warm_up()
    try:
        seconds, outcome = timed(CASES[index])
    except Exception as error:  # the pass failing is a result too
        answers.put(f"raised {type(error).__name__}: {error}"[:200])
        return
    answers.put(f"{seconds:.3f} s" + (f" ({outcome})" if outcome else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=120, help="seconds per case")
    parser.add_argument("names", nargs="*",
                        help="only cases whose pass or input names one of these")
    args = parser.parse_args(argv)
    print("| text pass | worst input | time |\n|---|---|---|")
    for index, case in enumerate(CASES):
        if args.names and not any(n in case.name or n in case.stage for n in args.names):
            continue
        answers: multiprocessing.Queue = multiprocessing.Queue()
        child = multiprocessing.Process(target=_child, args=(index, answers))
        child.start()
        try:
            answer = answers.get(timeout=args.timeout)
        except queue.Empty:
            answer = f"> {args.timeout:.0f} s (stopped)"
            child.kill()
        child.join()
        print(f"| {case.stage} | {case.name} | {answer} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
