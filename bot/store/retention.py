"""Retention in the store: old deliveries removed, old sessions' events compacted (docs/operations.md#retention).

Everything here works in small batches, one short transaction each, with a
pause between them, so the intake's writer (which on SQLite shares the one
connection) waits for one batch at most, never for the whole pass.

- Deliveries are walked by `(received_at, delivery_id)` (index
  `ix_deliveries_received`, migration 0013) from the oldest, a batch at a
  time, never rescanning what was passed. Of each batch, the processed ones
  older than their cut-off and the failed ones older than theirs are
  deleted, with their bodies (SQLite's `delivery_payloads`); a pending one
  (waiting, retrying or being processed) is never touched, and the DELETE
  checks the status again, so a delivery an operator set back to pending in
  the meantime stays.
- Nothing younger than `MIN_AGE` (72 h) goes, whatever the settings: GitHub
  redelivers for about three days and the delivery id is what deduplicates.
- Events of sessions ended before the cut-off are compacted (`compact`):
  the bulky fields go, every event (every transition) stays, and so do the
  outcomes. `session_compactions` remembers which sessions were done, so a
  pass looks only at sessions that ended (or changed) since.
- Trigger keys and refusal notices (migration 0012) go after `TRIGGER_AGE`
  (3 days): a trigger is only ever delivered again within GitHub's window,
  and a refusal's interval is far shorter.
- One process at a time (`exclusive`): PostgreSQL's session advisory lock
  `pg_try_advisory_lock`, SQLite a lock file beside the database; whoever
  does not get it skips the pass.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.base import aware, utcnow
from bot.store.deliveries import FAILED, PROCESSED, SKIPPED
from bot.store.schema import deliveries as d
from bot.store.schema import delivery_payloads as bodies
from bot.store.schema import installations as inst
from bot.store.schema import redelivery_requests as rr
from bot.store.schema import refusal_notices as rn
from bot.store.schema import repositories as repos
from bot.store.schema import session_compactions as sc
from bot.store.schema import session_events as ev
from bot.store.schema import sessions as s
from bot.store.schema import trigger_keys as tk
from bot.store.sessions import TERMINAL

# GitHub redelivers for about three days; dedup needs the ids that long.
MIN_AGE = timedelta(hours=72)
# Trigger keys and refusal notices: kept for GitHub's window, not the deliveries' retention.
TRIGGER_AGE = timedelta(days=3)
BATCH = 1000
# SQLite: the intake's writer waits for the batch's transaction (one writer at
# a time); 1,000 deletes with their bodies hold it ~60 ms, 250 about 15 ms.
SQLITE_BATCH = 250
# Between two batches: long enough for a waiting writer to take the connection.
PAUSE = 0.01


def default_batch(dialect: str) -> int:
    """Deliveries per transaction on this database (`BATCH`, `SQLITE_BATCH`)."""
    return SQLITE_BATCH if dialect == "sqlite" else BATCH


# Sessions whose events one transaction compacts.
SESSION_BATCH = 50
# Any constant works; the same in every Compound process, not the migrations' one.
_PRUNE_LOCK = 0x0C0B0E


@dataclass(frozen=True)
class Cutoffs:
    """What is old enough to go: anything received (asked, ended) before these."""

    processed: datetime
    failed: datetime
    redelivery: datetime
    # Trigger keys claimed and refusals last posted before this.
    triggers: datetime
    # Sessions ended before this have their events compacted; None: never.
    compact: datetime | None

    @classmethod
    def of(cls, now: datetime, *, processed_days: float, failed_days: float, compact_days: float | None) -> Cutoffs:
        def cut(days: float) -> datetime:
            return now - max(timedelta(days=days), MIN_AGE)

        return cls(
            processed=cut(processed_days),
            failed=cut(failed_days),
            redelivery=cut(processed_days),
            triggers=now - TRIGGER_AGE,
            compact=cut(compact_days) if compact_days else None,
        )


# Kept DELIVERY_RETENTION_DAYS: run through the handlers, or skipped (bot/skips.py).
_DONE = (PROCESSED, SKIPPED)


@dataclass
class StorePruned:
    """Counts of one pass over the store (what it removed, or would remove)."""

    processed: int = 0
    skipped: int = 0  # kept as long as processed ones
    failed: int = 0
    payloads: int = 0
    redelivery_requests: int = 0
    trigger_keys: int = 0
    refusal_notices: int = 0
    sessions_compacted: int = 0
    events_compacted: int = 0
    batches: int = 0


# What compaction keeps of the bulky fields (docs/operations.md#retention).
_TRIGGER_TEXT = 200


def compact(type_: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The event's data with its bulky fields cut down; None when there is nothing to cut.

    - `round.queued`, `round.started`: `trigger` keeps its scalar fields
      (`event`, `head`, … strings cut to 200 characters), not the failed
      checks, review comments and conflict lists it carried to the agent.
    - `round.prompt`: `choice` keeps `task_kind` and the variant `picked` and
      `why`, not the posteriors and draws.
    - `session.reflected`: `refused` keeps each refusal's `why`, not the text.

    Everything else stays, `round.pushed`'s `files` included (the learning
    loop reads them); a compacted event gets `"compacted": true`.
    """
    if data.get("compacted"):
        return None
    out = dict(data)
    if type_ in ("round.queued", "round.started") and isinstance(data.get("trigger"), dict):
        out["trigger"] = {
            k: (v[:_TRIGGER_TEXT] if isinstance(v, str) else v)
            for k, v in data["trigger"].items()
            if v is None or isinstance(v, (str, int, float, bool))
        }
    elif type_ == "round.prompt" and isinstance(data.get("choice"), dict):
        choice = data["choice"]
        variant = choice.get("variant")
        out["choice"] = {
            "task_kind": choice.get("task_kind"),
            "variant": {k: variant.get(k) for k in ("picked", "why")} if isinstance(variant, dict) else variant,
        }
    elif type_ == "session.reflected" and isinstance(data.get("refused"), list):
        out["refused"] = [{"why": r.get("why")} if isinstance(r, dict) else r for r in data["refused"]]
    else:
        return None
    out["compacted"] = True
    return out


