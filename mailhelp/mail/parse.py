"""Raw RFC 5322 bytes -> an Inbound value. Pure: no database, no network.

Parsing is the most expensive step per message, so it is a plain function of
the bytes that can run in a worker process. It reads the standard library's
lenient (compat32) parse tree itself rather than through mail-parser: charsets,
attached messages and winmail.dat need decisions of our own, and the tree walk
is where the limits against hostile mail (depth, part count) belong.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address as _StdAddress
from email.message import Message
from email.utils import formataddr, getaddresses, parseaddr, parsedate_to_datetime
from functools import lru_cache, partial

from ..errors import ParseError
from . import largeparts
from .charsets import decode, decode_reporting, eight_bit_charset, header_text, meta_charset
from .htmltext import html_to_text

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
# Bounds that keep hostile mail cheap; no real message comes near them.
MAX_DEPTH = 40  # multipart nesting walked; deeper parts are left out
MAX_PARTS = 1000
MAX_ADDRESSES = 500  # per header
MAX_REFERENCES = 100
MAX_SUBJECT = 1000
MAX_NAME = 200  # the database's column
MAX_ADDRESS = 320  # RFC 5321's limit: local part 64, domain 255
MAX_HEADER = 65536  # characters of one header value that are read
# The standard library's parser checks every line against every open boundary, so
# its work grows with boundaries x lines: crafted nesting takes it minutes.
MAX_BOUNDARY_WORK = 10_000_000

_MSGID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,996}>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WS = re.compile(r"\s+")
_DELIVERABLE = re.compile(r"^[^@\s<>(),;:\\\"\[\]]+@[a-z0-9-]+(\.[a-z0-9-]+)+$", re.I)
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?]*?\?=")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_WORD_CHARSET = re.compile(r"=\?([^?*\s]+)[^?\s]*\?[bBqQ]\?")
_CID_NAME = re.compile(r"<?([\w\-. ]{1,100}\.[A-Za-z0-9]{2,5})@")
_UU_BEGIN = re.compile(r"^begin [0-7]+ ", re.M)
_UU_ENCODINGS = ("x-uuencode", "uuencode", "x-uue")
# What Message.get_payload(decode=True) decodes from the text (and _cut_payload does not).
_LIBRARY_DECODED = ("base64", "x-uuencode", "uuencode", "uue", "x-uue")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,100}/[a-z0-9!#$&^_.+-]{1,100}\Z")
_HEADER_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
_BROKEN_HEADER_LINE = re.compile(rb"\n(?![ \t]|[!-9;-~]+[ \t]*:)")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_BOUNDARY_EVENT = re.compile(
    rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]+)"|([^\s;"]+))|^--([^\r\n]+?)--[ \t]*\r?$', re.I | re.M)
_PEOPLE = ("from", "sender", "reply-to", "to", "cc", "subject", "thread-topic")
_UNNAMED = {
    "message/delivery-status": "delivery-status.txt", "text/rfc822-headers": "headers.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "application/pgp-signature": "signature.asc", "application/pgp-encrypted": "version.txt",
    "application/pkcs7-signature": "smime.p7s", "application/x-pkcs7-signature": "smime.p7s",
    "application/pkcs7-mime": "smime.p7m", "application/x-pkcs7-mime": "smime.p7m",
    "text/calendar": "invite.ics", "text/html": "document.html", "text/plain": "document.txt",
}
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")


@lru_cache(maxsize=1024)
def _formatted(name: str, address: str) -> str:
    """``Name <address>`` with the name quoted where it must be (remembered: the same
    few people are named in mail after mail, and the header classes are slow)."""
    name = " ".join(name.split())  # never a line break into a header
    if not name:
        return address
    try:
        return str(_StdAddress(display_name=name, addr_spec=address))
    except (ValueError, IndexError, HeaderParseError):
        return formataddr((name, address))


@dataclass(frozen=True)
class Address:
    name: str
    address: str  # lower-cased; what every comparison uses

    def formatted(self) -> str:
        return _formatted(self.name, self.address)

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
    # What later pure stages work out from the message (quoting.new_text_of), kept with
    # it so that it is worked out once, before the write transaction begins.
    derived: dict[str, object] = field(default_factory=dict, init=False, repr=False,
                                       compare=False)

    def header(self, name: str) -> str:
        """The first value of a kept header, or ''."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""


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
        found = _MSGID.search(match.group(1).decode("latin-1"))
        if found:
            return found.group(0)
    return synthetic_message_id(raw)


