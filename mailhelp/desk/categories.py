"""Categories and schools on a ticket: filing a new ticket by [[categories]] keywords,
and the one way staff change a ticket's category, school or room (``#category`` by
mail, ``tickets set --category`` from the command line).

Filing is pure: subject and body in, a category name out. The keywords of all
categories are one compiled pattern, built as a trie (``print(?:er)?|toner``), so the
work at each position of the text is bounded by the longest keyword, not by how many
there are; the body is read up to BODY_LOOKED_AT characters.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import MailhelpError
from .tickets import event

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..config import Config
    from ..config.sections import CategoryConfig
    from ..db.models import Ticket

# Characters of a body looked at for keywords: what a request says about itself is
# at its top; a pasted log or a forwarded thread below must not cost more.
BODY_LOOKED_AT = 64 * 1024
MAX_SCHOOL = 200  # tickets.school's width
MAX_ROOM = 100  # tickets.room's


class UnknownCategory(MailhelpError):
    """A category was asked for by a name that no [[categories]] entry has."""


def _clean(name: str) -> str:
    return " ".join(str(name or "").split())


@dataclass(frozen=True)
class Categories:
    """The [[categories]] of a config, ready to file tickets."""

    names: tuple[str, ...]
    pattern: re.Pattern[str] | None
    by_keyword: dict[str, str]  # a keyword, lower-cased, spaces single -> its category

    def file(self, subject: str, body: str) -> str:
        """The category of a new ticket: the first keyword in the subject decides,
        else the first in the body; '' when none is there."""
        for text in (subject or "", (body or "")[:BODY_LOOKED_AT]):
            found = self._first(text)
            if found:
                return found
        return ""

    def _first(self, text: str) -> str:
        if self.pattern is None:
            return ""
        for match in self.pattern.finditer(text):
            found = self.by_keyword.get(" ".join(match.group(0).lower().split()))
            if found:
                return found
        return ""

    def canonical(self, name: str) -> str | None:
        """The configured spelling of ``name`` (compared without regard to case)."""
        wanted = _clean(name).casefold()
        return next((n for n in self.names if n.casefold() == wanted), None)


def categories_of(config: Config) -> Categories:
    return _compiled(config.categories)


@functools.lru_cache(maxsize=8)
def _compiled(entries: tuple[CategoryConfig, ...]) -> Categories:
    by_keyword: dict[str, str] = {}
    for entry in entries:
        for keyword in entry.keywords:
            # The first category that lists a keyword has it.
            by_keyword.setdefault(" ".join(keyword.lower().split()), _clean(entry.name))
    names = tuple(_clean(entry.name) for entry in entries)
    if not by_keyword:
        return Categories(names, None, {})
    body = _trie_pattern(sorted(by_keyword))
    return Categories(names, re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE),
                      by_keyword)


def _trie_pattern(words: list[str]) -> str:
    """One regular expression for ``words`` that shares their prefixes, so that a
    position of the text is tried against a path of the trie, not against each word.
    A space in a keyword matches any run of white space."""
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # the end of a word
    return _node_pattern(trie)


def _node_pattern(node: dict) -> str:
    ends = "" in node
    branches = [(r"\s+" if char == " " else re.escape(char)) + _node_pattern(child)
                for char, child in node.items() if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    # Longer words first (greedy): "printer" before "print" at the same place.
    return f"(?:{body})?" if ends else body


def set_category(tx: Session, config: Config, ticket: Ticket, name: str, actor: str,
                 now: datetime) -> str:
    """File ``ticket`` under the category called ``name`` (any case), or under none when
    ``name`` is empty; record who did it. Returns the name as configured.

    Raises UnknownCategory, whose message lists the known names, for any other name."""
    name = _clean(name)
    if name:
        known = categories_of(config)
        found = known.canonical(name)
        if found is None:
            listed = ", ".join(known.names) if known.names else "none are configured"
            raise UnknownCategory(f"unknown category {name[:100]!r} (known: {listed})")
        name = found
    if ticket.category != name:
        event(tx, ticket, now, actor, "category", f"{ticket.category or '-'} -> {name or '-'}")
        ticket.category = name
        ticket.updated_at = now
    return name


def set_school(tx: Session, ticket: Ticket, school: str, actor: str, now: datetime,
               room: str | None = None) -> None:
    """Change ``ticket``'s school (and room, when given); '' clears. Free text: a
    school need not be in the directory (a new building, a district office)."""
    school = _clean(school)[:MAX_SCHOOL]
    if ticket.school != school:
        event(tx, ticket, now, actor, "school", f"{ticket.school or '-'} -> {school or '-'}")
        ticket.school = school
        ticket.updated_at = now
    if room is not None:
        room = _clean(room)[:MAX_ROOM]
        if ticket.room != room:
            event(tx, ticket, now, actor, "room", f"{ticket.room or '-'} -> {room or '-'}")
            ticket.room = room
            ticket.updated_at = now
