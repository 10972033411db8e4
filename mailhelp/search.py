"""Full-text search for ``tickets list --search``: which tickets hold every given word.

A ticket matches when each word is in its subject or in the subject or new text of one
of its incoming messages (requests, replies, staff answers, notes): the desk's own mail
(acknowledgements, notifications) says the same words on every ticket and is left out.
The words are the user's text split into letters and digits, so FTS5's query syntax
(``"``, ``AND(``, ``*``, ``NEAR``) is never interpreted: each word goes in as a quoted
string on SQLite and as ``plainto_tsquery`` on PostgreSQL. The indexes are migration
0010's, and the expressions below are the ones it indexed (the first 100,000
characters of a message's text: 0010's SEARCHED).
"""

from __future__ import annotations

import re

from sqlalchemy import Integer, column, text

MAX_WORDS = 8  # a pasted paragraph is not a search; its first words are
_WORD = re.compile(r"\w+")

# What the migration made besides the models' tables: Alembic's comparison of the
# schema with the models leaves them out (include_name).
SEARCH_TABLES = ("messages_fts", "tickets_fts")
SEARCH_INDEXES = ("ix_messages_search", "ix_tickets_search")


def words(query: str) -> list[str]:
    """The words of a search, lower-cased, each once, in order (at most MAX_WORDS)."""
    found: list[str] = []
    for match in _WORD.finditer(query or ""):
        word = match.group().lower()
        if word not in found:
            found.append(word)
        if len(found) == MAX_WORDS:
            break
    return found


_SQLITE = (
    "SELECT m.ticket_id AS ticket_id FROM messages_fts JOIN messages AS m "
    "ON m.id = messages_fts.rowid WHERE messages_fts MATCH :{p} AND m.direction = 'in' "
    "UNION SELECT rowid AS ticket_id FROM tickets_fts WHERE tickets_fts MATCH :{p}")
_POSTGRESQL = (
    "SELECT m.ticket_id AS ticket_id FROM messages AS m WHERE to_tsvector('simple'::regconfig, "
    "coalesce(m.subject, '') || ' ' || left(coalesce(m.text, ''), 100000)) @@ plainto_tsquery("
    "'simple'::regconfig, :{p}) AND m.direction = 'in' "
    "UNION SELECT t.id AS ticket_id FROM tickets AS t WHERE to_tsvector('simple'::regconfig, "
    "coalesce(t.subject, '')) @@ plainto_tsquery('simple'::regconfig, :{p})")


def matching_ticket_ids(dialect: str, word: str, n: int = 0):
    """A subquery of the ids of the tickets that have ``word`` (one of words())."""
    name = f"search_word_{n}"
    if dialect == "sqlite":
        # A quoted FTS5 string is a phrase of its tokens: nothing in it is syntax but '"'.
        sql, value = _SQLITE.format(p=name), '"' + word.replace('"', '""') + '"'
    else:
        sql, value = _POSTGRESQL.format(p=name), word
    return (text(sql).bindparams(**{name: value})
            .columns(column("ticket_id", Integer)).subquery(f"search_{n}"))


def include_name(name: str | None, type_: str, parent_names) -> bool:
    """For Alembic's include_name: the search tables and indexes are not in the models."""
    if type_ == "table":
        return not any(name == t or (name or "").startswith(t + "_") for t in SEARCH_TABLES)
    return not (type_ == "index" and name in SEARCH_INDEXES)
