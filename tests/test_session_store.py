"""The session queue on SQLite and PostgreSQL: one round per branch, leases, stop."""

from __future__ import annotations

import asyncio

from bot.store import Store
from bot.store.sessions import AWAITING, R_CANCELLED, R_QUEUED, R_RUNNING


async def new(store: Store, issue: int = 1, repo: str = "o/r"):
    created = await store.sessions.create(
        repo=repo, installation_id=1, issue_number=issue, issue_title="t",
        branch=f"compound/issue-{issue}", backend="command", model="m", triggered_by="alice", config={},
    )
    assert created is not None
    return created


async def test_one_active_session_per_issue(store: Store):
    session, first = await new(store)
    assert first.number == 1 and first.status == R_QUEUED and first.kind == "task"
    assert await store.sessions.create(
        repo="o/r", installation_id=1, issue_number=1, issue_title="t", branch="b",
        backend="command", model=None, triggered_by="bob", config={},
    ) is None
    await store.sessions.update_session(session.id, status="failed")
    assert (await new(store))[0].id != session.id


async def test_claim_takes_one_round_per_session(store: Store):
    session, first = await new(store)
    second = await store.sessions.add_round(session.id, kind="command", requested_by="bob", instructions="more")
    assert second.number == 2
    claimed = await store.sessions.claim("w1", lease=30, limit=5)
    assert [(c[0].id, c[1].id) for c in claimed] == [(session.id, first.id)]
    assert claimed[0][1].status == R_RUNNING and claimed[0][1].attempts == 1
    # The session is held: its second round waits, whoever asks.
    assert await store.sessions.claim("w2", lease=30, limit=5) == []
    await store.sessions.update_round(first.id, status="done")
    await store.sessions.release(session.id, "w1")
    claimed = await store.sessions.claim("w2", lease=30, limit=5)
    assert [c[1].id for c in claimed] == [second.id]


async def test_many_workers_never_run_two_rounds_of_one_session(store: Store):
    sessions = [await new(store, issue=i) for i in range(1, 11)]
    for session, _ in sessions:
        await store.sessions.add_round(session.id, kind="command", requested_by="x")
    results = await asyncio.gather(*(store.sessions.claim(f"w{i}", lease=30, limit=3) for i in range(8)))
    claimed = [c for batch in results for c in batch]
    assert len({c[0].id for c in claimed}) == len(claimed) == 10


async def test_a_dead_workers_round_is_taken_over(store: Store):
    session, first = await new(store)
    await store.sessions.claim("dead", lease=0.05, limit=1)
    await asyncio.sleep(0.1)
    claimed = await store.sessions.claim("alive", lease=30, limit=1)
    assert [(c[1].id, c[1].attempts) for c in claimed] == [(first.id, 2)]


async def test_renew_keeps_the_lease(store: Store):
    await new(store)
    await store.sessions.claim("w1", lease=0.3, limit=1)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await store.sessions.renew("w1", lease=0.3)
        assert await store.sessions.claim("w2", lease=30) == []


async def test_stop_flags_the_running_round_and_cancels_queued(store: Store):
    session, first = await new(store)
    await store.sessions.add_round(session.id, kind="command", requested_by="x")
    await store.sessions.claim("w1", lease=30)
    running, cancelled = await store.sessions.request_stop(session.id)
    assert (running, cancelled) == (first.id, 1)
    assert await store.sessions.stop_requested(first.id)
    assert [x.status for x in await store.sessions.rounds(session.id)] == [R_RUNNING, R_CANCELLED]


async def test_lookups_and_events(store: Store):
    session, _ = await new(store, issue=7)
    await store.sessions.update_session(session.id, pr_number=12, status=AWAITING, head_sha="abc")
    assert (await store.sessions.for_pr("o/r", 12)).id == session.id
    assert (await store.sessions.for_issue("o/r", 7)).head_sha == "abc"
    assert await store.sessions.for_pr("o/r", 13) is None
    await store.sessions.add_event(session.id, "session.created", {"model": "m"})
    await store.sessions.add_event(session.id, "round.started", {"round": 1})
    assert await store.sessions.events(session.id) == [
        ("session.created", {"model": "m"}), ("round.started", {"round": 1}),
    ]
