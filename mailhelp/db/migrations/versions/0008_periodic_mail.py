"""periodic_mail: mail sent on a schedule, once per occurrence and recipient

The morning queue (``[staff] queue_digest``) mails each technician at a time of the
week. Which occurrence went to whom is written in the same transaction as the mail's
outbox row, and the unique index makes a second runner's copy fail instead of going
out: a restart, two runners or ``run --once`` twice send it once. Mail on another
schedule (the director's weekly digest) is another ``kind`` in the same table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "periodic_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_periodic_mail")),
    )
    with op.batch_alter_table("periodic_mail") as batch:
        batch.create_index("uq_periodic_mail_occurrence", ["kind", "due_at", "recipient"],
                           unique=True)


def downgrade() -> None:
    with op.batch_alter_table("periodic_mail") as batch:
        batch.drop_index("uq_periodic_mail_occurrence")
    op.drop_table("periodic_mail")
