"""Triggers start their work once: one active session per issue, and every trigger
keyed by what GitHub identifies it with, not by the delivery that brought it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.config import RepoConfig
from bot.events import EventLog
from bot.sessions.manager import SessionManager
from bot.store import Store
from bot.store.sessions import AlreadyTriggered
from tests.conftest import make_settings
from tests.test_sessions_e2e import REPO, WRITE_FEATURE, World, world  # noqa: F401 (fixture)
from tests.twin_events import comment_created, issue_labeled


def create(store: Store, issue: int = 1, by: str = "alice", key: str | None = None):
    return store.sessions.create(
        repo="o/r",
        installation_id=1,
        issue_number=issue,
        issue_title="t",
        branch=f"compound/issue-{issue}",
        backend="command",
        model=None,
        triggered_by=by,
        config={},
        trigger_key=key,
    )


@contextlib.asynccontextmanager
async def second(store: Store):
    """Another process's store on the same database (its own engine and connections)."""
    other = Store.connect(store.engine.url.render_as_string(hide_password=False))
    try:
        yield other
    finally:
        await other.close()


async def active_sessions(store: Store, issue: int = 1) -> int:
    from sqlalchemy import func, select

    from bot.store.schema import sessions as s
    from bot.store.sessions import TERMINAL

    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                select(func.count()).select_from(s).where(s.c.issue_number == issue, s.c.status.not_in(TERMINAL))
            )
        ).scalar_one()


async def test_sessions_racing_for_one_issue_make_one(store: Store):
    """The unique index decides: every loser gets None, none an exception."""
    async with second(store) as other:
        results = await asyncio.gather(*(create(st, by=f"u{i}") for i, st in enumerate([store, other] * 4)))
    assert sum(r is not None for r in results) == 1
    assert await active_sessions(store) == 1


async def test_the_store_refuses_a_second_active_session_even_unasked(store: Store):
    """Without the look before the insert (an old process, a tool): the index still refuses."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from bot.store.base import utcnow
    from bot.store.schema import sessions as s

    session, _ = await create(store)
    row = dict(
        repo="o/r",
        installation_id=1,
        issue_number=1,
        branch="b",
        status="running",
        backend="command",
        triggered_by="x",
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(insert(s).values(id="s-second", **row))
    await store.sessions.update_session(session.id, status="failed")
    async with store.engine.begin() as conn:  # an ended session leaves room for the next
        await conn.execute(insert(s).values(id="s-next", **row))


async def test_a_trigger_key_starts_its_session_once_even_after_it_ended(store: Store):
    session, _ = await create(store, key="label:9:agent:2026-12-06T10:00:00Z")
    await store.sessions.update_session(session.id, status="failed")
    with pytest.raises(AlreadyTriggered):
        await create(store, key="label:9:agent:2026-12-06T10:00:00Z")
    assert await active_sessions(store) == 0
    # The key of a session that could not start is not taken: the issue was busy, not this trigger done.
    again, _ = await create(store, key="label:9:agent:2026-12-06T11:00:00Z")
    assert await create(store, key="label:9:agent:2026-12-06T11:30:00Z") is None
    assert await store.triggers.claim("label:9:agent:2026-12-06T11:30:00Z")


async def test_a_comment_key_queues_one_round_however_many_deliveries_race(store: Store):
    session, _ = await create(store)

    async def add(st: Store) -> Any:
        try:
            return await st.sessions.add_round(session.id, kind="command", requested_by="alice", once="comment:77")
        except AlreadyTriggered:
            return None

    async with second(store) as other:
        results = await asyncio.gather(*(add(st) for st in [store, other] * 3))
    assert sum(r is not None for r in results) == 1
    assert [r.kind for r in await store.sessions.rounds(session.id)] == ["task", "command"]


class FakeGitHub:
    """Records what the manager posts."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def post(self, url: str, params: dict[str, Any] | None = None, data: Any = None) -> dict[str, Any]:
        self.posts.append((url, data))
        return {}


async def test_two_trigger_labels_in_one_burst_start_one_session_in_silence(store: Store, tmp_path: Path):
    """`agent` and `agent:opus` added together: two deliveries, one session, no "already running"."""
    settings = make_settings(tmp_path)
    events = EventLog(tmp_path / "events.jsonl", store.sessions)
    gh = FakeGitHub()
    async with second(store) as other:
        managers = [
            SessionManager(settings, st.sessions, EventLog(tmp_path / "events.jsonl", st.sessions))
            for st in (store, other)
        ]
        issue = {
            "id": 501,
            "number": 5,
            "title": "t",
            "body": "",
            "updated_at": "2026-12-06T10:00:00Z",
            "labels": [{"name": "agent"}, {"name": "agent:opus"}],
        }
        started = await asyncio.gather(
            *(
                m.start_task(
                    gh,
                    repo="o/r",
                    installation_id=1,
                    issue=issue,
                    base_branch="main",
                    config=RepoConfig(),
                    sender={"login": "alice", "id": 1},
                    alias=alias,
                    by_label=True,
                    trigger_key=f"label:501:{label}:2026-12-06T10:00:00Z",
                )
                for m, (label, alias) in zip(managers, [("agent", None), ("agent:opus", "opus")], strict=True)
            )
        )
    assert sum(s is not None for s in started) == 1
    assert await active_sessions(store, 5) == 1
    assert gh.posts == []
    # A trigger label much later is another request: it hears the session is running.
    await store.sessions.update_session(started[0].id if started[0] else started[1].id, created_at=_hours_ago(1))
    manager = SessionManager(settings, store.sessions, events)
    await manager.start_task(
        gh,
        repo="o/r",
        installation_id=1,
        issue=issue,
        base_branch="main",
        config=RepoConfig(),
        sender={"login": "alice", "id": 1},
        by_label=True,
        trigger_key="label:501:agent:2026-12-06T11:00:00Z",
    )
    assert len(gh.posts) == 1 and "already has an active session" in gh.posts[0][1]["body"]


