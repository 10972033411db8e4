"""Cut quoted history from a reply, keeping only what is new (and its signature). Pure.

mail-parser-reply does the finding (it knows "On ... wrote:", Outlook's
"From:/Sent:" blocks and their German, French, Scandinavian... forms); this module
puts back the indentation it strips (pasted error output keeps its shape) and drops
what it leaves behind: Outlook's underscore separator lines.

The library's patterns backtrack: its signature pattern is quadratic in a run of
whitespace (20,000 blank lines took 37 s), its "Am ... schrieb" header cubic in the
length of a line, and it spends some 10 µs on every line. So it is shown a bounded
copy of the reply: runs of blank lines cut to two, long runs of spaces within a line
cut short, a long line shortened to its start and end (all it looks at), and no more
than LIBRARY_TEXT characters of that. What it keeps is mapped back onto the lines as
received. Any reply then costs it well under half a second here.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import lru_cache

LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs", "ja", "ko", "zh")
# Characters of a reply's start that are looked at, and of that what the library reads.
SOURCE_TEXT = 256 * 1024
LIBRARY_TEXT = 32 * 1024
# A longer line is shown to the library as its first and last characters: a header
# line ("On <date>, <name> <address> wrote:") is recognised by how it starts and ends.
LINE_START, LINE_END = 60, 40
_SHORTENED = " ... "

_SEPARATOR = re.compile(r"^\s*_{5,}\s*$")
_QUOTED = re.compile(r"^\s*>")
_ATTRIBUTION = re.compile(r"@|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}:\d{2}")
# Three or more blank (or whitespace-only) lines in a row.
_BLANK_RUN = re.compile(r"\n(?:[^\S\n]*\n){3,}")
_SPACE_RUN = 8  # longer runs of whitespace within a line are shown as this many spaces
_LONG_SPACE = re.compile(rf"\s{{{_SPACE_RUN + 1},}}")
_SPACE = re.compile(r"\s")


@lru_cache(maxsize=1)
def _parser():
    from mailparser_reply import EmailReplyParser
    from mailparser_reply.constants import MAIL_LANGUAGES

    return EmailReplyParser(languages=[lang for lang in LANGUAGES if lang in MAIL_LANGUAGES])


@dataclass(frozen=True)
class NewText:
    """What is new in a reply: with the writer's signature, and without it."""

    signed: str
    unsigned: str


def new_text(text: str, signature: bool = True) -> str:
    """The newest reply in ``text``, without quoted history or reply headers.

    ``signature=False`` drops the writer's signature too (to judge what they said).
    """
    found = cut(text)
    return found.signed if signature else found.unsigned


def cut(text: str) -> NewText:
    """Both forms of a reply's new text, from one reading of it.

    A reply too long to be read whole is cut where the library finds quoted history in
    its first part; where it finds none there, the new text is the whole reply (and,
    without the signature, what was read of it: that form only serves to judge a reply).
    """
    text = text.replace("\r\n", "\n")
    if not text.strip():
        return NewText("", "")
    source, shown, complete = _prepare(text)
    try:
        found = _parser().read("\n".join(shown)).replies
    except Exception:  # the library must never cost us a message
        found = []
    # The writer's own signature stays (a tech's name and extension help the teacher);
    # the library's "content" of the newest reply is its body plus that signature.
    signed = _finish(found[0].content if found else None, source, shown)
    unsigned = _finish(found[0].body if found else None, source, shown)
    if not complete and len(found) < 2:
        # No quoted history in what was read: all of this long reply may be new.
        signed = text.strip("\n")
    return NewText(signed, unsigned)


def _prepare(text: str) -> tuple[list[str], list[str], bool]:
    """(lines as received, the same lines as the library is shown them, and whether
    they are the whole text). Blank-line runs are cut to two in both."""
    complete = len(text) <= SOURCE_TEXT
    lines = _BLANK_RUN.sub("\n\n\n", text[:SOURCE_TEXT]).split("\n")
    if not complete:
        lines.pop()  # perhaps cut in the middle
    source: list[str] = []
    shown: list[str] = []
    size = 0
    for line in lines:
        view = _shown(line)
        size += len(view) + 1
        if size > LIBRARY_TEXT:
            complete = False
            break
        source.append(line)
        shown.append(view)
    return source, shown, complete


