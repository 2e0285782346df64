"""Catch-up redelivery: `redelivery_requests`, the deliveries GitHub was asked to send again.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redelivery_requests",
        sa.Column("guid", sa.String(100), primary_key=True),
        sa.Column("hook_delivery_id", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(64)),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("redelivery_requests")
