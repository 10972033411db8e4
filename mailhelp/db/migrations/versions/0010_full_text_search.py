"""Full-text search over tickets' subjects and their messages' subject and text

``tickets list --search`` finds tickets by a word in a ticket's subject or in any of
its messages' subject or new text (``messages.text``). The index is kept in step by the
same transaction that writes a message: on SQLite by triggers into FTS5 tables with
external content (the words are indexed, the text stays in ``messages``/``tickets``);
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

# (index, table, the indexed expression): search.py repeats the expressions.
POSTGRESQL_INDEXES = (
    ("ix_messages_search", "messages",
     "to_tsvector('simple'::regconfig, coalesce(subject, '') || ' ' || coalesce(text, ''))"),
    ("ix_tickets_search", "tickets", "to_tsvector('simple'::regconfig, coalesce(subject, ''))"),
)


def sqlite_triggers(fts: str, table: str, columns: tuple[str, ...]) -> list[str]:
    names = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
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
            op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")  # the rows there
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
