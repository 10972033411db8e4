"""What a bounce says: which recipients failed, and which of our mails it returns. Pure.

flufl.bounce (GNU Mailman's DSN reader) knows the formats of dozens of MTAs; the
mail it returns is found by our own Message-IDs, which name their ticket, anywhere
in the bounce (DSNs quote the original's headers or the whole message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class BounceReport:
    recipients: tuple[str, ...]  # addresses that failed, lower-cased
    permanent: bool
    returned_ids: tuple[str, ...]  # Message-IDs of our mails found in the bounce

    @property
    def ticket_ids(self) -> tuple[int, ...]:
        found = (_TICKET_OF_ID.search(i) for i in self.returned_ids)
        return tuple(dict.fromkeys(int(m.group(1)) for m in found if m))


_TICKET_OF_ID = re.compile(r"\.mailhelp\.t(\d+)@")
_FAILED_HEADER = re.compile(rb"^x-failed-recipients:[ \t]*(.*)$", re.I | re.M)


def analyse(raw: bytes, help_domain: str) -> BounceReport:
    """Read a bounce; anything unreadable simply yields an empty report."""
    ours = re.compile(rb"<[^<>\s]{1,200}\.mailhelp\.t\d+@" + re.escape(help_domain.encode())
                      + rb">", re.I)
    returned = tuple(dict.fromkeys(m.group(0).decode("ascii", "replace")
                                   for m in ours.finditer(raw)))
    temporary, permanent = _failures(raw)
    for match in _FAILED_HEADER.finditer(raw[:65536]):
        permanent |= {a.strip().lower() for a in match.group(1).decode("latin-1").split(",")
                      if "@" in a}
    recipients = tuple(sorted(permanent | temporary))
    return BounceReport(recipients, bool(permanent), returned)


def _failures(raw: bytes) -> tuple[set[str], set[str]]:
    import email

    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(email.message_from_bytes(raw))
    except Exception:  # a DSN too broken for any detector: the report stays empty
        return set(), set()
    return {_text(a) for a in temporary}, {_text(a) for a in permanent}


def _text(address: bytes | str) -> str:
    if isinstance(address, bytes):
        address = address.decode("utf-8", "replace")
    return address.strip().strip("<>").lower()