def _shown(line: str) -> str:
    # Short runs stay as written: "-  Name" is no signature, "- Name" may be one.
    line = _LONG_SPACE.sub(" " * _SPACE_RUN, line.strip())
    if len(line) <= LINE_START + LINE_END + len(_SHORTENED):
        return line
    if not _SPACE.search(line):  # one word (an underscore separator, a URL): its start
        return line[:LINE_START + LINE_END]
    return line[:LINE_START] + _SHORTENED + line[-LINE_END:]


def _finish(body: str | None, source: list[str], shown: list[str]) -> str:
    """The library's answer as lines received, less separators and quoted lines."""
    lines = source if body is None else _restore(body.split("\n"), source, shown)
    lines = _cut_attribution([line.rstrip() for line in lines if not _SEPARATOR.match(line)])
    if not any(line.strip() for line in lines):
        # Everything was quotes (a bare forward, an inline-only answer): keep the
        # unquoted lines rather than record an empty message.
        lines = [line for line in source if not _QUOTED.match(line)]
    return "\n".join(lines).strip("\n")


def _restore(found: list[str], source: list[str], shown: list[str]) -> list[str]:
    """Each line the library kept, as received (with its indent, its whole length): the
    next line it was shown that reads the same. One it changed stays as it is."""
    where: dict[str, list[int]] = {}
    for index, line in enumerate(shown):
        where.setdefault(line, []).append(index)
    result = []
    position = 0
    for line in found:
        places = where.get(line.strip(), ())
        at = bisect.bisect_left(places, position)
        if at < len(places):
            result.append(source[places[at]])
            position = places[at] + 1
        else:
            result.append(line)
    return result


# Where mail clients put the quoted original in an HTML reply. Outlook marks only
# where the quote starts: everything after that marker is the original.
_HTML_QUOTES = ("//blockquote", "//div[contains(@class, 'gmail_quote')]",
                "//div[contains(@class, 'moz-cite-prefix')]",
                "//div[contains(@class, 'yahoo_quoted')]")
_HTML_QUOTE_STARTS = ("//div[@id='appendonsend']", "//div[@id='divRplyFwdMsg']",
                      "//hr[@id='stopSpelling']")
_MEMO = "quoting.new_text"  # the key of an Inbound's derived values


def new_text_of(inbound, signature: bool = True) -> str:
    """The new text of a received reply; for HTML-only mail, quotes go before conversion.

    Worked out once per message and remembered with it: the pipeline asks first, before
    its write transaction begins, so that in there it is only looked up.
    """
    found = inbound.derived.get(_MEMO)
    if found is None:
        found = inbound.derived[_MEMO] = _cut_inbound(inbound)
    return found.signed if signature else found.unsigned


def _cut_inbound(inbound) -> NewText:
    if not inbound.html_only:
        return cut(inbound.text)
    from .htmltext import html_to_text

    unquoted = _drop_html_quotes(inbound.html)
    return cut(inbound.text if unquoted is None else html_to_text(unquoted))


def _drop_html_quotes(html: str) -> str | None:
    """The HTML without its quoted parts, or None where it has none (or lxml cannot
    read it)."""
    from .htmltext import MAX_DOCUMENT

    if len(html) > MAX_DOCUMENT:  # converted plainly (htmltext): its text is cut instead
        return None
    try:
        import lxml.html

        document = lxml.html.fromstring(html)
    except Exception:  # not HTML enough for lxml: convert it whole
        return None
    dropped = False
    for path in _HTML_QUOTE_STARTS:
        for marker in document.xpath(path):
            if marker.getparent() is None:  # a marker after an earlier one: gone already
                continue
            for following in list(marker.itersiblings()):
                following.drop_tree()
            marker.drop_tree()
            dropped = True
    for path in _HTML_QUOTES:
        for quote in document.xpath(path):
            if quote.getparent() is not None:
                quote.drop_tree()
                dropped = True
    return lxml.html.tostring(document, encoding="unicode") if dropped else None


def _cut_attribution(lines: list[str]) -> list[str]:
    """Drop quoted lines and the "On <date>, <someone> wrote:" that introduces them.

    The library knows such headers in a dozen languages; this catches the rest (and
    bottom-posted replies): a line ending in a colon, naming an address or a time,
    right above a quoted line. Clients wrap it onto a second line, ending in "<".
    """
    drop = set()
    for index, line in enumerate(lines):
        if not _QUOTED.match(line):
            continue
        drop.add(index)
        above = index - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        if above < 0 or above in drop or not lines[above].rstrip().endswith(":"):
            continue
        first = above - 1 if above > 0 and lines[above - 1].rstrip().endswith(("<", ",")) else above
        if _ATTRIBUTION.search(" ".join(lines[first:above + 1])):
            drop.update(range(first, above + 1))
    kept = [line for index, line in enumerate(lines) if index not in drop]
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


