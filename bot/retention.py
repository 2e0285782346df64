"""Retention: what Compound keeps and for how long (docs/operations.md#retention).

One pass (`Retention.prune`, run every RETENTION_INTERVAL by the service and
on demand by `compound db prune`):

1. the store (bot/store/retention.py), by one process at a time: processed
   deliveries older than DELIVERY_RETENTION_DAYS and failed ones older than
   FAILED_DELIVERY_RETENTION_DAYS removed with their bodies, never one
   younger than 72 h nor one still pending; the catch-up's redelivery
   records as old; the events of sessions ended more than
   EVENTS_COMPACT_DAYS ago compacted (outcomes and transitions stay);
2. the files of this DATA_DIR, by one process of the machine at a time:
   worktrees left by rounds that died, of ended sessions, removed (with
   `git worktree prune`); mirrors of repositories the store knows are no
   longer installed removed; `git gc --auto` on the others.

`events.jsonl` is rotated by size as it is written (bot/events.py), not here.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.store import Store
from bot.store.base import utcnow
from bot.store.retention import PAUSE, Cutoffs, RetentionStore, StorePruned, default_batch

log = logging.getLogger("compound.retention")

# A worktree directory no session in the store names, or of a session that
# just ended, is left alone this long (a round may be opening it).
STALE_WORKSPACE = 3600.0


@dataclass
class PruneReport:
    """What one pass removed (or, dry, would remove), by kind."""

    dry_run: bool
    cutoffs: Cutoffs
    # None: another process holds the store's lock and does this part.
    store: StorePruned | None = None
    # None: another process of this machine is at the files.
    workspaces: list[str] | None = None
    mirrors: list[str] | None = None
    maintained: int = 0
    errors: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int | None]:
        st = self.store
        return {
            "deliveries_processed": st.processed if st else None,
            "deliveries_skipped": st.skipped if st else None,
            "deliveries_failed": st.failed if st else None,
            "delivery_payloads": st.payloads if st else None,
            "redelivery_requests": st.redelivery_requests if st else None,
            "trigger_keys": st.trigger_keys if st else None,
            "refusal_notices": st.refusal_notices if st else None,
            "sessions_compacted": st.sessions_compacted if st else None,
            "events_compacted": st.events_compacted if st else None,
            "workspaces": len(self.workspaces) if self.workspaces is not None else None,
            "mirrors": len(self.mirrors) if self.mirrors is not None else None,
        }

    def lines(self) -> list[str]:
        """The report `compound db prune` prints: a line per kind."""
        c = self.cutoffs
        verb = "would remove" if self.dry_run else "removed"
        squeeze = "would compact" if self.dry_run else "compacted"
        out = []
        st = self.store
        if st is None:
            out.append("store: skipped, another process is pruning it now")
        else:
            out += [
                f"{verb} {st.processed} processed deliveries received before {c.processed:%Y-%m-%d %H:%M}Z",
                f"{verb} {st.skipped} skipped deliveries received before {c.processed:%Y-%m-%d %H:%M}Z",
                f"{verb} {st.failed} failed deliveries received before {c.failed:%Y-%m-%d %H:%M}Z",
                f"{verb} {st.payloads} delivery payload rows",
                f"{verb} {st.redelivery_requests} redelivery records asked before {c.redelivery:%Y-%m-%d %H:%M}Z",
                f"{verb} {st.trigger_keys} trigger keys and {st.refusal_notices} refusal notices "
                f"from before {c.triggers:%Y-%m-%d %H:%M}Z",
            ]
            if c.compact is None:
                out.append("event compaction: off (EVENTS_COMPACT_DAYS=0)")
            else:
                out.append(
                    f"{squeeze} {st.events_compacted} events of {st.sessions_compacted} sessions "
                    f"ended before {c.compact:%Y-%m-%d %H:%M}Z"
                )
        if self.workspaces is None or self.mirrors is None:
            out.append("files: skipped, another process of this machine is at them now")
        else:
            out.append(f"{verb} {len(self.workspaces)} workspaces of ended sessions" + _names(self.workspaces))
            out.append(f"{verb} {len(self.mirrors)} mirrors of repositories no longer installed" + _names(self.mirrors))
            if not self.dry_run:
                out.append(f"git gc --auto on {self.maintained} mirrors")
        if self.errors:
            out.append(f"{self.errors} errors (see the log)")
        return out


def _names(names: list[str]) -> str:
    return f": {', '.join(names[:20])}{' …' if len(names) > 20 else ''}" if names else ""


@dataclass
class Retention:
    store: Store
    # None: no workspaces on this process (`--no-workers`); the files' part is skipped.
    workspaces: Any
    data_dir: Path
    processed_days: float = 30
    failed_days: float = 90
    compact_days: float = 30
    interval: float = 3600
    # None: `default_batch` of the database (smaller on SQLite, which has one writer).
    batch: int | None = None
    pause: float = PAUSE
    # Before the first pass of `run`; None: a random moment in the first 5 minutes
    # (not all processes of a deployment at once, not on top of start-up).
    first_delay: float | None = None
    task: asyncio.Task[None] | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: Any, store: Store, workspaces: Any) -> Retention:
        return cls(
            store=store,
            workspaces=workspaces,
            data_dir=settings.data_dir,
            processed_days=settings.delivery_retention_days,
            failed_days=settings.failed_delivery_retention_days,
            compact_days=settings.events_compact_days,
            interval=settings.retention_interval,
        )

    def cutoffs(self) -> Cutoffs:
        return Cutoffs.of(
            utcnow(),
            processed_days=self.processed_days,
            failed_days=self.failed_days,
            compact_days=self.compact_days or None,
        )

    async def prune(self, *, dry_run: bool = False) -> PruneReport:
        """One pass; with `dry_run`, the same walk and counts, nothing changed."""
        started = time.monotonic()
        report = PruneReport(dry_run=dry_run, cutoffs=self.cutoffs())
        rs = RetentionStore(self.store.engine)
        async with rs.exclusive() as mine:
            if mine:
                st = report.store = StorePruned()
                pause = self.pause
                batch = self.batch or default_batch(self.store.engine.dialect.name)
                await rs.prune_deliveries(report.cutoffs, st, dry_run=dry_run, batch=batch, pause=pause)
                await rs.prune_redelivery_requests(report.cutoffs, st, dry_run=dry_run, batch=batch, pause=pause)
                await rs.prune_triggers(report.cutoffs, st, dry_run=dry_run, batch=batch, pause=pause)
                await rs.compact_events(report.cutoffs, st, dry_run=dry_run, pause=pause)
        if self.workspaces is not None:
            with self._files_lock() as files_mine:
                if files_mine:
                    await self._files(rs, report, dry_run=dry_run)
        else:
            report.workspaces, report.mirrors = [], []
        report.seconds = time.monotonic() - started
        return report

    @contextmanager
    def _files_lock(self) -> Iterator[bool]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".retention.lock", "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def _files(self, rs: RetentionStore, report: PruneReport, *, dry_run: bool) -> None:
        ws = self.workspaces
        report.workspaces, report.mirrors = [], []
        dirs = ws.session_dirs()
        states = await rs.sessions_state([p.name for p in dirs])
        now = time.time()
        for path in dirs:
            state = states.get(path.name)
            try:
                if now - path.stat().st_mtime < STALE_WORKSPACE:
                    continue
                if state is not None and (not state[2] or state[3]):
                    continue  # not ended, or a runner holds it
                if not dry_run:
                    # Once more, just before: the session may have been resumed.
                    again = (await rs.sessions_state([path.name])).get(path.name)
                    if again is not None and (not again[2] or again[3]):
                        continue
                    await ws.remove_workspace(state[0] if state else None, path, state[1] if state else None)
                report.workspaces.append(path.name)
            except Exception:
                report.errors += 1
                log.warning("retention: could not remove workspace %s", path, exc_info=True)
        mirrors = ws.mirror_dirs()
        if not mirrors:
            return
        installed = await rs.repositories_installed()
        active = await rs.active_repositories()
        for repo, path in sorted(mirrors.items()):
            try:
                if installed.get(repo) is False and repo not in active:
                    if not dry_run:
                        await ws.remove_mirror(repo)
                    report.mirrors.append(repo)
                elif not dry_run:
                    await ws.maintain_mirror(repo)
                    report.maintained += 1
            except Exception:
                report.errors += 1
                log.warning("retention: could not clean mirror %s", path, exc_info=True)

    # --- in the service ------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="retention")

    async def close(self) -> None:
        from bot.background import cancel

        await cancel(self.task)
        self.task = None

    async def run(self) -> None:
        delay = self.first_delay if self.first_delay is not None else random.uniform(60, 300)
        await asyncio.sleep(delay)
        while True:
            try:
                report = await self.prune()
                counts = {k: v for k, v in report.counts().items() if v}
                log.info(
                    "retention pass in %.1fs: %s",
                    report.seconds,
                    ", ".join(f"{k}={v}" for k, v in counts.items())
                    or "nothing to remove" + (" (store: another process)" if report.store is None else ""),
                    extra={"retention": report.counts()},
                )
            except Exception:
                log.warning("retention pass failed; trying again in %ss", self.interval, exc_info=True)
            await asyncio.sleep(self.interval)
