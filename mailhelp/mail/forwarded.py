"""Messages attached to a message (a mail "forwarded as attachment"), opened for staff.
Pure: bytes in, values out.

A teacher who forwards the mail that puzzles them as an attachment sends a .eml: to
staff that was one line, "message.eml (message/rfc822, 888 bytes)". Here such a part is
read with the same parser and limits as any incoming message (parse.py: nesting, part
count, charsets, HTML turned to text), so that the staff notification can show who
wrote it, when, about what and what it says, and carry its files.

Bounds: only the first MAX_OPENED attached messages of a message are opened, and only
one level deep (a message attached inside one stays a file, as parse.py leaves every
attached message); each one's text is cut at MAX_TEXT characters and its files at
MAX_FILES. The work is at most one more parse of bytes the outer parse already read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from ..errors import ParseError
from .attachment import Attachment

MAX_OPENED = 5  # attached messages opened per message; the others stay files
MAX_TEXT = 20_000  # characters of an attached message's text shown to staff
MAX_FILES = 100  # files carried out of one attached message
MAX_CARRIED = 100  # files one staff notification carries; the others are listed
# The first bytes of a .eml sent as a plain file, where a header block must show.
_SNIFFED = 4096
_MESSAGE_TYPES = ("message/rfc822", "message/global")
_HEADER_LINE = re.compile(rb"[!-9;-~]{1,76}:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*")
_KEY_HEADER = re.compile(rb"(?im)^(?:from|date|subject|message-id|received|to):")
_MEMO = "forwarded"


@dataclass(frozen=True)
class Forwarded:
    """One attached message as staff read it."""

    filename: str  # the .eml file it came in, which stays attached too
    sender: str  # 'Name <address>', or the address alone
    to: str
    date: datetime | None  # aware (UTC), or None when it had no readable Date
    subject: str
    text: str  # plain text, or its HTML turned to text; at most MAX_TEXT characters
    cut: bool  # the text was longer, and is cut
    attachments: tuple[Attachment, ...] = field(repr=False)
    more_files: int = 0  # files past MAX_FILES, not carried
    source: Attachment | None = field(default=None, repr=False, compare=False)


def is_message(attachment: Attachment) -> bool:
    """An attached message: message/rfc822 (or /global), or a .eml file sent as a
    plain file whose first bytes are a header block naming a sender or a subject."""
    if attachment.content_type in _MESSAGE_TYPES:
        return True
    if not attachment.filename.lower().endswith(".eml") or attachment.content_type not in (
            "application/octet-stream", "text/plain", "application/x-eml"):
        return False
    return _looks_like_headers(attachment.payload[:_SNIFFED])


def _looks_like_headers(head: bytes) -> bool:
    """A run of header lines from the first byte, with a From/Date/Subject... among
    them: what a saved message starts with, and a random file does not."""
    at, key = 0, False
    while at < len(head):
        if head.startswith((b"\r\n", b"\n"), at):
            return key and at > 0
        line = _HEADER_LINE.match(head, at)
        if line is None:
            # A header cut by the sniffed window still counts; anything else does not.
            return key and b"\n" not in head[at:]
        key = key or _KEY_HEADER.match(head, at) is not None
        at = line.end()
    return key


def opened(attachments: Sequence[Attachment]) -> tuple[Forwarded, ...]:
    """The attached messages among ``attachments`` (the first MAX_OPENED), read; a part
    that does not parse stays a file and is left out here."""
    found: list[Forwarded] = []
    for attachment in attachments:
        if len(found) >= MAX_OPENED:
            break
        if is_message(attachment):
            message = read(attachment)
            if message is not None:
                found.append(message)
    return tuple(found)


def opened_of(inbound) -> tuple[Forwarded, ...]:
    """``opened(inbound.attachments)``, worked out once per message and kept with it."""
    found = inbound.derived.get(_MEMO)
    if found is None:
        found = inbound.derived[_MEMO] = opened(inbound.attachments)
    return found


def read(attachment: Attachment) -> Forwarded | None:
    from .parse import parse

    try:
        inner = parse(attachment.payload)
    except ParseError:
        return None
    files = tuple(inner.attachments[:MAX_FILES])
    text = inner.text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    return Forwarded(
        filename=attachment.filename,
        sender=inner.sender.formatted() if inner.sender.address else inner.sender.name,
        to=", ".join(a.formatted() for a in inner.to[:10]) + (
            f" and {len(inner.to) - 10} more" if len(inner.to) > 10 else ""),
        date=inner.date,
        subject=inner.subject,
        text=text[:MAX_TEXT],
        cut=len(text) > MAX_TEXT,
        attachments=files,
        more_files=len(inner.attachments) - len(files),
        source=attachment,
    )


def shown(message: Forwarded, zone: tzinfo) -> dict:
    """What a template shows of an attached message: one-line headers, the date in the
    desk's time zone, its text and the names of its files."""
    return {
        "filename": _line(message.filename), "from": _line(message.sender),
        "to": _line(message.to), "subject": _line(message.subject),
        "date": message.date.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")
        if message.date else "",
        "text": message.text, "cut": message.cut, "more_files": message.more_files,
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "size": a.size} for a in message.attachments],
    }


def _line(text: str) -> str:
    return " ".join(str(text or "").split())


@dataclass(frozen=True)
class StaffFiles:
    """What a staff notification carries: the files attached, and those only listed."""

    attached: tuple[Attachment, ...]
    listed: tuple[Attachment, ...]  # over [limits]: named in the mail, not attached


def staff_files(attachments: Iterable[Attachment], forwarded: Sequence[Forwarded],
                per_file: int, total: int) -> StaffFiles:
    """The message's files, each attached message followed by its own files, as long as
    each file is within ``per_file`` bytes, all together within ``total`` and there are
    at most MAX_CARRIED of them; the rest are listed. A message/* or multipart/* part
    goes as a plain file, its bytes exactly as received (such a part may not be
    base64-encoded, the standard library cannot write one from bytes, and re-encoding
    it would change it); mail clients open a .eml file by its name."""
    inside = {id(f.source): f.attachments for f in forwarded}
    attached: list[Attachment] = []
    listed: list[Attachment] = []
    size = 0
    for attachment in attachments:
        for file in (attachment, *inside.pop(id(attachment), ())):
            if file.size > per_file or size + file.size > total \
                    or len(attached) >= MAX_CARRIED:
                listed.append(file)
                continue
            size += file.size
            attached.append(as_file(file))
    return StaffFiles(tuple(attached), tuple(listed))


def as_file(attachment: Attachment) -> Attachment:
    """``attachment`` as outgoing mail can carry it: a message/* or multipart/* part as
    application/octet-stream with the same bytes (the composer cannot write those from
    bytes: message/delivery-status raised; a base64 message/rfc822 is not allowed)."""
    if not attachment.content_type.startswith(("message/", "multipart/")):
        return attachment
    return Attachment(attachment.filename, "application/octet-stream", attachment.payload,
                      attachment.content_id)
