"""Large part bodies read straight from the raw bytes, not through the standard library.

Its parser holds a message several times over while reading it (the message as
text, a four-bytes-a-character copy of that, a list of its lines, each part's
joined payload): some 7.7 times the size on the wire. ``cut`` replaces the body
of each large leaf part with a one-line marker before the parser sees the
message; ``bodies`` then checks in the parsed tree that each marker became the
whole payload of one part, where the parser would have stored exactly the bytes
that were cut out, and hands those bytes back as views of the raw message. When
anything is uncertain it answers None, and the caller parses the whole message.

Why a marker that became a whole payload proves the cut changed nothing else:
the parser reads line by line, and a line of a part's body only matters if it
ends the part: a line starting with "--" and the boundary of an enclosing
multipart (or, for a multipart that never saw its first delimiter, its own), or
a blank line under message/delivery-status, where nothing is cut. The marker
looks like a header, so a header block reading it would have kept it as a header,
not a payload. It starts where the cut bytes started, right after a line break,
so both texts reach it in the same parser state; the cut bytes are ASCII, so the
parser's text of them is the bytes themselves.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from email.message import Message

# Leaf bodies at least this long are cut; smaller ones cost the parser little.
LARGE_PART = 64 * 1024
# Hostile mail with huge numbers of "--" lines or boundaries is parsed the plain way.
MAX_DELIMITER_LINES = 100_000
MAX_BOUNDARIES = 100
_ASCII_CHUNK = 1 << 20
_MARKER_PREFIX = "X-Mailhelp-Cut-"

_BOUNDARY_PARAM = re.compile(rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]+)"|([^\s;"]+))', re.I)
# An empty line: a line break right after a line break ("\r\n" is one line break).
_EMPTY_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
_HEAD_SEARCHED = 256 * 1024  # how far into a part its empty line is looked for


@dataclass(frozen=True)
class Cut:
    """Where one marker's bytes came from: raw[start:stop], then the line break ``tail``."""

    start: int
    stop: int
    tail: str


def cut(raw: bytes) -> tuple[bytes, dict[str, Cut]]:
    """The message with its large leaf bodies replaced by markers, and the markers.

    Without large parts (the usual case) the bytes come back unchanged and no markers.
    """
    if len(raw) < LARGE_PART:
        return raw, {}
    regions = _large_bodies(raw, LARGE_PART)
    if not regions:
        return raw, {}
    nonce = secrets.token_hex(8)
    if raw.find(nonce.encode("ascii")) >= 0:  # never, but then a marker might not be unique
        return raw, {}
    view = memoryview(raw)
    pieces: list[bytes | memoryview] = []
    cuts: dict[str, Cut] = {}
    last = 0
    for start, stop, tail in regions:
        marker = f"{_MARKER_PREFIX}{nonce}-{len(cuts)}: ."
        pieces += (view[last:start], marker.encode("ascii"))
        cuts[marker] = Cut(start, stop, tail)
        last = stop
    pieces.append(view[last:])
    return b"".join(pieces), cuts


def bodies(message: Message, raw: bytes, cuts: dict[str, Cut]) -> dict[str, memoryview] | None:
    """Payload as parsed (a marker) -> the raw bytes the parser would have stored in its
    place, or None when the parsed tree does not show that the cut changed nothing else."""
    found: dict[str, memoryview] = {}
    seen: set[str] = set()
    view = memoryview(raw)
    # (part, boundaries of the multiparts around it, inside message/delivery-status)
    stack: list[tuple[Message, tuple[str, ...], bool]] = [(message, (), False)]
    while stack:
        part, boundaries, in_status = stack.pop()
        payload = part._payload  # as parsed: get_payload() may decode or raise
        if isinstance(payload, list):
            inner = boundaries
            if part.get_content_maintype() == "multipart":
                boundary = part.get_boundary()
                inner = boundaries if boundary is None else (*boundaries, boundary)
            status = in_status or part.get_content_type() == "message/delivery-status"
            stack.extend((child, inner, status) for child in payload
                         if isinstance(child, Message))
            continue
        if not isinstance(payload, str) or not payload.startswith(_MARKER_PREFIX):
            continue
        marker = payload.rstrip("\r\n")
        place = cuts.get(marker)
        extra = payload[len(marker):]
        if place is None:  # the text of a part, not a marker of ours
            continue
        if marker in seen or extra not in ("", place.tail) or in_status \
                or part.get_content_type() == "message/delivery-status":
            return None
        seen.add(marker)
        # The parser strips the line break before a delimiter; where no multipart
        # encloses the part, it stays, and then it is part of the payload too.
        stop = place.stop + len(extra)
        if part.get_content_maintype() == "multipart":
            # A multipart whose first delimiter never came: the marker was read as its
            # preamble, where a line with its own boundary would have changed that.
            own = part.get_boundary()
            boundaries = boundaries if own is None else (*boundaries, own)
        if _ends_early(raw, place.start, stop, boundaries):
            return None
        found[payload] = view[place.start:stop]
    return found if len(found) == len(cuts) else None


