"""Schools, rooms and categories on tickets; merged tickets; indexes for the staff CLI

A ticket takes its requester's school and room from the district directory when it is
made ([directory] csv), and a category from [[categories]] keywords; staff can change
any of them. A ticket merged into another keeps its row and names the survivor
(merged_into_id), so mail threaded on it finds its way there. The indexes serve the
filters of ``tickets list`` and ``report`` on a database of 100,000 tickets.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("school", sa.String(200), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("room", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("category", sa.String(100), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_tickets_merged_into_id_tickets", "tickets",
                                 ["merged_into_id"], ["id"])
        batch.create_index("ix_tickets_created_at", ["created_at"])
        batch.create_index("ix_tickets_updated_at", ["updated_at"])
        batch.create_index("ix_tickets_assignee_id", ["assignee_id"])
        batch.create_index("ix_tickets_requester_id", ["requester_id"])
        batch.create_index("ix_tickets_school", ["school"])
        batch.create_index("ix_tickets_category", ["category"])


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for name in ("category", "school", "requester_id", "assignee_id", "updated_at",
                     "created_at"):
            batch.drop_index(f"ix_tickets_{name}")
        batch.drop_constraint("fk_tickets_merged_into_id_tickets", type_="foreignkey")
        batch.drop_column("merged_into_id")
        batch.drop_column("category")
        batch.drop_column("room")
        batch.drop_column("school")
