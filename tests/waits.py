"""Event-driven waits for the end-to-end tests: a "nothing (more) happened" check
waits for a positive signal that the service has finished with everything that
could have caused the thing, instead of sleeping.

`quiescent(world)` holds when, at one instant: the twin's CI has no run in flight
(so every CI webhook it sends has been answered, i.e. stored by the service);
the service's store has no pending delivery (retries included), no round queued
(a debounced CI/review round waits as `queued` with `not_before`, so the quiet
periods are covered) or running, and no session claimed by a worker (a round's
tail -- escalation, comments, events -- runs while the claim is held).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

ACTIVITY = (
    "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending'),"
    " (SELECT count(*) FROM rounds WHERE status IN ('queued', 'running')),"
    " (SELECT count(*) FROM sessions WHERE runner IS NOT NULL)"
)


def activity(world) -> tuple[int, int, int] | None:
    """(pending deliveries, queued or running rounds, claimed sessions), one snapshot; None before the store exists."""
    database = world.tmp / "data" / "compound.db"
    if not database.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        return tuple(db.execute(ACTIVITY).fetchone())


def is_quiescent(world) -> bool:
    if world.twin.ci.busy:  # a CI run (and its webhooks) still in flight
        return False
    now = activity(world)
    return now is not None and not any(now)


async def quiescent(world, timeout: float = 120.0, what: str = "the service to finish everything") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_quiescent(world):
            return
        await asyncio.sleep(0.1)
    logs = world.service.logs()[-6000:] if world.service else ""
    raise AssertionError(
        f"timed out waiting for {what}: activity {activity(world)}, "
        f"CI runs in flight {world.twin.ci.busy}\n--- service log tail ---\n{logs}"
    )