# An interleaved answer is read from this much of the reply: answers between quotes are
# short, and a longer reply is cut as any other.
INLINE_TEXT = 64 * 1024
INLINE_LINES = 2000
# Of each answered quote, the last paragraph (the question answered) is kept, and of
# that no more than these lines: the rest of the quoted mail is the desk's own (staff
# notifications name CC lines, holds and commands the requester need not see).
QUESTION_LINES = 8
_INLINE_MEMO = "quoting.inline_answer"
_SIGNATURE = re.compile(r"^\s*--\s*$")


def inline_answer_of(inbound) -> str | None:
    """``inline_answer`` of a received plain-text reply, worked out once per message."""
    if _INLINE_MEMO not in inbound.derived:
        inbound.derived[_INLINE_MEMO] = None if inbound.html_only else inline_answer(
            inbound.text)
    return inbound.derived[_INLINE_MEMO]


def inline_answer(text: str) -> str | None:
    """The answers of a reply written between the quoted lines (quote, answer, quote,
    answer: as mutt users write), each below the quoted question it answers; None for
    a reply that is not interleaved (top- or bottom-posted: ``cut`` reads those).

    A quote left unanswered (the rest of the mail answered) and the "On ... wrote:" line
    are dropped. One pass over at most INLINE_LINES lines.
    """
    text = text.replace("\r\n", "\n")
    if len(text) > INLINE_TEXT or ">" not in text:
        return None
    blocks = _blocks(text.split("\n")[:INLINE_LINES])
    kinds = [quoted for quoted, _ in blocks]
    # A quote, an answer and a quote again: the answer sits between the questions.
    if not any(kinds[i] and not kinds[i + 1] and kinds[i + 2] for i in range(len(kinds) - 2)):
        return None
    parts = []
    for index, (quoted, lines) in enumerate(blocks):
        # Blocks alternate, so an answer follows (the writer's signature is none).
        answered = index + 1 < len(blocks) and not _SIGNATURE.match(blocks[index + 1][1][0])
        if quoted:
            if answered:
                parts.append("\n".join(_question(lines)))
            continue
        if answered:
            lines = _without_attribution(lines)
        answer = "\n".join(line.rstrip() for line in lines).strip("\n")
        if answer.strip():
            parts.append(answer)
    return "\n\n".join(part for part in parts if part.strip()) or None


def _blocks(lines: list[str]) -> list[tuple[bool, list[str]]]:
    """Runs of quoted and of unquoted lines, blank lines kept with the run they are in."""
    blocks: list[tuple[bool, list[str]]] = []
    for line in lines:
        if not line.strip():
            if blocks:
                blocks[-1][1].append(line)
            continue
        quoted = bool(_QUOTED.match(line))
        if blocks and blocks[-1][0] == quoted:
            blocks[-1][1].append(line)
        else:
            blocks.append((quoted, [line]))
    return blocks


def _question(lines: list[str]) -> list[str]:
    """The last paragraph of a quote, as "> " lines; none of the quoted mail's
    signature (from its "-- " line on: no question is asked there)."""
    for index, line in enumerate(lines):
        if _SIGNATURE.match(line.strip().lstrip(">")):
            lines = lines[:index]
            break
    kept: list[str] = []
    for line in reversed(lines):
        content = line.strip()
        if content.strip(">").strip() == "":
            if kept:
                break  # the blank quoted line above the paragraph
            continue  # blank lines below it
        kept.append(content)
        if len(kept) == QUESTION_LINES:
            break
    # One level of quoting, whatever the depth: to the reader it is the question.
    return ["> " + line.lstrip("> ") for line in reversed(kept)]


def _without_attribution(lines: list[str]) -> list[str]:
    """An answer without the "On <date>, <someone> wrote:" that ends it (above a quote)."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    if not end or not lines[end - 1].rstrip().endswith(":"):
        return lines
    first = end - 1
    if first and lines[first - 1].rstrip().endswith(("<", ",")):
        first -= 1
    if not _ATTRIBUTION.search(" ".join(lines[first:end])):
        return lines
    return lines[:first]
