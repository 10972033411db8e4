"""The header block of a raw message: its repair, its values, ids and dates. Pure.

What every later step reads first: the headers as received (8-bit bytes kept), the
Message-ID (cheap enough to record before a message is parsed), and one-line values
with no control characters, fit for a subject or a log line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

# Headers the later stages (classify, thread) read; kept lower-cased, all values.
KEPT_HEADERS = (
    "auto-submitted", "x-autoreply", "x-autorespond", "x-auto-response-suppress",
    "precedence", "list-id", "list-unsubscribe", "return-path", "x-failed-recipients",
    "content-type", "x-spam-flag", "x-spam-status", "x-spam-score", "authentication-results",
    "x-mailhelp-loop", "x-mailhelp-ticket", "delivered-to", "x-original-to", "reply-to",
    "thread-topic", "thread-index",
)
# Spam filters name their score headers freely ([spam] score_header picks one).
KEPT_PREFIXES = ("x-spam", "x-rspamd", "x-ham")
MAX_REFERENCES = 100
MAX_SUBJECT = 1000
MAX_HEADER = 65536  # characters of one header value that are read
MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,996}>")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WS = re.compile(r"\s+")
_HEADER_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
_BROKEN_HEADER_LINE = re.compile(rb"\n(?![ \t]|[!-9;-~]+[ \t]*:)")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def message_id_of(raw: bytes) -> str:
    """The Message-ID as the bytes carry it, or a stable one made from the content.

    Cheap (reads only the header block), so the source can record it before parsing.
    """
    # find, not split: split would copy the whole body just to throw it away.
    end = raw.find(b"\r\n\r\n")
    end = len(raw) if end < 0 else end
    lf_end = raw.find(b"\n\n", 0, end)
    head = raw[:end if lf_end < 0 else lf_end]
    match = re.search(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", head, re.I | re.M)
    if match:
        found = MESSAGE_ID.search(match.group(1).decode("latin-1"))
        if found:
            return found.group(0)
    return synthetic_message_id(raw)


def synthetic_message_id(raw: bytes) -> str:
    # A message without a Message-ID gets one derived from its bytes, so that a
    # second copy of it is still recognised as the same message.
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@mailhelp.invalid>"


def repaired(raw: bytes) -> tuple[bytes, set[str]]:
    """The bytes with a header block the standard library can read, and what was mended.

    Its parser ends the headers at the first line that is not a header, so a
    continuation line that lost its indent, or junk above the headers, turns all
    the rest (From, Subject, MIME structure) into body text.
    """
    if raw.startswith(b"From ") and b"\n" in raw:
        raw = raw.split(b"\n", 1)[1]  # an mbox "From " line is not a header
    blank = _BLANK_LINE.search(raw)
    head = raw[:blank.start()] if blank else raw
    if _HEADER_FIELD.match(head) and not _BROKEN_HEADER_LINE.search(head):
        return raw, set()
    lines = head.split(b"\n")
    fields = [i for i, line in enumerate(lines[:5000]) if _HEADER_FIELD.match(line)]
    if not fields or fields[0] > 3:  # no header block to mend: leave it to the parser
        return raw, set()
    first, last = fields[0], fields[-1]
    # Lines between the first and the last header field belong to the headers.
    mended = [line if line[:1] in b" \t" or _HEADER_FIELD.match(line) else b" " + line
              for line in lines[first:last + 1]]
    return b"\n".join(mended + lines[last + 1:]) + raw[len(head):], {"HeaderBlockRepaired"}


def raw_headers(message: Message, defects: set[str]) -> dict[str, list[str]]:
    # raw_items() keeps 8-bit bytes as surrogates; get() would decode them lossily.
    found: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        value = str(value)
        if len(value) > MAX_HEADER:  # 50,000 recipients take the address parser seconds
            value = value[:MAX_HEADER]
            defects.add("HeaderTruncated")
        found.setdefault(name.strip().lower(), []).append(value)
    return found


def first_value(headers: dict[str, list[str]], name: str, text_of: Callable[[str], str]) -> str:
    values = headers.get(name)
    return text_of(values[0]) if values else ""


def part_header(part: Message, name: str) -> str:
    """A header of a MIME part as stored (get() answers a Header object for 8-bit values)."""
    return next((str(v) for k, v in part.raw_items() if k.lower() == name), "")


def one_line(text: str) -> str:
    return _WS.sub(" ", CONTROL.sub(" ", text)).strip()


def first_id(value: str) -> str:
    found = MESSAGE_ID.search(value)
    return found.group(0) if found else ""


def date_of(value: str) -> datetime | None:
    if not value:
        return None
    try:
        found = parsedate_to_datetime(value)
        if found.tzinfo is None:  # "-0000": the time is UTC, the sender's zone unknown
            found = found.replace(tzinfo=UTC)
        return found.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
