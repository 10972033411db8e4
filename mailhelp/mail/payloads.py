"""A MIME part's bytes, decoded: base64, quoted-printable, uuencode, attached messages.

Like mail clients, it reads what can be read (base64 off by a character, uuencode
without its "begin" line); a large body cut out before parsing (largeparts) is decoded
straight from the raw bytes.
"""

from __future__ import annotations

import binascii
import contextlib
import re
from collections.abc import Mapping
from email.message import Message

from .headers import part_header

# A bound that keeps hostile mail cheap; no real message comes near it.
MAX_DEPTH = 40  # multipart nesting walked; deeper parts are left out
_UU_BEGIN = re.compile(r"^begin [0-7]+ ", re.M)
_UU_ENCODINGS = ("x-uuencode", "uuencode", "x-uue")
# What Message.get_payload(decode=True) decodes from the text (and _cut_payload does not).
_LIBRARY_DECODED = ("base64", "x-uuencode", "uuencode", "uue", "x-uue")


def decoded_payload(part: Message, bodies: Mapping[str, memoryview]) -> bytes:
    if part.is_multipart():  # message/rfc822, message/delivery-status: their parts' bytes
        chunks: list[bytes | memoryview] = []
        for inner in part.get_payload():
            _flatten(inner, chunks, 0, bodies)
        return b"".join(chunks)
    payload = stored(part)
    body = bodies.get(payload) if bodies and isinstance(payload, str) else None
    if body is not None:
        data = _cut_payload(part, body)
        if data is not None:
            return data
        payload = str(body, "ascii")  # the text the parser would have stored
        part.set_payload(payload)
    if isinstance(payload, bytes):
        return payload
    encoding = part_header(part, "content-transfer-encoding").strip().lower()
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
    """What decoded_payload would make of a large body's text, decoded straight from the raw
    bytes (ASCII, so the text is those bytes); None where it needs the text (uuencode)."""
    encoding = part_header(part, "content-transfer-encoding").strip().lower()
    if encoding == "base64":
        return _base64(body)
    # As Message.get_payload(decode=True) does, which reads the header unstripped.
    library_encoding = str(part.get("content-transfer-encoding", "")).lower()
    if encoding in _UU_ENCODINGS or library_encoding in _LIBRARY_DECODED:
        return None
    if library_encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    return body.tobytes()


def stored(part: Message) -> str | bytes:
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
    payload = message.get_payload() if message.is_multipart() else stored(message)
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
