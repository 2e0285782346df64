"""Webhook deliveries: stored before the 202, processed once, retried, recovered.

A delivery belongs to the process that claimed it until `claimed_until`; a
live process keeps extending its claims (heartbeat), so the deliveries of a
process that died become claimable by any other process (or by itself after a
restart) once the lease runs out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.base import aware, utcnow
from bot.store.schema import deliveries as d

PENDING, PROCESSED, FAILED = "pending", "processed", "failed"


@dataclass(slots=True)
class DeliveryRecord:
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repo: str | None
    payload: str
    attempts: int = 0
    # Handlers that still have to succeed; None means all of them.
    pending_handlers: list[str] | None = None
    status: str = PENDING
    last_error: str | None = None
    received_at: datetime | None = None
    processed_at: datetime | None = None
    # Set by the intake: whether the receiving process keeps it to process itself.
    claimed: bool = False


class DeliveryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        self._insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(d)
        # One statement for the whole batch: rows that already exist are skipped,
        # and RETURNING tells us which ones were really new.
        self._insert_new = self._insert.on_conflict_do_nothing(
            index_elements=[d.c.delivery_id]
        ).returning(d.c.delivery_id)

    async def insert_new(
        self, records: Sequence[DeliveryRecord], owner: str | None, lease: float
    ) -> set[str]:
        """Store the deliveries not stored before, claimed by `owner`; return their ids.

        With `owner=None` they are stored unclaimed, for any process to claim.
        """
        now = utcnow()
        until = now + timedelta(seconds=lease) if owner else None
        rows: dict[str, dict[str, Any]] = {}
        for r in records:
            rows.setdefault(
                r.delivery_id,
                {
                    "delivery_id": r.delivery_id,
                    "event": r.event,
                    "action": r.action,
                    "installation_id": r.installation_id,
                    "repo": r.repo,
                    "payload": r.payload,
                    "received_at": now,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "claimed_by": owner,
                    "claimed_until": until,
                },
            )
        async with self.engine.begin() as conn:
            result = await conn.execute(self._insert_new, list(rows.values()))
            return {row[0] for row in result}

    async def claim_due(self, owner: str, lease: float, limit: int = 100) -> list[DeliveryRecord]:
        """Claim pending deliveries nobody holds and whose retry time has come."""
        now = utcnow()
        due = (
            select(d.c.delivery_id)
            .where(
                d.c.status == PENDING,
                or_(d.c.claimed_until.is_(None), d.c.claimed_until < now),
                or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now),
            )
            .order_by(d.c.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            update(d)
            .where(d.c.delivery_id.in_(due))
            .values(claimed_by=owner, claimed_until=now + timedelta(seconds=lease))
            .returning(*_RECORD_COLUMNS)
        )
        async with self.engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
        records = [_record(row) for row in rows]
        records.sort(key=lambda r: r.received_at or now)
        return records

    async def renew(self, owner: str, lease: float) -> int:
        """Heartbeat: extend every claim this process holds."""
        stmt = (
            update(d)
            .where(d.c.claimed_by == owner, d.c.status == PENDING)
            .values(claimed_until=utcnow() + timedelta(seconds=lease))
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def release(self, owner: str, delivery_id: str | None = None) -> None:
        """Give up this process's claims (all, or one): others may take them at once."""
        stmt = (
            update(d)
            .where(d.c.claimed_by == owner, d.c.status == PENDING)
            .values(claimed_by=None, claimed_until=None)
        )
        if delivery_id is not None:
            stmt = stmt.where(d.c.delivery_id == delivery_id)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def mark_processed(self, delivery_ids: Iterable[str]) -> None:
        ids = list(delivery_ids)
        if not ids:
            return
        stmt = (
            update(d)
            .where(d.c.delivery_id.in_(ids))
            .values(
                status=PROCESSED,
                processed_at=utcnow(),
                claimed_by=None,
                claimed_until=None,
                pending_handlers=None,
                attempts=d.c.attempts + 1,
            )
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def mark_attempt_failed(
        self,
        delivery_id: str,
        *,
        pending_handlers: list[str],
        error: str,
        retry_at: datetime | None,
        lease: float,
    ) -> int:
        """Record a failed attempt; `retry_at=None` parks the delivery as failed."""
        values: dict[str, Any] = {
            "attempts": d.c.attempts + 1,
            "pending_handlers": json.dumps(sorted(pending_handlers)),
            "last_error": error[-4000:],
        }
        if retry_at is None:
            values.update(status=FAILED, claimed_by=None, claimed_until=None, processed_at=utcnow())
        else:
            # Keep the claim until the retry is due (plus the lease), so another
            # process does not pick it up early; if we die it becomes free.
            values.update(
                next_attempt_at=retry_at, claimed_until=retry_at + timedelta(seconds=lease)
            )
        stmt = update(d).where(d.c.delivery_id == delivery_id).values(**values).returning(d.c.attempts)
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).scalar_one()

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(*_RECORD_COLUMNS).where(d.c.delivery_id == delivery_id))
            ).first()
        return _record(row) if row else None

    async def count(self, status: str | None = None) -> int:
        stmt = select(func.count()).select_from(d)
        if status is not None:
            stmt = stmt.where(d.c.status == status)
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).scalar_one()


_RECORD_COLUMNS = (
    d.c.delivery_id,
    d.c.event,
    d.c.action,
    d.c.installation_id,
    d.c.repo,
    d.c.payload,
    d.c.attempts,
    d.c.pending_handlers,
    d.c.status,
    d.c.last_error,
    d.c.received_at,
    d.c.processed_at,
)


def _record(row: Any) -> DeliveryRecord:
    m = row._mapping
    pending = m["pending_handlers"]
    return DeliveryRecord(
        delivery_id=m["delivery_id"],
        event=m["event"],
        action=m["action"],
        installation_id=m["installation_id"],
        repo=m["repo"],
        payload=m["payload"],
        attempts=m["attempts"],
        pending_handlers=json.loads(pending) if pending else None,
        status=m["status"],
        last_error=m["last_error"],
        received_at=aware(m["received_at"]),
        processed_at=aware(m["processed_at"]),
    )
