"""Table definitions (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

# One row per webhook delivery GitHub sent us, stored before we answer 202.
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", String(100), primary_key=True),
    Column("event", String(100), nullable=False),
    Column("action", String(100)),
    Column("installation_id", BigInteger),
    Column("repo", String(300)),
    # The raw JSON body exactly as signed, so a replay verifies byte for byte.
    Column("payload", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # pending -> processed | failed
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    # The process that currently owns the delivery, and until when.
    Column("claimed_by", String(100)),
    Column("claimed_until", DateTime(timezone=True)),
    # JSON list of handler names that still have to succeed (NULL = all).
    Column("pending_handlers", Text),
    Column("last_error", Text),
    Column("processed_at", DateTime(timezone=True)),
)
Index("ix_deliveries_status_next", deliveries.c.status, deliveries.c.next_attempt_at)

installations = Table(
    "installations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("account_login", String(200), nullable=False),
    Column("account_type", String(50)),
    Column("repository_selection", String(20)),
    Column("suspended", Boolean, nullable=False, server_default=false()),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

repositories = Table(
    "repositories",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("installation_id", BigInteger, nullable=False, index=True),
    Column("full_name", String(300), nullable=False, index=True),
    Column("private", Boolean, nullable=False, server_default=false()),
    Column("removed", Boolean, nullable=False, server_default=false()),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
