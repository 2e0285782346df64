"""Per-installation quotas and fair claims (docs/operations.md#quotas), on both stores."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from bot.events import EventLog
from bot.sessions.manager import SessionManager
from bot.sessions.quotas import QuotaKeeper, quotas_of
from bot.store import Store
from bot.store.schema import rounds as r
from bot.store.sessions import BYPASS, HELD, R_DONE, R_FAILED, Quotas
from tests.conftest import make_settings
from tests.test_sessions_e2e import REPO, WRITE_FEATURE, World, world  # noqa: F401 (fixture)
from tests.test_triggers import FakeGitHub, second


async def queue(store: Store, installation: int, issues: range, repo: str | None = None) -> list[str]:
    ids = []
    for n in issues:
        created = await store.sessions.create(
            repo=repo or f"org{installation}/app",
            installation_id=installation,
            issue_number=n,
            issue_title="t",
            branch=f"compound/issue-{n}",
            backend="command",
            model=None,
            triggered_by="alice",
            config={},
        )
        assert created is not None
        ids.append(created[0].id)
    return ids


async def finish(store: Store, claimed: list[Any], owner: str = "w") -> None:
    for session, round_ in claimed:
        await store.sessions.update_round(round_.id, status=R_DONE)
        await store.sessions.release(session.id, owner)


def installations(claimed: list[Any]) -> list[int]:
    return [session.installation_id for session, _ in claimed]


async def test_an_installation_runs_at_most_its_share_at_once(store: Store):
    await queue(store, 1, range(1, 6))
    caps = Quotas(running=2)
    first = await store.sessions.claim("w", 30, limit=5, quotas=caps)
    assert len(first) == 2 and await store.sessions.running_in(1) == 2
    assert await store.sessions.claim("w2", 30, limit=5, quotas=caps) == []  # the others wait queued
    await finish(store, first[:1])
    assert len(await store.sessions.claim("w", 30, limit=5, quotas=caps)) == 1


async def test_a_backlog_of_one_installation_does_not_hold_every_slot(store: Store):
    """200 issues labelled in one org, then three in another: the other's are served in turn."""
    await queue(store, 1, range(1, 31))
    await queue(store, 2, range(1, 4))
    caps = Quotas(running=8)
    # Four slots: the fewest running first, so the two installations alternate.
    claimed = await store.sessions.claim("w", 30, limit=4, quotas=caps)
    assert installations(claimed) == [1, 2, 1, 2]
    # Each slot that frees goes to the installation served least recently.
    await finish(store, claimed)
    order = []
    for _ in range(4):
        (got,) = await store.sessions.claim("w", 30, limit=1, quotas=caps)
        order.append(got[0].installation_id)
        await finish(store, [got])
    assert order == [1, 2, 1, 1]  # the second installation's three are done; the backlog goes on


async def test_several_workers_keep_the_cap_on_either_store(store: Store):
    await queue(store, 1, range(1, 11))
    await queue(store, 2, range(1, 11))
    caps = Quotas(running=2)
    async with second(store) as other:
        results = await asyncio.gather(
            *(st.sessions.claim(f"w{i}", 30, limit=3, quotas=caps) for i, st in enumerate([store, other] * 4))
        )
    claimed = [c for batch in results for c in batch]
    assert sorted(installations(claimed)) == [1, 1, 2, 2]


class Keeper:
    """A QuotaKeeper with its comments recorded, and a manager for the retry."""

    def __init__(self, store: Store, tmp_path: Path, per_day: int) -> None:
        self.settings = make_settings(
            tmp_path,
            MAX_SESSIONS_PER_INSTALLATION=8,
            MAX_ROUNDS_PER_INSTALLATION_PER_DAY=per_day,
        )
        self.store = store
        self.events = EventLog(tmp_path / "events.jsonl", store.sessions)
        self.gh = FakeGitHub()
        self.keeper = QuotaKeeper(self.settings, store.sessions, self.events, lambda session: self.gh)
        self.manager = SessionManager(self.settings, store.sessions, self.events)
        self.quotas = quotas_of(self.settings)

    async def claim(self, limit: int = 10) -> list[Any]:
        await self.keeper.sweep()
        return await self.store.sessions.claim("w", 30, limit=limit, quotas=self.quotas)

    def comments(self) -> list[tuple[str, str]]:
        return [(url, data["body"]) for url, data in self.gh.posts]


