"""Held tickets (unverified own-domain mail), the desk's signing key, admin alerts

A message that claims a district address and that the receiving server says is
not from there makes a ticket that is held: no automatic mail goes out on it
until staff release it. The signing key makes outgoing Message-IDs and return
paths that nobody else can make, so only bounces of mail we really sent count.
An alert to the admin (a broken template, a sign-in that stopped working) is
mailed at most once a day for each problem: the table remembers when.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("held", sa.Text(), nullable=True))
    keys = op.create_table(
        "keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )
    op.bulk_insert(keys, [{"name": "signing", "value": secrets.token_hex(32)}])
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("keys")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("held")
