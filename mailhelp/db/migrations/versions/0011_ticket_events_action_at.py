"""ticket_events (action, at): the report's reads of one action since a time

``mailhelp report`` reads the status changes since its period began and the tickets
they touched; without this index that was a scan of every event the desk ever wrote
(four years: millions), with it a range of the index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ticket_events_action_at", "ticket_events", ["action", "at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_events_action_at", table_name="ticket_events")