async def test_past_the_daily_cap_rounds_are_held_told_once_and_released_next_day(store: Store, tmp_path: Path):
    k = Keeper(store, tmp_path, per_day=3)
    sessions = await queue(store, 1, range(1, 6))
    await queue(store, 2, range(1, 2))
    claimed = await k.claim()
    assert sorted(installations(claimed)) == [1, 1, 1, 2]  # three of installation 1: its day is full
    await finish(store, claimed)
    assert await store.sessions.started_today(1) == 3
    assert await k.claim() == []
    held = [s for s in sessions if any(x.quota == HELD for x in await store.sessions.rounds(s))]
    assert len(held) == 2
    # One comment per thread, saying when the limit resets; none more at the next sweeps.
    await k.claim()
    comments = k.comments()
    assert len(comments) == 2
    assert all("used its daily limit of 3" in body and "00:00 UTC" in body for _, body in comments)
    for session_id in held:
        assert ("round.held", 1) in [(t, d.get("round")) for t, d in await store.sessions.events(session_id)]
    # A maintainer's `/agent retry` runs one now, past the cap.
    bypassed = await store.sessions.get(held[0])
    released = await k.manager.release_held(bypassed, {"login": "alice"})
    assert [x.quota for x in released] == [BYPASS]
    (got,) = await k.claim()
    assert got[0].id == held[0]
    await finish(store, [got])
    assert await k.claim() == []
    # The day rolls (the day's rounds are yesterday's now): the last one is released and runs.
    async with store.engine.begin() as conn:
        await conn.execute(update(r).values(started_at=r.c.started_at - timedelta(days=1)))
    (got,) = await k.claim()
    assert got[0].id == held[1]
    events = [t for t, _ in await store.sessions.events(held[1])]
    assert events == ["round.held", "round.released"]
    assert len(k.comments()) == 2


async def test_a_maintainers_retry_of_a_failed_round_goes_past_the_cap(store: Store, tmp_path: Path):
    k = Keeper(store, tmp_path, per_day=1)
    (session_id,) = await queue(store, 1, range(1, 2))
    ((session, round_),) = await k.claim()
    await store.sessions.update_round(round_.id, status=R_FAILED)
    await store.sessions.release(session.id, "w")
    # An automatic follow-up waits for tomorrow; the retry does not.
    retried = await k.manager.retry(session, {"login": "alice", "id": 1}, bypass=True)
    assert retried is not None and retried.quota == BYPASS
    ((_, got),) = await k.claim()
    assert got.id == retried.id
    assert k.comments() == []


async def test_no_daily_cap_when_it_is_zero(store: Store, tmp_path: Path):
    k = Keeper(store, tmp_path, per_day=0)
    assert k.quotas.per_day is None
    await queue(store, 1, range(1, 5))
    assert len(await k.claim()) == 4


async def test_end_to_end_the_daily_limit_is_said_once_and_a_retry_goes_past_it(world: World):
    first = world.twin.add_issue(REPO, title="One", user="alice")
    later = world.twin.add_issue(REPO, title="Two", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start(MAX_ROUNDS_PER_INSTALLATION_PER_DAY=1)
    await world.label(first)
    await world.until(lambda: len(world.pulls()) == 1, what="the first pull request")
    await world.label(later)
    said = await world.until(
        lambda: [b for b in world.bot_comments(later) if "used its daily limit" in b], what="the daily limit comment"
    )
    assert "UTC" in said[0] and "/agent retry" in said[0]
    await world.settled(await world.command(later, "/agent status"))
    status = await world.until(
        lambda: [b for b in world.bot_comments(later) if b.startswith("Session `s-")], what="status"
    )
    assert "waiting for the daily limit" in status[0]
    assert len(world.pulls()) == 1
    assert len([b for b in world.bot_comments(later) if "used its daily limit" in b]) == 1  # once, not every sweep
    await world.command(later, "/agent retry")
    await world.until(lambda: any("past today's limit" in b for b in world.bot_comments(later)), what="the retry")
    await world.until(lambda: len(world.pulls()) == 2, what="the held round run past the limit")
