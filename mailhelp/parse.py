"""Raw RFC 5322 bytes -> an Inbound value. Pure: no database, no network.

Parsing is the most expensive step per message, so it is a plain function of
the bytes that can run in a worker process.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address as _StdAddress
from email.utils import formataddr, getaddresses, parseaddr

from .errors import ParseError

# Headers the later stages (classify, thread) read; kept lower-cased, all values.
KEPT_HEADERS = (
    "auto-submitted", "x-autoreply", "x-autorespond", "x-auto-response-suppress",
    "precedence", "list-id", "list-unsubscribe", "return-path", "x-failed-recipients",
    "content-type", "x-spam-flag", "x-spam-status", "x-spam-score", "authentication-results",
    "x-mailhelp-loop", "x-mailhelp-ticket", "delivered-to", "x-original-to", "reply-to",
    "thread-topic", "thread-index",
)

_MSGID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WS = re.compile(r"\s+")
_DELIVERABLE = re.compile(r"^[^@\s<>(),;:\\\"\[\]]+@[a-z0-9-]+(\.[a-z0-9-]+)+$", re.I)

logging.getLogger("mailparser").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Address:
    name: str
    address: str  # lower-cased; what every comparison uses

    def formatted(self) -> str:
        name = " ".join(self.name.split())
        if not name:
            return self.address
        try:
            return str(_StdAddress(display_name=name, addr_spec=self.address))
        except (ValueError, IndexError, HeaderParseError):
            return formataddr((name, self.address))

    @property
    def deliverable(self) -> bool:
        """Can mail be sent to it (one @, a dotted domain, nothing odd)?"""
        return bool(_DELIVERABLE.match(self.address))


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    payload: bytes = field(repr=False)
    content_id: str = ""

    @property
    def size(self) -> int:
        return len(self.payload)


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

    def header(self, name: str) -> str:
        """The first value of a kept header, or ''."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""


