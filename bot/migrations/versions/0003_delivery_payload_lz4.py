"""PostgreSQL: deliveries' payloads compressed with lz4 instead of pglz.

Every delivery's ~12 KB payload is compressed on the way into TOAST before
the 202; pglz costs about as much server CPU as the rest of the intake's
write. lz4 (PostgreSQL 14+, when built with it) does the same job for half.
Rows stored before keep their compression; nothing changes on SQLite, or on
a server without lz4.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    # A server without lz4 refuses the setting; try it inside a savepoint.
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("SET LOCAL default_toast_compression = 'lz4'"))
    except sa.exc.DBAPIError:
        savepoint.rollback()
        return False
    savepoint.rollback()
    return True


def upgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE deliveries ALTER COLUMN payload SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries ALTER COLUMN payload SET COMPRESSION default")