def _hours_ago(hours: float):
    from datetime import timedelta

    from bot.store.base import utcnow

    return utcnow() - timedelta(hours=hours)


# -- end to end: deliveries under new ids ------------------------------------------------


def sessions_of(world: World, number: int) -> list[tuple[str, str]]:
    database = world.tmp / "data" / "compound.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute("SELECT id, status FROM sessions WHERE issue_number = ?", (number,)).fetchall()


def rounds_of(world: World, session_id: str) -> list[str]:
    database = world.tmp / "data" / "compound.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        return [k for (k,) in db.execute("SELECT kind FROM rounds WHERE session_id = ? ORDER BY number", (session_id,))]


async def test_labels_and_comments_delivered_again_under_new_ids_start_nothing_twice(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    world.plan("command", {"write": "more.py", "content": "x = 1\n"})
    await world.start()
    # Two trigger labels in one burst: one session, one branch, nothing said about a second.
    first = issue_labeled(world.twin, REPO, number, "agent", "alice", world.iid)
    opus = issue_labeled(world.twin, REPO, number, "agent:opus", "alice", world.iid)
    ids = await asyncio.gather(world.deliver("issues", first), world.deliver("issues", opus))
    pr = (await world.until(world.pulls, timeout=60, what="a pull request"))[0]
    await world.settled(*ids)
    ((session_id, _),) = sessions_of(world, number)
    assert not any("already has an active session" in b for b in world.bot_comments(number))
    # The same label event again, under a new delivery id ("Redeliver", a restored database).
    await world.settled(await world.deliver("issues", first))
    assert len(sessions_of(world, number)) == 1
    # The same `/agent` comment on the PR, twice: one round.
    command = comment_created(world.twin, REPO, pr.number, "/agent add more", "alice", world.iid)
    ids = [await world.deliver("issue_comment", command) for _ in range(2)]
    await world.settled(*ids)
    await world.until(lambda: rounds_of(world, session_id) == ["task", "command"], what="the command round")
    await world.settled(await world.deliver("issue_comment", command))
    assert rounds_of(world, session_id) == ["task", "command"]


async def test_refusals_are_posted_once_per_interval_per_thread(store: Store, tmp_path: Path):
    manager = SessionManager(
        make_settings(tmp_path, REFUSAL_INTERVAL=3600),
        store.sessions,
        EventLog(tmp_path / "events.jsonl", store.sessions),
    )
    gh = FakeGitHub()
    async with second(store) as other:
        racing = SessionManager(manager.settings, other.sessions, manager.events)
        await asyncio.gather(*(m.refuse(gh, "o/r", 7, f"u{i}") for i, m in enumerate([manager, racing] * 3)))
    assert len(gh.posts) == 1 and "only people with write access" in gh.posts[0][1]["body"]
    await manager.refuse(gh, "o/r", 8, "mallory")  # another thread is told
    await manager.refuse(gh, "o/r", 7, "mallory")  # this one was, within the hour: logged only
    assert len(gh.posts) == 2
    # An hour on, the thread is told again.
    from sqlalchemy import update

    from bot.store.schema import refusal_notices as rn

    async with store.engine.begin() as conn:
        await conn.execute(update(rn).values(last_at=_hours_ago(1.1)))
    await manager.refuse(gh, "o/r", 7, "mallory")
    assert len(gh.posts) == 3


async def test_a_review_delivered_again_queues_its_round_once(store: Store, tmp_path: Path):
    """Reviews are keyed by review id on the round: the review, its comments and their redeliveries make one."""
    from bot.store.sessions import AWAITING, R_DONE

    session, first = await create(store)
    await store.sessions.update_round(first.id, status=R_DONE)
    await store.sessions.update_session(session.id, status=AWAITING, pr_number=10, head_sha="a" * 40)
    session = await store.sessions.get(session.id)
    events = EventLog(tmp_path / "events.jsonl", store.sessions)
    manager = SessionManager(make_settings(tmp_path), store.sessions, events)
    reviewer = {"login": "bob", "id": 2}
    queued = [
        await manager.review_feedback(session, review_id=900, reviewer=reviewer, event=event)
        for event in ["pull_request_review_comment", "pull_request_review"] * 2
    ]
    assert sum(q is not None for q in queued) == 1
    # Even once that round ran: the same review again starts nothing.
    review = next(x for x in await store.sessions.rounds(session.id) if x.kind == "review_fix")
    await store.sessions.update_round(review.id, status=R_DONE)
    assert await manager.review_feedback(session, review_id=900, reviewer=reviewer, event="pull_request_review") is None
    assert [x.kind for x in await store.sessions.rounds(session.id)] == ["task", "review_fix"]