def _large_bodies(raw: bytes, large: int) -> list[tuple[int, int, str]]:
    """(start, stop, tail) of each large leaf body found by its MIME boundaries.

    A guess: ``bodies`` checks it against what the parser made of the message.
    """
    boundaries = _declared_boundaries(raw)
    delimiters = _delimiter_lines(raw, boundaries) if boundaries else []
    if delimiters is None:
        return []
    regions = []
    for (begin, closing), (end, _) in zip([(0, False), *delimiters],
                                          [*delimiters, (len(raw), False)], strict=True):
        if closing or end - begin < large:  # after a closing delimiter: an epilogue
            continue
        empty = _EMPTY_LINE.search(raw, begin, min(end, begin + _HEAD_SEARCHED))
        if empty is None:
            continue
        start = empty.end()
        tail = 2 if raw.startswith(b"\r\n", end - 2) else int(raw[end - 1:end] in (b"\r", b"\n"))
        stop = end - tail
        if stop - start >= large and _ascii(raw, start, stop):
            regions.append((start, stop, raw[stop:end].decode("ascii")))
    return regions


def _declared_boundaries(raw: bytes) -> tuple[bytes, ...]:
    found: set[bytes] = set()
    for word in (b"oundary", b"OUNDARY"):
        at = raw.find(word, 1)
        while at > 0:
            declared = _BOUNDARY_PARAM.match(raw, at - 1)
            if declared:
                found.add(declared.group(1) or declared.group(2))
                if len(found) > MAX_BOUNDARIES:
                    return ()
            at = raw.find(word, at + 1)
    return tuple(found)


def _delimiter_lines(raw: bytes, boundaries: tuple[bytes, ...]) -> list[tuple[int, bool]] | None:
    """(line start, closing?) of the lines that start with "--" and a declared boundary."""
    prefixes = tuple(b"--" + b for b in boundaries)
    closings = tuple(p + b"--" for p in prefixes)
    starts = [0] if raw.startswith(b"--") else []
    for line_break in (b"\n--", b"\r--"):
        at = raw.find(line_break)
        while at >= 0:
            starts.append(at + 1)
            if len(starts) > MAX_DELIMITER_LINES:
                return None
            at = raw.find(line_break, at + 3)
    found = []
    for start in sorted(starts):
        if raw.startswith(prefixes, start):  # tuples: each test is one call, not a loop
            found.append((start, raw.startswith(closings, start)))
    return found


def _ascii(raw: bytes, start: int, stop: int) -> bool:
    # Chunk by chunk: bytes.isascii is fast, and a memoryview has no isascii.
    return all(raw[at:min(at + _ASCII_CHUNK, stop)].isascii()
               for at in range(start, stop, _ASCII_CHUNK))


def _ends_early(raw: bytes, start: int, stop: int, boundaries: tuple[str, ...]) -> bool:
    """Would a line in raw[start:stop] end the part (a delimiter of an enclosing multipart)?"""
    prefixes = []
    for boundary in boundaries:
        try:
            prefixes.append(b"--" + boundary.encode("ascii"))
        except UnicodeEncodeError:  # no ASCII line can start with it
            continue
    if not prefixes:
        return False
    prefixes_tuple = tuple(prefixes)
    for line_break in (b"\n--", b"\r--"):
        at = raw.find(line_break, start - 1, stop)
        while at >= 0:
            if raw.startswith(prefixes_tuple, at + 1):
                return True
            at = raw.find(line_break, at + 3, stop)
    return False
