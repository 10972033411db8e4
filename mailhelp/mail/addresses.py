"""People named in a message's headers: From, To, Cc, Reply-To as Address values. Pure.

Lists are split before encoded names are decoded (a decoded "Müller, Bernd" has a
comma), and every list is bounded against hostile mail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address as _StdAddress
from email.utils import formataddr, getaddresses
from functools import lru_cache, partial

from .headers import CONTROL, one_line

MAX_ADDRESSES = 500  # per header
MAX_NAME = 200  # the database's column
MAX_ADDRESS = 320  # RFC 5321's limit: local part 64, domain 255
_DELIVERABLE = re.compile(r"^[^@\s<>(),;:\\\"\[\]]+@[a-z0-9-]+(\.[a-z0-9-]+)+$", re.I)
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?]*?\?=")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")


@lru_cache(maxsize=1024)
def _formatted(name: str, address: str) -> str:
    """``Name <address>`` with the name quoted where it must be (remembered: the same
    few people are named in mail after mail, and the header classes are slow)."""
    name = " ".join(name.split())  # never a line break into a header
    if not name:
        return address
    try:
        return str(_StdAddress(display_name=name, addr_spec=address))
    except (ValueError, IndexError, HeaderParseError):
        return formataddr((name, address))


@dataclass(frozen=True)
class Address:
    name: str
    address: str  # lower-cased; what every comparison uses

    def formatted(self) -> str:
        return _formatted(self.name, self.address)

    @property
    def deliverable(self) -> bool:
        """Can mail be sent to it (one @, a dotted domain, nothing odd)?"""
        return bool(_DELIVERABLE.match(self.address))


def addresses(values: Iterable[str], text_of: Callable[[str], str]) -> tuple[Address, ...]:
    result: list[Address] = []
    for value in values:
        # Split the list before decoding names: a decoded "Müller, Bernd" has a comma.
        words: list[str] = []
        protected = _ENCODED_WORD.sub(partial(_placeholder, words),
                                      value.replace("\r", "").replace("\n", ""))
        for name, address in getaddresses([protected]):
            name = text_of(_PLACEHOLDER.sub(partial(_restore, words), name))
            address = CONTROL.sub("", text_of(address)).strip()
            head, _, tail = address.rpartition(" ")
            if not name and "@" in tail and "@" not in head and '"' not in head:
                name, address = head, tail  # "Jane jane@x.test", without brackets
            address = address.lower().rstrip(".")
            if "@" not in address or len(address) > MAX_ADDRESS:
                continue
            result.append(Address(one_line(name)[:MAX_NAME], address))
            if len(result) >= MAX_ADDRESSES:
                return tuple(result)
    return tuple(result)


def _placeholder(words: list[str], word: re.Match) -> str:
    words.append(word.group(0))
    return f"\ue000{len(words) - 1}\ue001"


def _restore(words: list[str], placeholder: re.Match) -> str:
    return words[int(placeholder.group(1))]


def bare_sender(values: Iterable[str], text_of: Callable[[str], str]) -> tuple[Address, ...]:
    # "From: MAILER-DAEMON (Mail Delivery System)" names a sender without a domain.
    for name, address in getaddresses([text_of(v) for v in values]):
        address = CONTROL.sub("", address).strip().lower()
        if address and " " not in address and len(address) <= MAX_ADDRESS:
            return (Address(one_line(name)[:MAX_NAME], address),)
    return (Address("", ""),)
