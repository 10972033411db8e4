"""Bytes of mail -> text, when the charset label is missing, unknown or lying. Pure.

Mail declares its charsets, and mail lies about them: GBK labelled GB2312, UTF-8
labelled ISO-8859-1, raw 8-bit headers with no label at all. Every decode here
runs one chain: the declared charset (widened to the superset that mail clients
actually use), UTF-8, charsets declared elsewhere in the same message, a detector
(charset-normalizer), and finally Windows-1252 with replacement characters. The
text that comes out never holds a lone surrogate or a NUL: both crash the
database or the JSON output later.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
from collections.abc import Iterator, Sequence

# Labels that browsers and mail clients read as a wider charset (WHATWG Encoding
# Standard): text labelled GB2312 is routinely GBK, ISO-8859-1 is Windows-1252.
_SUPERSET = {
    "ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874",
    "iso8859-11": "cp874", "gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs",
    "shift_jis": "cp932", "euc_kr": "cp949", "iso2022_jp": "iso2022_jp_2",
}
# Labels Python does not know under these names.
_ALIASES = {
    "x-sjis": "cp932", "x-gbk": "gb18030", "windows-874": "cp874", "iso-8859-8-i": "iso8859-8",
    "x-euc-jp": "euc_jp", "x-mac-roman": "mac-roman", "x-mac-cyrillic": "mac-cyrillic",
    "unicode-1-1-utf-7": "utf-7", "utf8mb4": "utf-8", "cp-850": "cp850",
}
# Codecs that are not charsets of mail, or that are slow or unsafe on hostile input
# (punycode decodes in quadratic time).
_REFUSED = {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined",
            "utf-8-sig", "charmap"}
# When a multi-byte label fails, its relatives are the likeliest truth.
_SIBLINGS = {
    "iso2022_jp_2": ("cp932", "euc_jp"), "cp932": ("euc_jp",), "euc_jp": ("cp932",),
    "gb18030": ("big5hkscs",), "big5hkscs": ("gb18030",), "cp949": ("iso2022_kr",),
}
# A Latin single-byte charset decodes any bytes at all, so it says nothing by succeeding.
_LATIN = {"cp1252", "iso8859-15", "cp1250", "iso8859-2", "mac-roman"}
# What the detector may answer: the charsets mail is written in. Without a list it
# happily reads eight bytes of German as UTF-16 or Urdu.
_DETECTABLE = ["utf_8", "cp1252", "cp1250", "cp1251", "koi8_r", "iso8859_2", "cp1253",
               "cp1254", "cp1255", "cp1256", "cp1257", "gb18030", "big5", "cp932", "euc_jp",
               "cp949", "iso2022_jp", "cp874"]
_DETECT_BYTES = 65536

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_SURROGATE = re.compile("[\ud800-\udfff]")
_EIGHT_BIT_RUN = re.compile(rb"[\x80-\xff]+")
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}")
_JIS_AS_CP932 = "iso2022_jp as cp932"
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset=[\"']?([A-Za-z0-9_:.-]{1,40})", re.I)


@functools.lru_cache(maxsize=256)
def codec(label: str | None) -> str | None:
    """The Python codec to read a declared charset with, or None if it is unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower().split("*", 1)[0]
    name = _ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    return _SUPERSET.get(info.name, info.name)


def clean(text: str) -> str:
    """Text safe for UTF-8 sinks: no lone surrogates (surrogateescape leaves them), no NULs."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


def decode(data: bytes, declared: str | None = None, hints: Sequence[str] = ()) -> str:
    """Text of a body part or header word, through the fallback chain."""
    return decode_reporting(data, declared, hints)[0]


def decode_reporting(data: bytes, declared: str | None = None,
                     hints: Sequence[str] = ()) -> tuple[str, bool]:
    """(text, whether the declared charset had to be abandoned)."""
    if not data:
        return "", False
    name = codec(declared)
    if name is None and data.isascii() and b"\x1b$" not in data:
        return clean(data.decode("ascii")), False
    for candidate in _candidates(data, name, hints):
        try:
            return clean(_decoded(data, candidate)), candidate != name
        except (UnicodeError, LookupError):
            continue
    mixed = _mostly_utf8(data)
    if mixed is not None:
        return clean(mixed), True
    detected = detect(data)
    if detected:
        return clean(data.decode(detected, "replace")), True
    return clean(data.decode(name if name and name not in _LATIN else "cp1252", "replace")), True


def _decoded(data: bytes, candidate: str) -> str:
    if candidate == _JIS_AS_CP932:
        return _jis_as_cp932(data)
    return data.decode(candidate)


def _candidates(data: bytes, name: str | None, hints: Sequence[str]) -> Iterator[str]:
    """Charsets to try strictly, most likely first (lazily: the first usually fits)."""
    seen: set[str] = set()

    def fresh(candidate: str | None) -> bool:
        if candidate is None or candidate in seen:
            return False
        seen.add(candidate)
        return True

    if b"\x1b$" in data and (name is None or name.startswith("iso2022_jp")):
        yield from (c for c in ("iso2022_jp_2", _JIS_AS_CP932) if fresh(c))
    if name in _LATIN and _is_utf8(data) and fresh("utf-8"):
        yield "utf-8"  # valid multi-byte UTF-8 is almost never meant as Latin text
    if fresh(name):
        yield name
    yield from (c for c in _SIBLINGS.get(name or "", ()) if fresh(c))
    if fresh("utf-8"):
        yield "utf-8"
    # A Latin hint is believed only for text whose 8-bit bytes stand alone, as
    # accents do; long runs of them are another script, left to the detector.
    latin_ok = _accent_like(data)
    for hint in hints:
        candidate = codec(hint)
        if (latin_ok or candidate not in _LATIN) and fresh(candidate):
            yield candidate
    if latin_ok and fresh("cp1252"):
        yield "cp1252"


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 with stray Windows-1252 bytes (text pasted together), if that is what it is."""
    eight_bit = sum(len(run) for run in _EIGHT_BIT_RUN.findall(data))
    valid = sum(len(seq) for seq in _UTF8_SEQUENCE.findall(data))
    if not valid or valid * 2 < eight_bit:
        return None
    codecs.register_error("mailhelp.cp1252", _as_cp1252)
    return data.decode("utf-8", "mailhelp.cp1252")


