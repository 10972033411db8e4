"""Cut quoted history from a reply, keeping only what is new (and its signature). Pure.

mail-parser-reply does the finding (it knows "On ... wrote:", Outlook's
"From:/Sent:" blocks and their German, French, Scandinavian... forms); this module
puts back the indentation it strips (pasted error output keeps its shape) and drops
what it leaves behind: Outlook's underscore separator lines.
"""

from __future__ import annotations

import re
from functools import lru_cache

LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs", "ja", "ko", "zh")
_SEPARATOR = re.compile(r"^\s*_{5,}\s*$")
_QUOTED = re.compile(r"^\s*>")
_ATTRIBUTION = re.compile(r"@|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}:\d{2}")


@lru_cache(maxsize=1)
def _parser():
    from mailparser_reply import EmailReplyParser
    from mailparser_reply.constants import MAIL_LANGUAGES

    return EmailReplyParser(languages=[lang for lang in LANGUAGES if lang in MAIL_LANGUAGES])


def new_text(text: str, signature: bool = True) -> str:
    """The newest reply in ``text``, without quoted history or reply headers.

    ``signature=False`` drops the writer's signature too (to judge what they said).
    """
    text = text.replace("\r\n", "\n")
    if not text.strip():
        return ""
    try:
        found = _parser().read(text).replies
    except Exception:  # the library must never cost us a message
        found = []
    # The writer's own signature stays (a tech's name and extension help the teacher);
    # the library's "content" of the newest reply is its body plus that signature.
    body = (found[0].content if signature else found[0].body) if found else text
    lines = _restore_indentation(body.split("\n"), text.split("\n"))
    lines = _cut_attribution([line for line in lines if not _SEPARATOR.match(line)])
    if not any(line.strip() for line in lines):
        # Everything was quotes (a bare forward, an inline-only answer): keep the
        # unquoted lines rather than record an empty message.
        lines = [line for line in text.split("\n") if not _QUOTED.match(line)]
    return "\n".join(lines).strip("\n")


# Where mail clients put the quoted original in an HTML reply. Outlook marks only
# where the quote starts: everything after that marker is the original.
_HTML_QUOTES = ("//blockquote", "//div[contains(@class, 'gmail_quote')]",
                "//div[contains(@class, 'moz-cite-prefix')]",
                "//div[contains(@class, 'yahoo_quoted')]")
_HTML_QUOTE_STARTS = ("//div[@id='appendonsend']", "//div[@id='divRplyFwdMsg']",
                      "//hr[@id='stopSpelling']")


def new_text_of(inbound, signature: bool = True) -> str:
    """The new text of a received reply; for HTML-only mail, quotes go before conversion."""
    if not inbound.html_only:
        return new_text(inbound.text, signature)
    from .parse import html_to_text

    return new_text(html_to_text(_drop_html_quotes(inbound.html)), signature)


def _drop_html_quotes(html: str) -> str:
    try:
        import lxml.html

        document = lxml.html.fromstring(html)
    except Exception:  # not HTML enough for lxml: convert it whole
        return html
    for path in _HTML_QUOTE_STARTS:
        for marker in document.xpath(path):
            for following in list(marker.itersiblings()):
                following.drop_tree()
            marker.drop_tree()
    for path in _HTML_QUOTES:
        for quote in document.xpath(path):
            if quote.getparent() is not None:
                quote.drop_tree()
    return lxml.html.tostring(document, encoding="unicode")


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


def _restore_indentation(found: list[str], original: list[str]) -> list[str]:
    """Map each line the parser kept back onto the original line, which has its indent."""
    result = []
    position = 0
    for line in found:
        stripped = line.strip()
        for index in range(position, len(original)):
            if original[index].strip() == stripped:
                result.append(original[index].rstrip())
                position = index + 1
                break
        else:
            result.append(line.rstrip())
    return result
