"""The files inside an Outlook ``winmail.dat`` (TNEF, [MS-OXTNEF]). Pure.

Outlook wraps a message's attachments in one ``application/ms-tnef`` part that
no other mail client opens, so a teacher's screenshot arrives as winmail.dat.
This reads the attachment records out of it. It is a small reader of our own:
tnefparse (last released 2021) loops for hours on a 30-byte winmail.dat whose
property count says four billion. Here every loop consumes input or stops, so
hostile input costs time in proportion to its size.
"""

from __future__ import annotations

import struct

from .attachment import Attachment

SIGNATURE = 0x223E9F78
_LEVEL_ATTACHMENT = 0x02
# Attribute ids (low word of the attribute tag).
_ATT_RENDDATA = 0x9002  # starts each attachment
_ATT_TITLE = 0x8010
_ATT_DATA = 0x800F
_ATT_ATTACHMENT = 0x9005  # the attachment's MAPI properties
_ATT_OEM_CODEPAGE = 0x9007
# MAPI property ids of an attachment.
_PR_DISPLAY_NAME = 0x3001
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E
_PR_ATTACH_CONTENT_ID = 0x3712
# Fixed value sizes by MAPI property type; 2-byte values are padded to 4.
_FIXED = {0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8, 0x000A: 4,
          0x000B: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16}
_STRING8, _UNICODE, _OBJECT, _BINARY = 0x001E, 0x001F, 0x000D, 0x0102
_MULTI_VALUE = 0x1000
_IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")
_MAX_EMBEDDED = 3


def is_tnef(data: bytes) -> bool:
    return len(data) >= 6 and struct.unpack_from("<I", data)[0] == SIGNATURE


def attachments(data: bytes, limit: int = 1000, depth: int = 0) -> list[Attachment]:
    """The files in a TNEF stream, in order, and no more than ``limit`` of them (the
    records after those are not read); [] when it holds none or is not TNEF.

    Each file's bytes are a part of ``data``: together they are never larger.
    """
    if not is_tnef(data) or depth > _MAX_EMBEDDED or limit <= 0:
        return []
    files: list[Attachment] = []
    record: dict | None = None
    codepage = "cp1252"
    offset = 6
    while offset + 11 <= len(data):
        level = data[offset]
        tag, length = struct.unpack_from("<II", data, offset + 1)
        start = offset + 9
        offset = start + length + 2  # the checksum is not worth refusing a file over
        attribute = tag & 0xFFFF
        if attribute == _ATT_OEM_CODEPAGE and length >= 4:
            codepage = _codepage(struct.unpack_from("<I", data, start)[0])
        elif attribute == _ATT_RENDDATA:
            # Every 22 bytes can start a file: 130,000 of them took 3 s, and a ticket
            # and its mail then carried them all.
            if record is not None:
                files += _files(record, limit - len(files), depth)
                if len(files) >= limit:
                    return files[:limit]
            record = {}
        elif level == _LEVEL_ATTACHMENT and record is not None \
                and attribute in (_ATT_TITLE, _ATT_DATA, _ATT_ATTACHMENT):
            _attachment_attribute(record, attribute, data[start:start + length], codepage)
    if record is not None:
        files += _files(record, limit - len(files), depth)
    return files[:limit]


def _attachment_attribute(record: dict, attribute: int, value: bytes, codepage: str) -> None:
    if attribute == _ATT_TITLE:
        record.setdefault("title", _string8(value, codepage))
    elif attribute == _ATT_DATA:
        record["data"] = value
    elif attribute == _ATT_ATTACHMENT:
        for prop_id, prop_type, prop_value in _properties(value):
            if prop_id == _PR_ATTACH_DATA and prop_type == _OBJECT:
                if prop_value.startswith(_IID_IMESSAGE):  # an attached Outlook message
                    record["embedded"] = prop_value[len(_IID_IMESSAGE):]
                else:
                    record["data"] = prop_value[16:]
            elif prop_id == _PR_ATTACH_DATA and prop_type == _BINARY:
                record["data"] = prop_value
            elif prop_id in _NAMES and prop_type in (_STRING8, _UNICODE):
                record[_NAMES[prop_id]] = _text(prop_value, prop_type, codepage)


