"""Retention (docs/operations.md#retention): what the prune needs to find old rows cheaply.

- `ix_deliveries_received` on `deliveries (received_at, delivery_id)`: the
  prune walks the deliveries older than their retention by this key, a
  batch at a time, never rescanning what it passed. `received_at` only
  grows, so the intake appends to the index's right edge, and the processed
  mark, which does not change it, never touches it.
- `session_compactions`: the ended sessions whose events were compacted, and
  when, so a pass looks only at sessions ended (or changed) since.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_received", "deliveries", ["received_at", "delivery_id"])
    op.create_table(
        "session_compactions",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("compacted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_compactions")
    op.drop_index("ix_deliveries_received", table_name="deliveries")