def synthetic_message_id(raw: bytes) -> str:
    # A message without a Message-ID gets one derived from its bytes, so that a
    # second copy of it is still recognised as the same message.
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@mailhelp.invalid>"


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
    raw, defects = _repaired(original)
    _refuse_costly_nesting(raw)
    try:
        message, bodies = _tree(raw)
    except RecursionError:
        raise ParseError("MIME parts nested too deeply to read") from None
    headers = _raw_headers(message, defects)
    leaves = _leaves(message, defects)
    hints = _declared_charsets(message, leaves, headers)
    eight_bit = eight_bit_charset(
        [v for name in _PEOPLE for v in headers.get(name, ()) if not v.isascii()], hints)
    text_of = partial(header_text, eight_bit=eight_bit, hints=hints)
    plain, htmls, attachments = _content(leaves, text_of, hints, defects, bodies)
    del bodies, raw  # views of the raw bytes; the attachments hold what was decoded
    senders = (_addresses(headers.get("from", ()), text_of)
               or _addresses(headers.get("sender", ()), text_of)
               or _addresses(headers.get("reply-to", ()), text_of)
               or _bare_sender(headers.get("from", ()), text_of))
    text = "\n".join(p for p in plain if p)
    html = "\n".join(p for p in htmls if p)
    html_only = not text.strip() and bool(html)
    if html_only:
        text = html_to_text(html)
    references = _MSGID.findall(_first(headers, "references", text_of))
    if len(references) > MAX_REFERENCES:  # keep the thread's root and the latest
        references = references[:10] + references[-(MAX_REFERENCES - 10):]
    return Inbound(
        message_id=message_id_of(original),
        sender=senders[0],
        to=_addresses(headers.get("to", ()), text_of),
        cc=_addresses(headers.get("cc", ()), text_of),
        reply_to=_addresses(headers.get("reply-to", ()), text_of),
        subject=_one_line(_first(headers, "subject", text_of))[:MAX_SUBJECT],
        in_reply_to=_first_id(_first(headers, "in-reply-to", text_of)),
        references=tuple(references),
        date=_date(_first(headers, "date", text_of)),
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


def _tree(raw: bytes) -> tuple[Message, Mapping[str, memoryview]]:
    """The standard library's parse tree, and the bodies of large parts it was spared.

    Its parser holds a message about seven times over while reading it, so large
    leaf bodies are cut out first (see largeparts) and read from the raw bytes.
    """
    import email

    reduced, cuts = largeparts.cut(raw)
    if cuts:
        try:
            message = email.message_from_bytes(reduced)
        except RecursionError:  # decided by the whole message below
            message = None
        del reduced
        bodies = None if message is None else largeparts.bodies(message, raw, cuts)
        if bodies is not None:
            return message, bodies
        del message  # the cut was not certain to change nothing else: parse it all
    return email.message_from_bytes(raw), {}


def _repaired(raw: bytes) -> tuple[bytes, set[str]]:
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


def _refuse_costly_nesting(raw: bytes) -> None:
    """ParseError for nesting that would keep the standard library's parser for minutes.

    It compares each line with every boundary that encloses it; this counts those
    comparisons by following boundary declarations and closing delimiters.
    """
    if raw.count(b"oundary") <= 8:  # eight levels at most: cheap whatever the size
        return
    enclosing: list[bytes] = []
    work = last = 0
    for event in _BOUNDARY_EVENT.finditer(raw):
        work += len(enclosing) * raw.count(b"\n", last, event.start())
        last = event.start()
        declared = event.group(1) or event.group(2)
        if declared:
            enclosing.append(declared)
        elif event.group(3) in enclosing:  # closing it closes the parts inside it too
            del enclosing[len(enclosing) - 1 - enclosing[::-1].index(event.group(3)):]
    work += len(enclosing) * raw.count(b"\n", last)
    if work > MAX_BOUNDARY_WORK:
        raise ParseError("MIME structure too deeply nested to read "
                         f"({work // 1_000_000} million boundary checks)")


def _raw_headers(message: Message, defects: set[str]) -> dict[str, list[str]]:
    # raw_items() keeps 8-bit bytes as surrogates; get() would decode them lossily.
    found: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        value = str(value)
        if len(value) > MAX_HEADER:  # 50,000 recipients take the address parser seconds
            value = value[:MAX_HEADER]
            defects.add("HeaderTruncated")
        found.setdefault(name.strip().lower(), []).append(value)
    return found


def _first(headers: dict[str, list[str]], name: str, text_of: Callable[[str], str]) -> str:
    values = headers.get(name)
    return text_of(values[0]) if values else ""


def _leaves(message: Message, defects: set[str]) -> list[Message]:
    """The parts that carry content, in order. Attached messages are not entered."""
    found: list[Message] = []
    stack = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            if depth >= MAX_DEPTH:
                defects.add("NestingTooDeep")
                continue
            stack.extend((child, depth + 1) for child in reversed(part.get_payload()))
        elif len(found) >= MAX_PARTS:
            defects.add("TooManyParts")
            break
        else:
            found.append(part)
    return found


def _declared_charsets(message: Message, leaves: list[Message],
                       headers: dict[str, list[str]]) -> tuple[str, ...]:
    """Every charset the message names: the best guess for its unlabelled bytes."""
    declared = [_charset_of(p) for p in (message, *leaves)]
    declared += [word.group(1) for name in _PEOPLE for value in headers.get(name, ())
                 for word in _WORD_CHARSET.finditer(value)]
    return tuple(dict.fromkeys(c.lower() for c in declared if isinstance(c, str) and c))


def _charset_of(part: Message) -> str | None:
    return _param(part, "charset", "content-type") or None


def _param(part: Message, name: str, header: str, hints: tuple[str, ...] = ()) -> str:
    """A header parameter, RFC 2231 forms decoded through our charset chain: the standard
    library's own decoding raises on a NUL in the label and runs any codec it names."""
    value = part.get_param(name, None, header)
    if isinstance(value, tuple):
        label, _, text = value
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogateescape")
        return decode(data, label, hints)
    return value if isinstance(value, str) else ""


def _content(leaves: list[Message], text_of: Callable[[str], str], hints: tuple[str, ...],
             defects: set[str], bodies: Mapping[str, memoryview],
             ) -> tuple[list[str], list[str], list[Attachment]]:
    plain: list[str] = []
    htmls: list[str] = []
    attachments: list[Attachment] = []
    for part in leaves:
        ctype = part.get_content_type()
        ctype = ctype if _MIME_TYPE.match(ctype) else "application/octet-stream"
        filename = _filename(part, text_of, hints)
        disposition = part.get_content_disposition()
        payload = _payload(part, bodies)
        textual = ctype in ("text/plain", "text/html") or part.get_content_maintype() == "multipart"
        if textual and disposition != "attachment" and (not filename or disposition == "inline"):
            declared = _charset_of(part) or (
                meta_charset(payload) if ctype == "text/html" else None)
            text, recovered = decode_reporting(payload, declared, hints)
            if recovered:
                defects.add("CharsetDecodeDefect")
            (htmls if ctype == "text/html" else plain).append(text)
            if not filename:
                continue
        content_id = _one_line(text_of(_part_header(part, "content-id")))[:998]
        if ctype in _TNEF_TYPES or filename.lower() == "winmail.dat":
            from .tnef import attachments as tnef_files

            # Its files are parts like any other; asking for one more than there is
            # room for tells whether there were too many.
            room = MAX_PARTS - len(attachments)
            inside = tnef_files(payload, limit=room + 1)
            if inside:
                if len(inside) > room:
                    defects.add("TooManyParts")
                attachments.extend(Attachment(_one_line(f.filename)[:255], f.content_type,
                                              f.payload, _one_line(f.content_id)[:998])
                                   for f in inside[:room])
                continue
        name = filename or _unnamed(part, ctype, text_of, hints)
        attachments.append(Attachment(name, ctype, payload, content_id))
    if len(attachments) > MAX_PARTS:  # the parts after a winmail.dat that filled them
        defects.add("TooManyParts")
        del attachments[MAX_PARTS:]
    return plain, htmls, attachments


def _part_header(part: Message, name: str) -> str:
    """A header of a MIME part as stored (get() answers a Header object for 8-bit values)."""
    return next((str(v) for k, v in part.raw_items() if k.lower() == name), "")


def _filename(part: Message, text_of: Callable[[str], str], hints: tuple[str, ...]) -> str:
    for header in ("content-disposition", "content-type"):
        raw = _part_header(part, header)
        if not raw.isascii():
            # A raw 8-bit file name: the standard library would make it U+FFFD.
            data = raw.encode("utf-8", "surrogateescape").replace(b"\r", b"").replace(b"\n", b"")
            part.replace_header(header, decode(data, None, hints))
    name = (_param(part, "filename", "content-disposition", hints)
            or _param(part, "name", "content-type", hints))
    return _one_line(text_of(name))[:255]


def _payload(part: Message, bodies: Mapping[str, memoryview]) -> bytes:
    if part.is_multipart():  # message/rfc822, message/delivery-status: their parts' bytes
        chunks: list[bytes | memoryview] = []
        for inner in part.get_payload():
            _flatten(inner, chunks, 0, bodies)
        return b"".join(chunks)
    payload = _stored(part)
    body = bodies.get(payload) if bodies and isinstance(payload, str) else None
    if body is not None:
        data = _cut_payload(part, body)
        if data is not None:
            return data
        payload = str(body, "ascii")  # the text the parser would have stored
        part.set_payload(payload)
    if isinstance(payload, bytes):
        return payload
    encoding = _part_header(part, "content-transfer-encoding").strip().lower()
    if encoding == "base64":
        return _base64(payload.encode("ascii", "ignore"))
    if encoding in _UU_ENCODINGS and not _UU_BEGIN.search(payload):
        return _uudecode(payload.encode("ascii", "ignore"))
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a transfer encoding beyond repair: keep what is there
        data = None
    return data if isinstance(data, bytes) else payload.encode("utf-8", "surrogateescape")


def _cut_payload(part: Message, body: memoryview) -> bytes | None:
    """What _payload would make of a large body's text, decoded straight from the raw
    bytes (ASCII, so the text is those bytes); None where it needs the text (uuencode)."""
    encoding = _part_header(part, "content-transfer-encoding").strip().lower()
    if encoding == "base64":
        return _base64(body)
    # As Message.get_payload(decode=True) does, which reads the header unstripped.
    library_encoding = str(part.get("content-transfer-encoding", "")).lower()
    if encoding in _UU_ENCODINGS or library_encoding in _LIBRARY_DECODED:
        return None
    if library_encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    return body.tobytes()


def _stored(part: Message) -> str | bytes:
    """A leaf part's payload as the parser stored it, or its decoded bytes if that fails:
    with 8-bit content the library decodes it by the charset label, and a label with a
    NUL raises ValueError, an RFC 2231 label (charset*=) TypeError."""
    try:
        payload = part.get_payload()
    except (ValueError, LookupError, TypeError):
        payload = None
    if isinstance(payload, str):
        return payload
    try:
        data = part.get_payload(decode=True)
    except Exception:  # nothing readable left
        data = None
    return data if isinstance(data, bytes) else b""


def _uudecode(data: bytes) -> bytes:
    # uuencoded lines without their "begin" line, which the standard library needs.
    decoded = bytearray()
    for line in data.splitlines():
        if line.strip() and line.strip() not in (b"`", b"end"):
            with contextlib.suppress(binascii.Error):
                decoded += binascii.a2b_uu(line)
    return bytes(decoded)


def _flatten(message: Message, chunks: list[bytes | memoryview], depth: int,
             bodies: Mapping[str, memoryview]) -> None:
    """An attached message's bytes, headers as received (the standard library's
    generator refolds every header, which made it the slowest step of a parse)."""
    if depth > MAX_DEPTH:
        return
    for name, value in message.raw_items():
        chunks.append(f"{name}: {value}\n".encode("utf-8", "surrogateescape"))
    chunks.append(b"\n")
    payload = message.get_payload() if message.is_multipart() else _stored(message)
    body = bodies.get(payload) if bodies and isinstance(payload, str) else None
    if body is not None:
        chunks.append(body)  # ASCII: the same bytes as its text encoded below
        return
    if isinstance(payload, str | bytes):
        chunks.append(payload if isinstance(payload, bytes)
                      else payload.encode("utf-8", "surrogateescape"))
        return
    boundary = message.get_boundary() if message.get_content_maintype() == "multipart" else None
    if boundary is None:
        for inner in payload:
            _flatten(inner, chunks, depth + 1, bodies)
        return
    marker = f"--{boundary}".encode("utf-8", "surrogateescape")
    if message.preamble:
        chunks.append(message.preamble.encode("utf-8", "surrogateescape") + b"\n")
    for inner in payload:
        chunks.append(marker + b"\n")
        _flatten(inner, chunks, depth + 1, bodies)
        chunks.append(b"\n")
    chunks.append(marker + b"--\n")
    if message.epilogue:
        chunks.append(message.epilogue.encode("utf-8", "surrogateescape"))


def _base64(data: bytes | memoryview) -> bytes:
    # Like mail clients, read what can be read: the standard library hands back
    # the undecoded text when the length is off by one character.
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        data = data[:len(data) - len(data) % 4] if len(data) % 4 == 1 else data
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _unnamed(part: Message, ctype: str, text_of: Callable[[str], str],
             hints: tuple[str, ...]) -> str:
    """A file name for a part that has none: what it is, with the usual extension."""
    description = _one_line(text_of(_part_header(part, "content-description")))[:100]
    if ctype in ("message/rfc822", "message/global"):
        inner = part.get_payload(0) if part.is_multipart() else None
        subject = _inner_subject(inner, hints) if isinstance(inner, Message) else ""
        return (subject[:100] or description or "message") + ".eml"
    # Outlook's inline images have ids such as <image001.png@01D9...>.
    from_id = _CID_NAME.match(text_of(_part_header(part, "content-id")))
    if from_id:
        return from_id.group(1)
    known = _UNNAMED.get(ctype)
    if known is None:
        import mimetypes

        maintype, _, subtype = ctype.partition("/")
        extension = mimetypes.guess_extension(ctype, strict=False) or (
            f".{subtype}" if subtype.isalnum() and len(subtype) <= 5 else "")
        known = (maintype if maintype in ("image", "audio", "video") else "attachment") + extension
    if description and "." not in description[-6:]:
        return description + known[known.rfind("."):] if "." in known else description
    return description or known


def _inner_subject(inner: Message, hints: tuple[str, ...]) -> str:
    value = _part_header(inner, "subject")
    return _one_line(header_text(value, eight_bit_charset([value], hints), hints))


def _one_line(text: str) -> str:
    return _WS.sub(" ", _CONTROL.sub(" ", text)).strip()


def _first_id(value: str) -> str:
    found = _MSGID.search(value)
    return found.group(0) if found else ""


def _addresses(values: Iterable[str], text_of: Callable[[str], str]) -> tuple[Address, ...]:
    result: list[Address] = []
    for value in values:
        # Split the list before decoding names: a decoded "Müller, Bernd" has a comma.
        words: list[str] = []
        protected = _ENCODED_WORD.sub(partial(_placeholder, words),
                                      value.replace("\r", "").replace("\n", ""))
        for name, address in getaddresses([protected]):
            name = text_of(_PLACEHOLDER.sub(partial(_restore, words), name))
            address = _CONTROL.sub("", text_of(address)).strip()
            head, _, tail = address.rpartition(" ")
            if not name and "@" in tail and "@" not in head and '"' not in head:
                name, address = head, tail  # "Jane jane@x.test", without brackets
            address = address.lower().rstrip(".")
            if "@" not in address or len(address) > MAX_ADDRESS:
                continue
            result.append(Address(_one_line(name)[:MAX_NAME], address))
            if len(result) >= MAX_ADDRESSES:
                return tuple(result)
    return tuple(result)


def _placeholder(words: list[str], word: re.Match) -> str:
    words.append(word.group(0))
    return f"\ue000{len(words) - 1}\ue001"


def _restore(words: list[str], placeholder: re.Match) -> str:
    return words[int(placeholder.group(1))]


def _bare_sender(values: Iterable[str], text_of: Callable[[str], str]) -> tuple[Address, ...]:
    # "From: MAILER-DAEMON (Mail Delivery System)" names a sender without a domain.
    for name, address in getaddresses([text_of(v) for v in values]):
        address = _CONTROL.sub("", address).strip().lower()
        if address and " " not in address and len(address) <= MAX_ADDRESS:
            return (Address(_one_line(name)[:MAX_NAME], address),)
    return (Address("", ""),)


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        found = parsedate_to_datetime(value)
        if found.tzinfo is None:  # "-0000": the time is UTC, the sender's zone unknown
            found = found.replace(tzinfo=UTC)
        return found.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def sender_of(raw: bytes) -> str:
    """The From address from the header block alone (for log lines about unparsable mail)."""
    head = raw[:16384].split(b"\n\n", 1)[0].decode("latin-1")
    match = re.search(r"^from:(.*)$", head, re.I | re.M)
    return parseaddr(match.group(1))[1].lower() if match else ""