def message_id_of(raw: bytes) -> str:
    """The Message-ID as the bytes carry it, or a stable one made from the content.

    Cheap (reads only the header block), so the source can record it before parsing.
    """
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = re.search(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", head, re.I | re.M)
    if match:
        found = _MSGID.search(match.group(1).decode("latin-1"))
        if found:
            return found.group(0)
    return synthetic_message_id(raw)


def synthetic_message_id(raw: bytes) -> str:
    # A message without a Message-ID gets one derived from its bytes, so that a
    # second copy of it is still recognised as the same message.
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@mailhelp.invalid>"


def parse(raw: bytes) -> Inbound:
    """Parse a message; raise ParseError for input that is not an email at all."""
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise ParseError("a binary Outlook .msg file, not an RFC 5322 message")
    original = raw
    if raw.startswith(b"From ") and b"\n" in raw:
        raw = raw.split(b"\n", 1)[1]  # an mbox "From " line is not a header
    import mailparser  # deferred: keeps the CLI's start lean

    try:
        mail = mailparser.parse_from_bytes(raw)
        message = mail.message
        plain, htmls = mail.text_plain, mail.text_html
        attachments = tuple(_attachment(a) for a in mail.attachments)
        subject, date, defects = mail.subject or "", _date(mail), mail.defects_categories
    except Exception:
        # mail-parser trips over some broken structures (a multipart/report without
        # an epilogue, say); the standard library's lenient parser still reads them.
        message, plain, htmls, attachments = _stdlib_parts(raw)
        subject, date, defects = _header_text(message.get("subject")), None, {"FallbackParse"}
    senders = _addresses(message.get_all("from") or [])
    if not senders:
        senders = _addresses(message.get_all("sender") or []) or (Address("", ""),)
    text = "\n".join(p for p in plain if p)
    html = "\n".join(p for p in htmls if p)
    html_only = not text.strip() and bool(html)
    if html_only:
        text = html_to_text(html)
    return Inbound(
        message_id=_message_id(message.get("message-id"), original),
        sender=senders[0],
        to=_addresses(message.get_all("to") or []),
        cc=_addresses(message.get_all("cc") or []),
        reply_to=_addresses(message.get_all("reply-to") or []),
        subject=_one_line(subject),
        in_reply_to=_first_id(message.get("in-reply-to")),
        references=tuple(_MSGID.findall(_header_text(message.get("references")))),
        date=date,
        text=text,
        html=html,
        attachments=attachments,
        headers=_kept_headers(message),
        size=len(original),
        sha256=hashlib.sha256(original).hexdigest(),
        defects=tuple(sorted(defects)),
        html_only=html_only,
    )


def _stdlib_parts(raw: bytes) -> tuple:
    import email

    try:
        message = email.message_from_bytes(raw)
        plain, htmls, attachments = [], [], []
        for part in message.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            ctype = part.get_content_type()
            if filename or ctype not in ("text/plain", "text/html"):
                attachments.append(Attachment(_one_line(_header_text(filename) or "part"),
                                              ctype, payload, str(part.get("content-id", ""))))
                continue
            charset = part.get_content_charset() or "utf-8"
            try:
                decoded = payload.decode(charset, "replace")
            except LookupError:
                decoded = payload.decode("utf-8", "replace")
            (htmls if ctype == "text/html" else plain).append(decoded)
    except Exception as error:
        raise ParseError(f"unreadable message: {type(error).__name__}: {error}") from error
    return message, plain, htmls, tuple(attachments)


def html_to_text(html: str) -> str:
    from inscriptis import get_text  # deferred: lxml is slow to import

    try:
        text = get_text(html)
        return textwrap.dedent("\n".join(line.rstrip() for line in text.split("\n"))).strip("\n")
    except Exception:  # inscriptis/lxml reject some broken documents
        return _WS.sub(" ", re.sub(r"<[^>]*>", " ", html)).strip()


def _header_text(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if "=?" in text:
        from email.header import decode_header, make_header

        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            text = str(make_header(decode_header(text)))
    return text


def _one_line(text: str) -> str:
    return _WS.sub(" ", _CONTROL.sub(" ", text)).strip()


def _message_id(value: object, raw: bytes) -> str:
    found = _MSGID.search(_header_text(value))
    return found.group(0) if found else synthetic_message_id(raw)


def _first_id(value: object) -> str:
    found = _MSGID.search(_header_text(value))
    return found.group(0) if found else ""


def _addresses(values: list) -> tuple[Address, ...]:
    result = []
    for name, address in getaddresses([_header_text(v) for v in values]):
        address = _CONTROL.sub("", address).strip().lower().rstrip(".")
        if "@" not in address:
            continue
        name = _one_line(name).encode("utf-8", "replace").decode("utf-8")
        result.append(Address(name, address))
    return tuple(result)


def _date(mail) -> datetime | None:
    try:
        value = mail.date
    except Exception:  # a Date header mail-parser cannot read
        return None
    return value if isinstance(value, datetime) and value.tzinfo else None


def _attachment(found: dict) -> Attachment:
    payload = found.get("payload") or ""
    if found.get("binary"):
        try:
            data = base64.b64decode(payload)
        except (ValueError, TypeError):
            data = payload.encode("utf-8", "surrogateescape")
    else:
        data = payload.encode("utf-8", "surrogateescape")
    return Attachment(
        filename=_one_line(found.get("filename") or ""),
        content_type=(found.get("mail_content_type") or "application/octet-stream").lower(),
        payload=data,
        content_id=(found.get("content-id") or "").strip(),
    )


def _kept_headers(message) -> dict[str, tuple[str, ...]]:
    kept = {}
    for name in KEPT_HEADERS:
        values = message.get_all(name)
        if values:
            kept[name] = tuple(_header_text(v) for v in values)
    return kept


def sender_of(raw: bytes) -> str:
    """The From address from the header block alone (for log lines about unparsable mail)."""
    head = raw[:16384].split(b"\n\n", 1)[0].decode("latin-1")
    match = re.search(r"^from:(.*)$", head, re.I | re.M)
    return parseaddr(match.group(1))[1].lower() if match else ""
