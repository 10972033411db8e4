"""PostgreSQL: the large columns compressed with lz4 instead of pglz

A backlog's messages are written once and read seldom; pglz, PostgreSQL's default,
cost the server about 0.17 ms of CPU a message in the backlog benchmark (one sixth
of its work for the daemon), lz4 a fraction of it. Only values written from now on
are affected. Skipped on SQLite, on PostgreSQL before 14 and on a server built
without lz4.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = (("raw_message_bodies", "raw"), ("messages", "body"), ("messages", "text"),
           ("outbox", "body_text"), ("outbox", "body_html"))


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    values = bind.exec_driver_sql("SELECT enumvals FROM pg_settings "
                                  "WHERE name = 'default_toast_compression'").scalar()
    return bool(values) and "lz4" in values


def upgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION default")
