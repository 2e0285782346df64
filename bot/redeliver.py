"""Catch-up redelivery: ask GitHub again for what Compound missed.

GitHub does not retry a failed delivery by itself. On start and then
periodically, Compound lists the App's recent deliveries (`GET
/app/hook/deliveries`, App JWT, newest first, paginated by cursor), and asks
GitHub to send again (`POST /app/hook/deliveries/{id}/attempts`) each one that

- failed (no attempt answered 2xx or 3xx) and is not in the store: "failed";
- was answered so but is not in the store (another deployment answered it,
  or the database was restored from an older copy): "missing".

Deliveries are matched to the store by GUID (the X-GitHub-Delivery header).
Events Compound does not handle are never stored and never asked for. A pass
is bounded: a time window (GitHub keeps about three days), and at most `cap`
requests. Each request is claimed in `redelivery_requests` before it is sent,
so neither a second pass, a restart, nor another process asks for it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import gidgethub
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.background import cancel
from bot.store.base import utcnow
from bot.store.schema import deliveries as d
from bot.store.schema import redelivery_requests as asked

log = logging.getLogger("compound.redeliver")

LIST_URL = "/app/hook/deliveries?per_page=100"
ATTEMPTS_URL = "/app/hook/deliveries/{delivery_id}/attempts"


@dataclass
class Missed:
    """One delivery (GUID) to ask for again."""

    guid: str
    hook_delivery_id: int  # the newest attempt's id, which GitHub redelivers
    event: str
    action: str | None
    delivered_at: datetime
    reason: str  # "failed" or "missing"


@dataclass
class Pass:
    """What one catch-up pass found and did."""

    listed: int = 0
    missed: list[Missed] = field(default_factory=list)  # found, oldest first, within the cap
    asked: list[Missed] = field(default_factory=list)  # GitHub accepted the request
    refused: list[tuple[Missed, str]] = field(default_factory=list)
    already_asked: int = 0
    over_cap: int = 0


def _ok(item: dict[str, Any]) -> bool:
    code = item.get("status_code")
    return isinstance(code, int) and 200 <= code < 400  # GitHub's own "success"


async def _list(gh: Any, since: datetime) -> tuple[int, dict[str, dict[str, Any]], dict[str, bool]]:
    """Attempts back to `since`: (count, newest attempt per GUID, whether any attempt succeeded)."""
    newest: dict[str, dict[str, Any]] = {}
    ok: dict[str, bool] = {}
    count = 0
    async for item in gh.getiter(LIST_URL):
        at = datetime.fromisoformat(item["delivered_at"])
        if at < since:
            break  # newest first: the rest is older still
        count += 1
        guid = item["guid"]
        newest.setdefault(guid, item)
        ok[guid] = ok.get(guid, False) or _ok(item)
    return count, newest, ok


async def _in_store(engine: AsyncEngine, guids: list[str]) -> tuple[set[str], set[str]]:
    """(GUIDs the store holds, GUIDs asked for before)."""
    stored: set[str] = set()
    before: set[str] = set()
    async with engine.connect() as conn:
        for i in range(0, len(guids), 500):
            chunk = guids[i : i + 500]
            rows = await conn.execute(select(d.c.delivery_id).where(d.c.delivery_id.in_(chunk)))
            stored.update(r[0] for r in rows)
            rows = await conn.execute(select(asked.c.guid).where(asked.c.guid.in_(chunk)))
            before.update(r[0] for r in rows)
    return stored, before


async def _claim(engine: AsyncEngine, m: Missed) -> bool:
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(asked).values(
                    guid=m.guid,
                    hook_delivery_id=m.hook_delivery_id,
                    event=m.event,
                    reason=m.reason,
                    asked_at=utcnow(),
                )
            )
    except IntegrityError:  # another process (or pass) has it
        return False
    return True


async def _unclaim(engine: AsyncEngine, guid: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(asked).where(asked.c.guid == guid))


async def catch_up(
    gh: Any,
    engine: AsyncEngine,
    *,
    events: Collection[str],
    since: datetime,
    cap: int = 50,
    dry_run: bool = False,
) -> Pass:
    """One pass; `gh` is a client authenticated as the App (JWT)."""
    result = Pass()
    result.listed, newest, ok = await _list(gh, since)
    handled = [g for g, item in newest.items() if item.get("event") in events]
    stored, before = await _in_store(engine, handled)
    found: list[Missed] = []
    for guid in handled:
        if guid in stored:
            continue
        if guid in before:
            result.already_asked += 1
            continue
        item = newest[guid]
        found.append(
            Missed(
                guid=guid,
                hook_delivery_id=int(item["id"]),
                event=item["event"],
                action=item.get("action"),
                delivered_at=datetime.fromisoformat(item["delivered_at"]),
                reason="missing" if ok[guid] else "failed",
            )
        )
    found.sort(key=lambda m: m.delivered_at)  # the oldest first: handlers see them in order
    result.over_cap = max(len(found) - cap, 0)
    result.missed = found[:cap]
    if dry_run:
        return result
    for m in result.missed:
        if not await _claim(engine, m):
            result.already_asked += 1
            continue
        try:
            await gh.post(ATTEMPTS_URL, url_vars={"delivery_id": str(m.hook_delivery_id)}, data=b"")
        except gidgethub.BadRequest as exc:
            # 4xx (too old, unknown): asking again will not help; the claim stays.
            result.refused.append((m, str(exc)))
            log.warning("GitHub refused to redeliver %s (%s): %s", m.guid, m.event, exc)
            continue
        except Exception as exc:
            # GitHub down or unreachable: let a later pass ask.
            await _unclaim(engine, m.guid)
            result.refused.append((m, str(exc)))
            log.warning("could not ask GitHub to redeliver %s: %s", m.guid, exc)
            continue
        result.asked.append(m)
        log.info(
            "asked GitHub to redeliver %s (%s.%s, %s)",
            m.guid,
            m.event,
            m.action or "-",
            m.reason,
            extra={"delivery": m.guid},
        )
    return result


class CatchUp:
    """The catch-up pass on start (window `window`), then every `interval` (window `recent`)."""

    def __init__(
        self,
        github: Any,
        engine: AsyncEngine,
        *,
        events: Collection[str],
        window: timedelta,
        interval: float,
        recent: timedelta,
        cap: int,
    ) -> None:
        self._github = github
        self._engine = engine
        self._events = events
        self._window = window
        self._interval = interval
        self._recent = recent
        self._cap = cap
        self._task: asyncio.Task[None] | None = None
        self.passes: list[Pass] = []
        self.first_pass = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="catch-up-redelivery")

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None

    async def run_once(self, window: timedelta) -> Pass | None:
        try:
            result = await catch_up(
                self._github.app(),
                self._engine,
                events=self._events,
                since=utcnow() - window,
                cap=self._cap,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # GitHub down: the next pass tries again
            log.warning("catch-up redelivery: could not list the App's deliveries: %s", exc)
            return None
        self.passes.append(result)
        if result.asked or result.over_cap:
            log.info(
                "catch-up redelivery: %d listed, %d asked again, %d left for the next pass",
                result.listed,
                len(result.asked),
                result.over_cap,
            )
        return result

    async def _run(self) -> None:
        try:
            await self.run_once(self._window)
        finally:
            self.first_pass.set()
        recent = max(self._recent, timedelta(seconds=self._interval * 2))
        last = self.passes[-1] if self.passes else None
        while True:
            await asyncio.sleep(self._interval)
            # What a pass left over (the cap, GitHub down) is looked for over the whole window.
            behind = last is None or last.over_cap > 0
            last = await self.run_once(self._window if behind else recent)
