"""Full-text search over tickets' subjects and their messages' subject and text

``tickets list --search`` finds tickets by a word in a ticket's subject or in any of
its messages' subject or new text (``messages.text``). The index is kept in step by the
same transaction that writes a message: on SQLite by triggers into FTS5 tables with
external content (the words are indexed, the text stays in ``messages``/``tickets``;
the first SEARCHED characters of a message's text, on either database);
on PostgreSQL by GIN indexes on the tsvector of those columns, which PostgreSQL keeps
itself. Both tokenise without stemming (FTS5 ``unicode61``, the ``simple`` text search
configuration), so a word finds the same tickets on either database. The rows already
there are indexed here. mailhelp/search.py asks them; its expressions must stay
exactly these for PostgreSQL to use the indexes.

SQLite drops a table's triggers with the table: a later migration that rebuilds
``messages`` or ``tickets`` in batch mode must create SEARCH_TRIGGERS again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (FTS5 table, content table, indexed columns)
SQLITE_INDEXES = (("messages_fts", "messages", ("subject", "text")),
                  ("tickets_fts", "tickets", ("subject",)))

# Of a message's text, the first SEARCHED characters are indexed: PostgreSQL refuses a
# tsvector over 1 MB ("string is too long for tsvector"), which a pasted log of 1.5 MB
# of distinct words reaches, and the refusal would fail the message's INSERT. 100,000
# characters make at most a few hundred KB of tsvector. SQLite indexes as much.
SEARCHED = 100_000

# (index, table, the indexed expression): search.py repeats the expressions.
POSTGRESQL_INDEXES = (
    ("ix_messages_search", "messages",
     "to_tsvector('simple'::regconfig, coalesce(subject, '') || ' ' || "
     f"left(coalesce(text, ''), {SEARCHED}))"),
    ("ix_tickets_search", "tickets", "to_tsvector('simple'::regconfig, coalesce(subject, ''))"),
)


def _value(row: str, column: str) -> str:
    # The text as the index has it: a 'delete' must give FTS5 the values it was given.
    return f"substr({row}.text, 1, {SEARCHED})" if column == "text" else f"{row}.{column}"


def sqlite_triggers(fts: str, table: str, columns: tuple[str, ...]) -> list[str]:
    names = ", ".join(columns)
    new = ", ".join(_value("new", c) for c in columns)
    old = ", ".join(_value("old", c) for c in columns)
    delete = (f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old});")
    insert = f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new});"
    return [
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {names} ON {table} "
        f"BEGIN {delete} {insert} END",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for fts, table, columns in SQLITE_INDEXES:
            op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({', '.join(columns)}, "
                       f"content='{table}', content_rowid='id', tokenize='unicode61')")
            for statement in sqlite_triggers(fts, table, columns):
                op.execute(statement)
            # The rows there, as the triggers would have indexed them (not 'rebuild',
            # which would index the whole text).
            values = ", ".join(_value(table, c) for c in columns)
            op.execute(f"INSERT INTO {fts}(rowid, {', '.join(columns)}) "
                       f"SELECT id, {values} FROM {table}")
        return
    for name, table, expression in POSTGRESQL_INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} USING gin (({expression}))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for fts, _table, _columns in SQLITE_INDEXES:
            for suffix in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
            op.execute(f"DROP TABLE {fts}")
        return
    for name, _table, _expression in POSTGRESQL_INDEXES:
        op.execute(f"DROP INDEX {name}")