_NAMES = {_PR_ATTACH_LONG_FILENAME: "long", _PR_ATTACH_FILENAME: "short",
          _PR_DISPLAY_NAME: "display", _PR_ATTACH_MIME_TAG: "mime",
          _PR_ATTACH_CONTENT_ID: "cid"}


def _files(record: dict, limit: int, depth: int) -> list[Attachment]:
    if "embedded" in record:
        return attachments(record["embedded"], limit, depth + 1)
    if "data" not in record:
        return []
    name = next((record[k] for k in ("long", "title", "short", "display") if record.get(k)),
                "attachment")
    content_type = record.get("mime", "").lower() or _type_of(name)
    return [Attachment(name, content_type, record["data"], record.get("cid", ""))]


def _type_of(filename: str) -> str:
    import mimetypes

    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def _properties(data: bytes) -> list[tuple[int, int, bytes]]:
    """(id, type, value) of the properties read (names, types and data) in a MAPI
    property list; stops at the first thing it cannot read."""
    found: list[tuple[int, int, bytes]] = []
    if len(data) < 4:
        return found
    count = struct.unpack_from("<I", data)[0]
    offset, read = 4, 0
    try:
        while read < count and offset + 4 <= len(data):
            read += 1
            prop_type, prop_id = struct.unpack_from("<HH", data, offset)
            offset += 4
            if prop_id >= 0x8000:  # a named property: GUID, kind, then an id or a name
                kind = struct.unpack_from("<I", data, offset + 16)[0]
                offset += 20
                if kind == 0:
                    offset += 4
                else:
                    name_length = struct.unpack_from("<I", data, offset)[0]
                    offset += 4 + name_length + (-name_length % 4)
            base = prop_type & ~_MULTI_VALUE
            wanted = prop_id in _NAMES or prop_id == _PR_ATTACH_DATA
            values, offset = _values(data, offset, base, bool(prop_type & _MULTI_VALUE), wanted)
            found += ((prop_id, base, value) for value in values)
    except (struct.error, ValueError):
        pass
    return found


def _values(data: bytes, offset: int, base: int, multi: bool,
            wanted: bool) -> tuple[list[bytes], int]:
    """The values of one property (if ``wanted``), and the offset after them; fixed-size
    values (numbers, times, flags) are passed over, never read."""
    if base in _FIXED:
        size = _FIXED[base]
        count = 1
        if multi:
            count = struct.unpack_from("<I", data, offset)[0]
            offset += 4
        if offset + size * count > len(data):
            raise ValueError("property values past the end")
        return [], offset + size * count
    if base not in (_STRING8, _UNICODE, _OBJECT, _BINARY):
        raise ValueError(f"unknown MAPI property type {base:#06x}")
    count = struct.unpack_from("<I", data, offset)[0]
    offset += 4
    values = []
    for _ in range(count):
        length = struct.unpack_from("<I", data, offset)[0]
        offset += 4
        if offset + length > len(data):
            raise ValueError("property value past the end")
        if wanted:
            values.append(data[offset:offset + length])
        offset += length + (-length % 4)
    return values, offset


def _text(value: bytes, base: int, codepage: str) -> str:
    if base == _UNICODE:
        return value.decode("utf-16-le", "replace").split("\x00", 1)[0]
    return _string8(value, codepage)


def _string8(value: bytes, codepage: str) -> str:
    from .charsets import decode

    return decode(value.split(b"\x00", 1)[0], codepage)


def _codepage(number: int) -> str:
    return {65001: "utf-8", 20127: "ascii", 28591: "iso-8859-1", 20866: "koi8-r",
            932: "cp932", 936: "gb18030", 949: "cp949", 950: "big5"}.get(number, f"cp{number}")
