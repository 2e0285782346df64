"""SQLite: delivery bodies in a table of their own, `delivery_payloads`.

The processed mark after each delivery rewrote the whole row, its 2.7 KB
compressed body included; with the body elsewhere it rewrites ≈ 200 bytes.
New SQLite rows point at their body with `payload_id` and keep `payload`
empty; rows stored before keep their body where it is, and are read as
before. PostgreSQL gets the column and the table too (one schema for both)
but keeps writing the body in `payload`: TOAST already stores it apart.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("payload_id", sa.BigInteger, nullable=True))
    op.create_table(
        "delivery_payloads",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: the rowid itself
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("payload", sa.Text, nullable=False),
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Bodies back into their rows before their table goes.
        op.execute(
            "UPDATE deliveries SET payload = "
            "(SELECT payload FROM delivery_payloads WHERE id = deliveries.payload_id) "
            "WHERE payload_id IS NOT NULL"
        )
    op.drop_table("delivery_payloads")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("payload_id")
