"""Triggers by what GitHub identifies them with, and rate-limited refusals.

A delivery id says which HTTP request brought an event, not which event it
is: the same `/agent` comment can reach Compound twice (a redelivery asked
for by another deployment, a restored database, a handler retried after it
half ran). `trigger_keys` holds the trigger's own identity (`comment:<id>`,
`label:<issue id>:<label>:<time>`); the store claims it in the transaction
that creates the session or round it starts, so the work and the claim
commit or roll back together.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.store.base import aware, utcnow
from bot.store.schema import refusal_notices as rn
from bot.store.schema import trigger_keys as tk


class AlreadyTriggered(Exception):
    """The trigger's key was claimed before: its work was started already."""


async def claim_key(conn: AsyncConnection, key: str) -> None:
    """Claim `key` inside the caller's transaction; AlreadyTriggered if it was.

    The exception is to leave the transaction with: on PostgreSQL it is
    aborted after the unique violation, and the caller's work must roll back.
    """
    try:
        await conn.execute(insert(tk).values(key=key, created_at=utcnow()))
    except IntegrityError:
        raise AlreadyTriggered(key) from None


class TriggerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def seen(self, key: str) -> bool:
        """Whether `key` was claimed: a handler's early exit before it says or does anything."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(tk.c.key).where(tk.c.key == key))).first() is not None

    async def claim(self, key: str) -> bool:
        """Claim `key` on its own (for triggers whose work is not one insert); False if taken."""
        try:
            async with self.engine.begin() as conn:
                await claim_key(conn, key)
        except AlreadyTriggered:
            return False
        return True

    async def claim_refusal(self, repo: str, number: int, interval: float) -> bool:
        """Whether this caller may post a refusal on the thread now (at most one per `interval`).

        The conditional UPDATE (or the first INSERT) decides between racing
        deliveries: exactly one of them moves `last_at`.
        """
        now = utcnow()
        cutoff = now - timedelta(seconds=interval)
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(rn).where(rn.c.repo == repo, rn.c.number == number, rn.c.last_at <= cutoff).values(last_at=now)
            )
            if moved.rowcount == 1:
                return True
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(rn).values(repo=repo, number=number, created_at=now, last_at=now))
        except IntegrityError:
            return False  # told within the interval (or by a racing delivery just now)
        return True

    async def last_refusal(self, repo: str, number: int) -> datetime | None:
        stmt = select(rn.c.last_at).where(rn.c.repo == repo, rn.c.number == number)
        async with self.engine.connect() as conn:
            value: datetime | None = (await conn.execute(stmt)).scalar_one_or_none()
        return aware(value)
