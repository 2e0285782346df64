"""Deliveries that cannot be acted on (docs/operations.md#deliveries-that-cannot-be-acted-on).

- `deliveries.skip_reason`: why a delivery was recorded `skipped` (no
  installation in the payload, an installation deleted or suspended, a
  repository the App was removed from) instead of being run through the
  handlers. NULL for every other delivery.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("skip_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("skip_reason")
