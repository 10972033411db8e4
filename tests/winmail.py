"""winmail.dat files (TNEF, [MS-OXTNEF]) for tests: as Outlook writes them, and hostile."""

from __future__ import annotations

import base64
import struct

SIGNATURE = struct.pack("<IH", 0x223E9F78, 1)


def tnef_attribute(level: int, tag: int, data: bytes) -> bytes:
    return bytes([level]) + struct.pack("<II", tag, len(data)) + data \
        + struct.pack("<H", sum(data) & 0xFFFF)


def winmail(files: list[tuple[str, bytes]]) -> bytes:
    """A winmail.dat as Outlook writes one: 8.3 title, data, long name."""
    out = SIGNATURE
    out += tnef_attribute(1, 0x00089006, struct.pack("<I", 0x00010000))
    out += tnef_attribute(1, 0x00069007, struct.pack("<II", 1252, 0))
    for name, data in files:
        out += tnef_attribute(2, 0x00069002, b"\x01\x00" + b"\xff" * 4 + b"\x00" * 8)
        out += tnef_attribute(2, 0x00018010, name.encode("cp1252")[:8] + b"~1\x00")
        out += tnef_attribute(2, 0x0006800F, data)
        long_name = name.encode("utf-16-le") + b"\x00\x00"
        props = (struct.pack("<I", 1) + struct.pack("<HH", 0x001F, 0x3707)
                 + struct.pack("<II", 1, len(long_name)) + long_name
                 + b"\x00" * (-len(long_name) % 4))
        out += tnef_attribute(2, 0x00069005, props)
    return out


def tnef_bomb(files: int) -> bytes:
    """A winmail.dat in which every 22 bytes start one more (empty) file."""
    record = tnef_attribute(2, 0x00069002, b"") + tnef_attribute(2, 0x0006800F, b"")
    return SIGNATURE + record * files


# Jane's reply on ticket 1, as the security suite's desks have it.
REPLY_HEAD = (b"From: Jane Teacher <teacher1@school.test>\nTo: help@school.test\n"
              b"Subject: Re: [#1] Printer jam\nMessage-ID: <worst@school.test>\n"
              b"In-Reply-To: <m1@school.test>\n")


def with_winmail(data: bytes, head: bytes = REPLY_HEAD) -> bytes:
    """A mail with ``data`` attached as Outlook attaches its winmail.dat."""
    return (head + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
            b"--b\nContent-Type: text/plain\n\nsee attached\n--b\n"
            b"Content-Type: application/ms-tnef; name=winmail.dat\n"
            b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data) + b"--b--\n")
