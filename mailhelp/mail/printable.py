"""Text from mail made safe to print on a terminal or to write into a log line. Pure.

A subject, a name or a body can carry any character its sender chose: ESC sequences
that clear the screen or (OSC 52) write the clipboard of whoever runs ``mailhelp
tickets show``, and encoded line breaks (``=?utf-8?q?a=0Aaction=3Dforged?=``) that
would start a log line of the sender's own. Such characters are shown escaped, as
``\\x1b`` or ``\\n``: readable, inert. JSON output needs none of this (json.dumps
escapes them itself), so it stays exact.
"""

from __future__ import annotations

import logging

# C0 and C1 controls and DEL; the Unicode line and paragraph separators, which
# str.splitlines and some log readers take for line breaks; and the bidirectional
# overrides and isolates, which make a terminal show text in another order.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
             *range(0x2066, 0x206A)]
# str.translate tables: a character to its escape (\x1b, \u2028).
_ANY_CONTROL = {c: chr(c).encode("unicode_escape").decode("ascii") for c in _CONTROLS}
_CONTROL_BUT_LAYOUT = {c: e for c, e in _ANY_CONTROL.items() if c not in (0x09, 0x0A)}


def printable(text: str, lines: bool = False) -> str:
    """``text`` with its control characters escaped; with ``lines``, newlines and tabs
    are kept (a body's layout)."""
    if text.isprintable():  # none of _CONTROLS (Cc, Cf, Zl, Zp): nothing to escape
        return text  # (a tenth of translate's cost: a listing calls this 500,000 times)
    return text.translate(_CONTROL_BUT_LAYOUT if lines else _ANY_CONTROL)


class OneLineFormatter(logging.Formatter):
    """One log line per event, whatever the values in it: the formatted message is
    escaped. A traceback keeps its lines, each indented, so that none of them (nor an
    exception's message, which may quote mail) can pass for a log line of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("    " + printable(line) for line in text.split("\n"))
