"""raw_message_bodies: a message's bytes apart from its row, which is updated

On SQLite, dropping raw_messages.raw rebuilds the table (batch mode: copy, drop,
rename), which messages and raw_message_bodies refer to: env.py turns foreign keys
off around the upgrade for it and checks them after each migration.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_message_bodies",
        sa.Column("raw_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["raw_id"], ["raw_messages.id"],
                                name=op.f("fk_raw_message_bodies_raw_id_raw_messages")),
        sa.PrimaryKeyConstraint("raw_id", name=op.f("pk_raw_message_bodies")),
    )
    op.execute("INSERT INTO raw_message_bodies (raw_id, raw) SELECT id, raw FROM raw_messages")
    with op.batch_alter_table("raw_messages", schema=None) as batch_op:
        batch_op.drop_column("raw")


def downgrade() -> None:
    with op.batch_alter_table("raw_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw", sa.LargeBinary(), nullable=True))
    op.execute("UPDATE raw_messages SET raw = (SELECT raw FROM raw_message_bodies "
               "WHERE raw_message_bodies.raw_id = raw_messages.id)")
    op.drop_table("raw_message_bodies")
