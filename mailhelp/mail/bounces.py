"""What a bounce says: which recipients failed, and which of our mails it returns. Pure.

flufl.bounce (GNU Mailman's DSN reader) knows the formats of dozens of MTAs. The
mail it returns is named by the signed return path it came back to, or by our own
signed Message-IDs anywhere in it (DSNs quote the original's headers or the whole
message); anything else in a bounce is the sender's word and is not believed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import signing


@dataclass(frozen=True)
class BounceReport:
    recipients: tuple[str, ...]  # addresses that failed, lower-cased (the bounce's word)
    permanent: bool
    returned_ids: tuple[str, ...]  # Message-IDs of our mails, their signatures checked


_FAILED_HEADER = re.compile(rb"^x-failed-recipients:[ \t]*(.*)$", re.I | re.M)
MAX_RETURNED = 20  # Message-IDs of ours taken from one bounce
# What of a bounce is read: a DSN's report and the returned headers come first, and
# flufl.bounce reads about 2 MB a second.
READ = 256 * 1024


def analyse(raw: bytes, key: bytes, help_address: str,
            envelope_recipients: tuple[str, ...] = ()) -> BounceReport:
    """Read a bounce; anything unreadable simply yields an empty report.
    ``envelope_recipients``: where it was delivered (Delivered-To, To)."""
    help_domain = help_address.rpartition("@")[2]
    returned = [found for address in envelope_recipients
                if (found := signing.returned_message_id(key, address, help_address))]
    ours = re.compile(rb"<[0-9a-f]{16}\.[0-9a-f]{12}\.mailhelp\.t\d{1,9}@"
                      + re.escape(help_domain.encode()) + rb">", re.I)
    for match in ours.finditer(raw, 0, READ):
        candidate = match.group(0).decode("ascii").lower()
        if signing.signed_ticket(key, candidate) is not None:
            returned.append(candidate)
        if len(returned) >= MAX_RETURNED:
            break
    if not returned:
        # Not a bounce of anything we sent: what it says failed is not read (anyone can
        # send a "bounce", and reading a large one is the slowest pass a message has).
        return BounceReport((), False, ())
    recipients, permanent = failed_recipients(raw)
    return BounceReport(recipients, permanent, tuple(dict.fromkeys(returned)))


def failed_recipients(raw: bytes) -> tuple[tuple[str, ...], bool]:
    """The addresses a bounce says failed (lower-cased), and whether any for good."""
    temporary, permanent = _failures(raw[:READ])
    for match in _FAILED_HEADER.finditer(raw, 0, 65536):
        permanent |= {a.strip().lower() for a in match.group(1).decode("latin-1").split(",")
                      if "@" in a}
    return tuple(sorted(permanent | temporary)), bool(permanent)


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
