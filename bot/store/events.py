"""The stored session events read back out, a page at a time (`compound events export`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.base import aware
from bot.store.schema import session_events as ev

PAGE = 1000


async def stream_events(
    engine: AsyncEngine,
    *,
    since: datetime | None = None,
    session_id: str | None = None,
    types: Sequence[str] = (),
    page: int = PAGE,
) -> AsyncIterator[dict[str, Any]]:
    """Each stored event as an `events.jsonl` line (docs/events.md), oldest first.

    Pages by id: each page is its own short query, so nothing holds a
    transaction (or all the rows) while the reader is slow.
    """
    last = 0
    while True:
        stmt = select(ev.c.id, ev.c.ts, ev.c.session_id, ev.c.type, ev.c.data).where(ev.c.id > last)
        if since is not None:
            stmt = stmt.where(ev.c.ts >= since)
        if session_id:
            stmt = stmt.where(ev.c.session_id == session_id)
        if types:
            stmt = stmt.where(ev.c.type.in_(list(types)))
        async with engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(ev.c.id).limit(page))).all()
        for row in rows:
            yield line(row.ts, row.type, row.session_id, json.loads(row.data or "{}"))
        if len(rows) < page:
            return
        last = rows[-1].id


def line(ts: datetime, type_: str, session_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The line EventLog writes, rebuilt from a stored row (which keeps the rest of it as `data`)."""
    stamp = aware(ts)
    assert stamp is not None
    return {
        "v": data.pop("v", 1),
        "ts": stamp.isoformat(timespec="milliseconds"),
        "type": type_,
        "session": session_id,
        **data,
    }
