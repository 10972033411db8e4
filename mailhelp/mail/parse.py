"""Raw RFC 5322 bytes -> an Inbound value. Pure: no database, no network.

Parsing is the most expensive step per message, so it is a plain function of
the bytes that can run in a worker process. The steps, each in a module of its own:
the header block (headers.py), the people it names (addresses.py), the MIME tree's
text and attachments (parts.py, with payloads.py, largeparts.py and tnef.py), and
the charsets of it all (charsets.py); this module puts their values together.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from functools import partial

from ..errors import ParseError
from . import parts
from .addresses import Address, addresses, bare_sender
from .attachment import Attachment
from .charsets import eight_bit_charset, header_text
from .headers import (
    KEPT_HEADERS,
    KEPT_PREFIXES,
    MAX_REFERENCES,
    MAX_SUBJECT,
    MESSAGE_ID,
    date_of,
    first_id,
    first_value,
    message_id_of,
    one_line,
    raw_headers,
    repaired,
    synthetic_message_id,
)
from .htmltext import html_to_text
from .parts import MAX_PARTS

# What other modules import from here, as they did before parsing was split up.
__all__ = ["MAX_PARTS", "Address", "Attachment", "Inbound", "html_to_text", "message_id_of",
           "parse", "synthetic_message_id"]

# The headers that name people (and the subject): their 8-bit bytes share one guess.
_PEOPLE = ("from", "sender", "reply-to", "to", "cc", "subject", "thread-topic")
_WORD_CHARSET = re.compile(r"=\?([^?*\s]+)[^?\s]*\?[bBqQ]\?")


@dataclass(frozen=True)
class Inbound:
    """One received message, as the help desk needs it."""

    message_id: str
    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str
    in_reply_to: str
    references: tuple[str, ...]
    date: datetime | None
    text: str
    html: str
    attachments: tuple[Attachment, ...]
    headers: dict[str, tuple[str, ...]] = field(repr=False)
    size: int = 0
    sha256: str = ""
    html_only: bool = False  # text was made from the HTML part
    defects: tuple[str, ...] = ()
    # What later pure stages work out from the message (quoting.new_text_of), kept with
    # it so that it is worked out once, before the write transaction begins.
    derived: dict[str, object] = field(default_factory=dict, init=False, repr=False,
                                       compare=False)

    def header(self, name: str) -> str:
        """The first value of a kept header, or ''."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""


def parse(raw: bytes) -> Inbound:
    """Parse a message; raise ParseError (and nothing else) for what cannot be read."""
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise ParseError("a binary Outlook .msg file, not an RFC 5322 message")
    try:
        return _parse(raw)
    except ParseError:
        raise
    except Exception as error:  # the contract: a value or a ParseError, whatever the bytes
        raise ParseError(f"internal error reading the message: {type(error).__name__}: "
                         f"{error}"[:500]) from error


def _parse(original: bytes) -> Inbound:
    raw, defects = repaired(original)
    parts.refuse_costly_nesting(raw)
    try:
        message, bodies = parts.tree(raw)
    except RecursionError:
        raise ParseError("MIME parts nested too deeply to read") from None
    headers = raw_headers(message, defects)
    leaves = parts.leaves(message, defects)
    hints = _declared_charsets(message, leaves, headers)
    eight_bit = eight_bit_charset(
        [v for name in _PEOPLE for v in headers.get(name, ()) if not v.isascii()], hints)
    text_of = partial(header_text, eight_bit=eight_bit, hints=hints)
    plain, htmls, attachments = parts.content(leaves, text_of, hints, defects, bodies)
    del bodies, raw  # views of the raw bytes; the attachments hold what was decoded
    senders = (addresses(headers.get("from", ()), text_of)
               or addresses(headers.get("sender", ()), text_of)
               or addresses(headers.get("reply-to", ()), text_of)
               or bare_sender(headers.get("from", ()), text_of))
    text = "\n".join(p for p in plain if p)
    html = "\n".join(p for p in htmls if p)
    html_only = not text.strip() and bool(html)
    if html_only:
        text = html_to_text(html)
    references = MESSAGE_ID.findall(first_value(headers, "references", text_of))
    if len(references) > MAX_REFERENCES:  # keep the thread's root and the latest
        references = references[:10] + references[-(MAX_REFERENCES - 10):]
    return Inbound(
        message_id=message_id_of(original),
        sender=senders[0],
        to=addresses(headers.get("to", ()), text_of),
        cc=addresses(headers.get("cc", ()), text_of),
        reply_to=addresses(headers.get("reply-to", ()), text_of),
        subject=one_line(first_value(headers, "subject", text_of))[:MAX_SUBJECT],
        in_reply_to=first_id(first_value(headers, "in-reply-to", text_of)),
        references=tuple(references),
        date=date_of(first_value(headers, "date", text_of)),
        text=text,
        html=html,
        attachments=tuple(attachments),
        headers={name: tuple(text_of(v) for v in headers[name][:50])
                 for name in headers if name in KEPT_HEADERS or name.startswith(KEPT_PREFIXES)},
        size=len(original),
        sha256=hashlib.sha256(original).hexdigest(),
        defects=tuple(sorted(defects | {type(d).__name__ for p in leaves for d in p.defects}
                             | {type(d).__name__ for d in message.defects})),
        html_only=html_only,
    )


def _declared_charsets(message: Message, leaves: list[Message],
                       headers: dict[str, list[str]]) -> tuple[str, ...]:
    """Every charset the message names: the best guess for its unlabelled bytes."""
    declared = [parts.charset_of(p) for p in (message, *leaves)]
    declared += [word.group(1) for name in _PEOPLE for value in headers.get(name, ())
                 for word in _WORD_CHARSET.finditer(value)]
    return tuple(dict.fromkeys(c.lower() for c in declared if isinstance(c, str) and c))
