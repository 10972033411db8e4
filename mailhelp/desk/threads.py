"""Which ticket does a message belong to? Matching is pure; lookups come in as a function.

Order (as Roundup's gateway does it): a Message-ID the ticket has seen, then the
subject tag, then a plus address. The tag and the plus address are guessable,
so they only join a ticket for its requester, participants and staff.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from ..mail.parse import Inbound

REFERENCES = "references"
SUBJECT_TAG = "subject_tag"
PLUS_ADDRESS = "plus_address"


@dataclass(frozen=True)
class Match:
    ticket_id: int
    reason: str
    # By Message-ID: whom the message answered was sent to (they may answer it).
    recipients: frozenset[str] = frozenset()

    @property
    def guessable(self) -> bool:
        return self.reason != REFERENCES


@lru_cache(maxsize=8)
def tag_pattern(subject_tag: str) -> re.Pattern[str]:
    """``"#{id}"`` matches ``[#42]``, ``[Ticket #42]`` and ``[Help Desk #42 urgent]``."""
    before, _, after = subject_tag.partition("{id}")
    return re.compile(
        r"\[[^\[\]]*?" + re.escape(before) + r"(\d{1,9})" + re.escape(after) + r"[^\[\]]*\]"
    )


def thread_ids(inbound: Inbound) -> list[str]:
    """The Message-IDs a message answers, most specific first: the message answered,
    then the newest references."""
    return [i for i in dict.fromkeys([inbound.in_reply_to, *reversed(inbound.references)]) if i]


def find_ticket(
    inbound: Inbound,
    ticket_of_message_id: Callable[[Iterable[str]], tuple[int, frozenset[str]] | None],
    subject_tag: str,
    help_address: str,
) -> Match | None:
    """The first rule's match; ``ticket_of_message_id`` returns the ticket of the first
    id it knows, in the order given, and the recipients of that message."""
    ids = thread_ids(inbound)
    if ids:
        found = ticket_of_message_id(ids)
        if found is not None:
            return Match(found[0], REFERENCES, found[1])
    tag = tag_pattern(subject_tag).search(inbound.subject)
    if tag:
        return Match(int(tag.group(1)), SUBJECT_TAG)
    plus = plus_ticket(inbound, help_address)
    if plus is not None:
        return Match(plus, PLUS_ADDRESS)
    return None


# A merged ticket names its survivor (tickets.merged_into_id); no chain the desk makes is
# longer than one hop (merge.py refuses to merge into or out of a merged ticket), so a
# longer one, or a loop, is a damaged record: followed this far, and no further.
MERGE_HOPS = 5


def follow_merges(ticket_id: int, merged_into: Callable[[int], int | None],
                  hops: int = MERGE_HOPS) -> int:
    """The ticket mail naming ``ticket_id`` goes to: its survivor, if it was merged
    (``merged_into`` answers for one ticket), followed at most ``hops`` times and never
    round a loop."""
    seen = {ticket_id}
    for _ in range(hops):
        survivor = merged_into(ticket_id)
        if survivor is None or survivor in seen:
            break
        seen.add(survivor)
        ticket_id = survivor
    return ticket_id


_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs|r|ref)\s*(\[\d+\])?\s*:\s*)+", re.I)


def ticket_subject(subject: str, subject_tag: str) -> str:
    """A new ticket's subject: without other tickets' tags and reply prefixes."""
    cleaned = tag_pattern(subject_tag).sub("", subject)
    cleaned = _REPLY_PREFIX.sub("", " ".join(cleaned.split()))
    return cleaned.strip() or "(no subject)"


def plus_ticket(inbound: Inbound, help_address: str) -> int | None:
    local, _, domain = help_address.lower().partition("@")
    pattern = re.compile(re.escape(local) + r"\+(\d{1,9})@" + re.escape(domain) + "$")
    candidates = [a.address for a in (*inbound.to, *inbound.cc)]
    candidates += [v.strip("<> ").lower() for v in inbound.headers.get("delivered-to", ())]
    for address in candidates:
        found = pattern.match(address)
        if found:
            return int(found.group(1))
    return None


def is_help_address(address: str, help_address: str) -> bool:
    """The help address itself or any of its plus forms."""
    local, _, domain = help_address.lower().partition("@")
    address = address.lower()
    return address == help_address.lower() or (
        address.startswith(local + "+") and address.endswith("@" + domain)
    )