COMPACTED_TYPES = ("round.queued", "round.started", "round.prompt", "session.reflected")


class RetentionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    # --- one process at a time ------------------------------------------------

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """Whether this process may prune now; held until the block ends.

        PostgreSQL: a session advisory lock on a connection held for the pass
        (committed at once, so it idles outside any transaction); it goes with
        the connection if the process dies. SQLite: a lock file beside the
        database (`compound db prune` is another process).
        """
        if self._postgres:
            async with self.engine.connect() as conn:
                got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _PRUNE_LOCK})).scalar())
                await conn.commit()
                try:
                    yield got
                finally:
                    if got:
                        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PRUNE_LOCK})
                        await conn.commit()
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            yield True
            return
        with open(Path(f"{database}.prune-lock"), "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- deliveries -------------------------------------------------------------

    async def prune_deliveries(
        self, cut: Cutoffs, report: StorePruned, *, dry_run: bool = False, batch: int = BATCH, pause: float = PAUSE
    ) -> None:
        """Remove (or count) the deliveries past their retention, a batch per transaction."""
        scan_until = max(cut.processed, cut.failed)
        after: tuple[Any, str] | None = None
        while True:
            stmt = select(d.c.received_at, d.c.delivery_id, d.c.status, d.c.payload_id).where(
                d.c.received_at < scan_until
            )
            if after is not None:
                stmt = stmt.where(
                    tuple_(d.c.received_at, d.c.delivery_id)
                    > tuple_(
                        bindparam("after_at", after[0], type_=d.c.received_at.type),
                        bindparam("after_id", after[1], type_=d.c.delivery_id.type),
                    )
                )
            stmt = stmt.order_by(d.c.received_at, d.c.delivery_id).limit(batch)
            async with self.engine.begin() as conn:
                rows = (await conn.execute(stmt)).all()
                if not rows:
                    return
                after = (rows[-1].received_at, rows[-1].delivery_id)
                doomed = {
                    row.delivery_id: row
                    for row in rows
                    if (row.status in _DONE and aware(row.received_at) < cut.processed)
                    or (row.status == FAILED and aware(row.received_at) < cut.failed)
                }
                if doomed and dry_run:
                    gone = [(row.status, row.payload_id) for row in doomed.values()]
                elif doomed:
                    # The status again: one set back to pending since the SELECT stays.
                    result = await conn.execute(
                        delete(d)
                        .where(d.c.delivery_id.in_(list(doomed)), d.c.status.in_([*_DONE, FAILED]))
                        .returning(d.c.status, d.c.payload_id)
                    )
                    gone = [(row.status, row.payload_id) for row in result.all()]
                    ids = [pid for _, pid in gone if pid is not None]
                    if ids:
                        await conn.execute(delete(bodies).where(bodies.c.id.in_(ids)))
                else:
                    gone = []
            report.batches += 1
            report.processed += sum(1 for status, _ in gone if status == PROCESSED)
            report.skipped += sum(1 for status, _ in gone if status == SKIPPED)
            report.failed += sum(1 for status, _ in gone if status == FAILED)
            report.payloads += sum(1 for _, pid in gone if pid is not None)
            if len(rows) < batch:
                return
            await asyncio.sleep(pause)

    async def prune_redelivery_requests(
        self, cut: Cutoffs, report: StorePruned, *, dry_run: bool = False, batch: int = BATCH, pause: float = PAUSE
    ) -> None:
        """The catch-up's records of what it asked GitHub for, past GitHub's window and retention."""
        after = ""
        while True:
            stmt = (
                select(rr.c.guid)
                .where(rr.c.asked_at < cut.redelivery, rr.c.guid > after)
                .order_by(rr.c.guid)
                .limit(batch)
            )
            async with self.engine.begin() as conn:
                guids = list((await conn.execute(stmt)).scalars())
                if guids and not dry_run:
                    await conn.execute(delete(rr).where(rr.c.guid.in_(guids)))
            report.redelivery_requests += len(guids)
            if len(guids) < batch:
                return
            after = guids[-1]
            await asyncio.sleep(pause)

    async def prune_triggers(
        self, cut: Cutoffs, report: StorePruned, *, dry_run: bool = False, batch: int = BATCH, pause: float = PAUSE
    ) -> None:
        """Trigger keys past GitHub's redelivery window, walked by key; then refusal notices."""
        after = ""
        while True:
            stmt = (
                select(tk.c.key).where(tk.c.created_at < cut.triggers, tk.c.key > after).order_by(tk.c.key).limit(batch)
            )
            async with self.engine.begin() as conn:
                keys = list((await conn.execute(stmt)).scalars())
                if keys and not dry_run:
                    await conn.execute(delete(tk).where(tk.c.key.in_(keys)))
            report.trigger_keys += len(keys)
            if len(keys) < batch:
                break
            after = keys[-1]
            await asyncio.sleep(pause)
        old = rn.c.last_at < cut.triggers
        async with self.engine.begin() as conn:
            if dry_run:
                found = await conn.execute(select(func.count()).select_from(rn).where(old))
                report.refusal_notices += found.scalar_one()
            else:
                report.refusal_notices += (await conn.execute(delete(rn).where(old))).rowcount

    # --- session events -----------------------------------------------------------

    async def compact_events(
        self,
        cut: Cutoffs,
        report: StorePruned,
        *,
        dry_run: bool = False,
        sessions: int = SESSION_BATCH,
        pause: float = PAUSE,
    ) -> None:
        """Compact the events of sessions ended before `cut.compact` (not yet, or changed since)."""
        if cut.compact is None:
            return
        after = ""
        while True:
            stmt = (
                select(s.c.id)
                .select_from(s.outerjoin(sc, sc.c.session_id == s.c.id))
                .where(
                    s.c.status.in_(sorted(TERMINAL)),
                    s.c.updated_at < cut.compact,
                    (sc.c.session_id.is_(None)) | (sc.c.compacted_at < s.c.updated_at),
                    s.c.id > after,
                )
                .order_by(s.c.id)
                .limit(sessions)
            )
            async with self.engine.begin() as conn:
                ids = list((await conn.execute(stmt)).scalars())
                if not ids:
                    return
                events = (
                    await conn.execute(
                        select(ev.c.id, ev.c.type, ev.c.data).where(
                            ev.c.session_id.in_(ids), ev.c.type.in_(COMPACTED_TYPES)
                        )
                    )
                ).all()
                changed = []
                for row in events:
                    smaller = compact(row.type, json.loads(row.data or "{}"))
                    if smaller is not None:
                        changed.append({"event_id": row.id, "new_data": json.dumps(smaller, default=str)})
                if not dry_run:
                    if changed:
                        await conn.execute(
                            update(ev).where(ev.c.id == bindparam("event_id")).values(data=bindparam("new_data")),
                            changed,
                        )
                    now = utcnow()
                    await conn.execute(delete(sc).where(sc.c.session_id.in_(ids)))
                    await conn.execute(insert(sc), [{"session_id": i, "compacted_at": now} for i in ids])
            report.sessions_compacted += len(ids)
            report.events_compacted += len(changed)
            if len(ids) < sessions:
                return
            after = ids[-1]
            await asyncio.sleep(pause)

    # --- what the files' part needs to know ----------------------------------------

    async def repositories_installed(self) -> dict[str, bool]:
        """Each repository the store knows (lower-case owner/name): still installed or not.

        Installed: a row of it neither removed from its installation nor under
        a deleted installation. A repository the store never heard of is not
        in the answer (unknown is not uninstalled).
        """
        stmt = select(func.lower(repos.c.full_name), repos.c.removed, inst.c.deleted).select_from(
            repos.outerjoin(inst, inst.c.id == repos.c.installation_id)
        )
        states: dict[str, bool] = {}
        async with self.engine.connect() as conn:
            for name, removed, deleted in (await conn.execute(stmt)).all():
                states[name] = states.get(name, False) or (not removed and not deleted)
        return states

    async def sessions_state(self, ids: list[str]) -> dict[str, tuple[str, str, bool, bool]]:
        """For these session ids: (repo, branch, ended, held by a live runner)."""
        if not ids:
            return {}
        now = utcnow()
        stmt = select(s.c.id, s.c.repo, s.c.branch, s.c.status, s.c.runner, s.c.runner_until).where(s.c.id.in_(ids))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {
            row.id: (
                row.repo,
                row.branch,
                row.status in TERMINAL,
                row.runner is not None and (aware(row.runner_until) or now) > now,
            )
            for row in rows
        }

    async def active_repositories(self) -> set[str]:
        """Repositories (lower-case) with a session not ended."""
        stmt = select(func.lower(s.c.repo)).where(s.c.status.not_in(sorted(TERMINAL))).distinct()
        async with self.engine.connect() as conn:
            return set((await conn.execute(stmt)).scalars())