def _as_cp1252(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start:error.end].decode("cp1252", "replace"), error.end


def _jis_as_cp932(data: bytes) -> str:
    """ISO-2022-JP as Outlook writes it (CP50220): JIS with NEC and IBM characters.

    Python's iso2022_jp codecs refuse those (circled digits, for one), so the JIS
    pairs are moved to Shift_JIS positions and read as CP932, which has them all.
    """
    out = bytearray()
    mode = b"B"
    for chunk in re.split(rb"(\x1b[$(][@BJI])", data):
        if chunk[:1] == b"\x1b":
            mode = b"J" if chunk[1:2] == b"$" else chunk[2:3]
            continue
        if mode == b"J":
            for j1, j2 in zip(chunk[::2], chunk[1::2], strict=False):
                if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
                    raise UnicodeError("not a JIS X 0208 pair")
                s1 = ((j1 - 0x21) >> 1) + 0x81
                s1 += 0x40 if s1 > 0x9F else 0
                s2 = j2 + (0x1F + (j2 >= 0x60) if j1 & 1 else 0x7E)
                out += bytes((s1, s2))
        elif mode == b"I":  # half-width katakana
            out += bytes(b | 0x80 for b in chunk)
        else:
            out += chunk
    return out.decode("cp932")


def _accent_like(data: bytes) -> bool:
    runs = _EIGHT_BIT_RUN.findall(data[:_DETECT_BYTES])
    return not runs or sum(len(r) for r in runs) / len(runs) < 3


def detect(data: bytes) -> str | None:
    """charset-normalizer's best guess among the charsets of mail, or None."""
    from charset_normalizer import from_bytes  # deferred: rarely needed, slowish import

    try:
        best = from_bytes(data[:_DETECT_BYTES], cp_isolation=_DETECTABLE).best()
    except Exception:  # a detector failure only means no guess
        return None
    return codec(best.encoding) if best is not None else None


def eight_bit_charset(values: Sequence[str], hints: Sequence[str] = ()) -> str:
    """The charset for raw 8-bit bytes in headers, judged on all of them together.

    Headers carry no label, and one header is too short for a detector; the
    message's other headers and its declared charsets say more.
    """
    data = b" ".join(v.encode("utf-8", "surrogateescape") for v in values)
    if data.isascii():
        return "utf-8"
    for candidate in _candidates(data, None, hints):
        try:
            data.decode(candidate)
        except (UnicodeError, LookupError):
            continue
        return candidate
    return detect(data) or "cp1252"


def header_text(value: str, eight_bit: str = "utf-8", hints: Sequence[str] = ()) -> str:
    """A raw header value (8-bit bytes as surrogates) unfolded and decoded (RFC 2047).

    Lenient like mail clients: encoded words inside quotes or words, with spaces
    inside, with unknown charsets; adjacent words of one charset are joined before
    decoding, since senders split multi-byte characters across them.
    """
    if "=?" not in value and value.isascii():
        return clean(_unfold_str(value))
    # A stored header value keeps its folds; unfolding is removing the line breaks.
    raw = value.encode("utf-8", "surrogateescape").replace(b"\r", b"").replace(b"\n", b"")
    pieces: list[tuple[bytes, str | None]] = []  # (bytes, charset label or None if bare)
    position = 0
    for word in _ENCODED_WORD.finditer(raw):
        gap = raw[position:word.start()]
        # Whitespace between two encoded words is not text (RFC 2047 section 6.2).
        if not (pieces and pieces[-1][1] is not None and not gap.strip(b" \t\r\n")):
            pieces.append((gap, None))
        label = word.group(1).decode("ascii", "replace").split("*", 1)[0].lower()
        data = _word_bytes(word.group(2), word.group(3))
        if pieces and pieces[-1][1] == label:
            pieces[-1] = (pieces[-1][0] + data, label)
        else:
            pieces.append((data, label))
        position = word.end()
    pieces.append((raw[position:], None))
    return clean("".join(_piece_text(data, label, eight_bit, hints) for data, label in pieces))


def _piece_text(data: bytes, label: str | None, eight_bit: str, hints: Sequence[str]) -> str:
    if label is not None:
        return decode(data, label, hints)
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(eight_bit, "replace")


def _word_bytes(encoding: bytes, text: bytes) -> bytes:
    if encoding in b"bB":
        compact = re.sub(rb"[^A-Za-z0-9+/]", b"", text)
        compact += b"=" * (-len(compact) % 4)
        try:
            return base64.b64decode(compact)
        except (binascii.Error, ValueError):
            return text
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text.replace(b"_", b" "))


def _unfold_str(value: str) -> str:
    return value.replace("\r\n", "").replace("\n", "").replace("\r", "")


def meta_charset(html: bytes) -> str | None:
    """The charset an HTML document names in its <meta> tag, for parts whose MIME
    header names none."""
    found = _META_CHARSET.search(html[:4096])
    return found.group(1).decode("ascii") if found else None
