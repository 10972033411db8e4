"""The MIME tree of a message: its leaves, their text and their attachments. Pure.

The standard library's lenient (compat32) parse tree is read here rather than through
mail-parser: charsets, attached messages and winmail.dat need decisions of our own,
and the tree walk is where the limits against hostile mail (depth, part count) belong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from email.message import Message

from ..errors import ParseError
from . import largeparts
from .attachment import Attachment
from .charsets import decode, decode_reporting, eight_bit_charset, header_text, meta_charset
from .headers import one_line, part_header
from .payloads import MAX_DEPTH, decoded_payload

# Bounds that keep hostile mail cheap; no real message comes near them.
MAX_PARTS = 1000
# The standard library's parser checks every line against every open boundary, so
# its work grows with boundaries x lines: crafted nesting takes it minutes.
MAX_BOUNDARY_WORK = 10_000_000
_CID_NAME = re.compile(r"<?([\w\-. ]{1,100}\.[A-Za-z0-9]{2,5})@")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,100}/[a-z0-9!#$&^_.+-]{1,100}\Z")
_BOUNDARY_EVENT = re.compile(
    rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]+)"|([^\s;"]+))|^--([^\r\n]+?)--[ \t]*\r?$', re.I | re.M)
_UNNAMED = {
    "message/delivery-status": "delivery-status.txt", "text/rfc822-headers": "headers.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "application/pgp-signature": "signature.asc", "application/pgp-encrypted": "version.txt",
    "application/pkcs7-signature": "smime.p7s", "application/x-pkcs7-signature": "smime.p7s",
    "application/pkcs7-mime": "smime.p7m", "application/x-pkcs7-mime": "smime.p7m",
    "text/calendar": "invite.ics", "text/html": "document.html", "text/plain": "document.txt",
}
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")


def tree(raw: bytes) -> tuple[Message, Mapping[str, memoryview]]:
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


def refuse_costly_nesting(raw: bytes) -> None:
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


def leaves(message: Message, defects: set[str]) -> list[Message]:
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


def charset_of(part: Message) -> str | None:
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


def content(leaves: list[Message], text_of: Callable[[str], str], hints: tuple[str, ...],
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
        payload = decoded_payload(part, bodies)
        textual = ctype in ("text/plain", "text/html") or part.get_content_maintype() == "multipart"
        if textual and disposition != "attachment" and (not filename or disposition == "inline"):
            declared = charset_of(part) or (
                meta_charset(payload) if ctype == "text/html" else None)
            text, recovered = decode_reporting(payload, declared, hints)
            if recovered:
                defects.add("CharsetDecodeDefect")
            (htmls if ctype == "text/html" else plain).append(text)
            if not filename:
                continue
        content_id = one_line(text_of(part_header(part, "content-id")))[:998]
        if ctype in _TNEF_TYPES or filename.lower() == "winmail.dat":
            from .tnef import attachments as tnef_files

            # Its files are parts like any other; asking for one more than there is
            # room for tells whether there were too many.
            room = MAX_PARTS - len(attachments)
            inside = tnef_files(payload, limit=room + 1)
            if inside:
                if len(inside) > room:
                    defects.add("TooManyParts")
                attachments.extend(Attachment(one_line(f.filename)[:255], f.content_type,
                                              f.payload, one_line(f.content_id)[:998])
                                   for f in inside[:room])
                continue
        name = filename or _unnamed(part, ctype, text_of, hints)
        attachments.append(Attachment(name, ctype, payload, content_id))
    if len(attachments) > MAX_PARTS:  # the parts after a winmail.dat that filled them
        defects.add("TooManyParts")
        del attachments[MAX_PARTS:]
    return plain, htmls, attachments


def _filename(part: Message, text_of: Callable[[str], str], hints: tuple[str, ...]) -> str:
    for header in ("content-disposition", "content-type"):
        raw = part_header(part, header)
        if not raw.isascii():
            # A raw 8-bit file name: the standard library would make it U+FFFD.
            data = raw.encode("utf-8", "surrogateescape").replace(b"\r", b"").replace(b"\n", b"")
            part.replace_header(header, decode(data, None, hints))
    name = (_param(part, "filename", "content-disposition", hints)
            or _param(part, "name", "content-type", hints))
    return one_line(text_of(name))[:255]


def _unnamed(part: Message, ctype: str, text_of: Callable[[str], str],
             hints: tuple[str, ...]) -> str:
    """A file name for a part that has none: what it is, with the usual extension."""
    description = one_line(text_of(part_header(part, "content-description")))[:100]
    if ctype in ("message/rfc822", "message/global"):
        inner = part.get_payload(0) if part.is_multipart() else None
        subject = _inner_subject(inner, hints) if isinstance(inner, Message) else ""
        return (subject[:100] or description or "message") + ".eml"
    # Outlook's inline images have ids such as <image001.png@01D9...>.
    from_id = _CID_NAME.match(text_of(part_header(part, "content-id")))
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
    value = part_header(inner, "subject")
    return one_line(header_text(value, eight_bit_charset([value], hints), hints))
