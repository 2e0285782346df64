"""The session queue on SQLite and PostgreSQL: one round per branch, leases, stop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.settings import async_database_url
from bot.store import MIGRATIONS, Store
from bot.store.sessions import AWAITING, R_CANCELLED, R_QUEUED, R_RUNNING
from tests.conftest import PG_ADMIN_URL


async def new(store: Store, issue: int = 1, repo: str = "o/r"):
    created = await store.sessions.create(
        repo=repo,
        installation_id=1,
        issue_number=issue,
        issue_title="t",
        branch=f"compound/issue-{issue}",
        backend="command",
        model="m",
        triggered_by="alice",
        config={},
    )
    assert created is not None
    return created


async def test_one_active_session_per_issue(store: Store):
    session, first = await new(store)
    assert first.number == 1 and first.status == R_QUEUED and first.kind == "task"
    assert (
        await store.sessions.create(
            repo="o/r",
            installation_id=1,
            issue_number=1,
            issue_title="t",
            branch="b",
            backend="command",
            model=None,
            triggered_by="bob",
            config={},
        )
        is None
    )
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
        ("session.created", {"model": "m"}),
        ("round.started", {"round": 1}),
    ]


# -- healing rounds: triggers, waiting, budgets -----------------------------------

from datetime import UTC, timedelta  # noqa: E402

from bot.store.base import utcnow  # noqa: E402
from bot.store.sessions import ESCALATED, R_DONE  # noqa: E402


async def awaiting_pr(store: Store, issue: int = 1):
    session, first = await new(store, issue=issue)
    await store.sessions.update_round(first.id, status=R_DONE)
    await store.sessions.update_session(
        session.id, status=AWAITING, pr_number=100 + issue, head_sha="a" * 40, base_branch="main"
    )
    return await store.sessions.get(session.id)


async def test_an_event_trigger_queues_its_round_once(store: Store):
    session = await awaiting_pr(store)
    key = f"ci:{'a' * 40}"
    first = await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key=key, trigger={"head": "a" * 40})
    assert first is not None and first.automatic and first.trigger_data() == {"head": "a" * 40}
    for _ in range(10):  # GitHub's several events per failure, and its redeliveries
        assert await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key=key, trigger={}) is None
    rounds = await store.sessions.rounds(session.id)
    assert [r.kind for r in rounds] == ["task", "ci_fix"]
    # An event's round leaves the session as it was until it is sure to run.
    assert (await store.sessions.get(session.id)).status == AWAITING


async def test_concurrent_triggers_race_to_one_round(store: Store):
    session = await awaiting_pr(store)
    results = await asyncio.gather(
        *(store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:x", trigger={}) for _ in range(6))
    )
    assert sum(r is not None for r in results) == 1
    # The losers neither queue a second round nor cancel the winner's.
    (only,) = [r for r in await store.sessions.rounds(session.id) if r.kind == "ci_fix"]
    assert only.status == R_QUEUED


async def test_a_newer_trigger_replaces_the_queued_one_of_its_kind(store: Store):
    session = await awaiting_pr(store)
    old = await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:old", trigger={})
    review = await store.sessions.queue_automatic(session.id, kind="review_fix", trigger_key="review:1", trigger={})
    new_ = await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:new", trigger={})
    statuses = {r.id: r.status for r in await store.sessions.rounds(session.id)}
    assert statuses[old.id] == R_CANCELLED
    assert statuses[review.id] == R_QUEUED and statuses[new_.id] == R_QUEUED


def review(review_id: int, reviewer: str) -> dict:
    return {"event": "pull_request_review", "review_id": review_id, "reviewer": reviewer, "state": "changes_requested"}


async def test_a_second_review_joins_the_queued_review_round_rather_than_cancel_it(store: Store):
    session = await awaiting_pr(store)
    later, sooner = utcnow() + timedelta(seconds=60), utcnow() + timedelta(seconds=1)
    first = await store.sessions.queue_automatic(
        session.id, kind="review_fix", trigger_key="review:1", trigger=review(1, "ann"), not_before=later, join=True
    )
    joined = await store.sessions.queue_automatic(
        session.id, kind="review_fix", trigger_key="review:2", trigger=review(2, "bob"), not_before=sooner, join=True
    )
    # One round, the first one, now answering both reviews; it starts as soon as either asks.
    assert joined is not None and joined.id == first.id and joined.trigger_key == "review:1"
    assert joined.status == R_QUEUED and abs((joined.not_before - sooner).total_seconds()) < 0.01
    assert joined.trigger_data() == {**review(1, "ann"), "joined": [{**review(2, "bob"), "key": "review:2"}]}
    # Review 2's other events (its comments, redeliveries) neither queue nor join again,
    # and may still bring the round forward.
    now = utcnow()
    for _ in range(3):
        assert (
            await store.sessions.queue_automatic(
                session.id,
                kind="review_fix",
                trigger_key="review:2",
                trigger=review(2, "bob"),
                not_before=now,
                join=True,
            )
            is None
        )
    (only,) = [r for r in await store.sessions.rounds(session.id) if r.kind == "review_fix"]
    assert only.status == R_QUEUED and len(only.trigger_data()["joined"]) == 1
    assert abs((only.not_before - now).total_seconds()) < 0.01
    # CI rounds still supersede: a newer head's round cancels the older one's.
    old = await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:old", trigger={})
    await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:new", trigger={})
    assert (await store.sessions.round(old.id)).status == R_CANCELLED


async def test_a_review_while_the_review_round_runs_is_queued_after_it(store: Store):
    session = await awaiting_pr(store)
    first = await store.sessions.queue_automatic(
        session.id, kind="review_fix", trigger_key="review:1", trigger=review(1, "ann"), join=True
    )
    ((_, running),) = await store.sessions.claim("w", lease=30)
    assert running.id == first.id and running.status == R_RUNNING
    second = await store.sessions.queue_automatic(
        session.id, kind="review_fix", trigger_key="review:2", trigger=review(2, "bob"), join=True
    )
    assert second is not None and second.id != first.id and second.trigger_data() == review(2, "bob")
    assert second.number == running.number + 1
    # The running round is left as it was; a third review joins the second, queued one.
    third = await store.sessions.queue_automatic(
        session.id, kind="review_fix", trigger_key="review:3", trigger=review(3, "cy"), join=True
    )
    assert third.id == second.id and [j["review_id"] for j in third.trigger_data()["joined"]] == [3]
    assert "joined" not in (await store.sessions.round(first.id)).trigger_data()
    assert (
        await store.sessions.queue_automatic(
            session.id, kind="review_fix", trigger_key="review:2", trigger=review(2, "bob"), join=True
        )
        is None
    )
    statuses = [(r.number, r.status) for r in await store.sessions.rounds(session.id) if r.kind == "review_fix"]
    assert statuses == [(running.number, R_RUNNING), (second.number, R_QUEUED)]


async def test_reviews_racing_to_join_each_join_once(store: Store):
    session = await awaiting_pr(store)
    first = await store.sessions.queue_automatic(
        session.id, kind="review_fix", trigger_key="review:1", trigger=review(1, "ann"), join=True
    )
    results = await asyncio.gather(
        *(
            store.sessions.queue_automatic(
                session.id, kind="review_fix", trigger_key=f"review:{n}", trigger=review(n, "bob"), join=True
            )
            for n in (2, 3, 2, 3, 2, 3)
        )
    )
    assert sum(r is not None for r in results) == 2
    (only,) = [r for r in await store.sessions.rounds(session.id) if r.kind == "review_fix"]
    assert only.id == first.id and sorted(j["review_id"] for j in only.trigger_data()["joined"]) == [2, 3]


async def test_a_waiting_round_is_not_claimed_until_its_time(store: Store):
    session = await awaiting_pr(store)
    later = utcnow() + timedelta(seconds=60)
    await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:a", trigger={}, not_before=later)
    assert await store.sessions.claim("w", lease=30) == []
    # The suite completed: a second event for the same head brings it forward.
    await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:a", trigger={}, not_before=utcnow())
    ((claimed, round_),) = await store.sessions.claim("w", lease=30)
    assert round_.kind == "ci_fix" and round_.attempts == 1
    # Deferred (CI still running): back in the queue, the wait not counted as a try.
    await store.sessions.defer(round_.id, 60)
    await store.sessions.release(session.id, "w")
    assert await store.sessions.claim("w", lease=30) == []
    again = await store.sessions.round(round_.id)
    assert again.status == R_QUEUED and again.attempts == 0


async def test_sessions_found_by_head_and_base(store: Store):
    session = await awaiting_pr(store)
    assert (await store.sessions.for_head("o/r", "a" * 40)).id == session.id
    assert await store.sessions.for_head("o/r", "b" * 40) is None
    assert [s.id for s in await store.sessions.with_base("o/r", "main")] == [session.id]
    assert await store.sessions.with_base("o/r", "develop") == []
    # Escalated with its PR open: still found (events are told it is escalated), and
    # the issue cannot get a second session on the same branch.
    await store.sessions.update_session(session.id, status=ESCALATED)
    assert (await store.sessions.for_head("o/r", "a" * 40)).id == session.id
    assert (
        await store.sessions.create(
            repo="o/r",
            installation_id=1,
            issue_number=1,
            issue_title="t",
            branch="compound/issue-1",
            backend="command",
            model=None,
            triggered_by="bob",
            config={},
        )
        is None
    )
    await store.sessions.update_session(session.id, status="done", outcome="merged")
    assert await store.sessions.for_head("o/r", "a" * 40) is None


async def test_budget_and_runs_per_head(store: Store):
    session = await awaiting_pr(store)
    await store.sessions.bump_budget(session.id, "ci_fix")
    await store.sessions.bump_budget(session.id, "ci_fix")
    await store.sessions.bump_budget(session.id, "review_fix")
    await store.sessions.bump_budget(session.id, "rebase")  # counts against neither
    got = await store.sessions.get(session.id)
    assert (got.ci_rounds, got.review_rounds) == (2, 1)
    round_ = await store.sessions.queue_automatic(session.id, kind="ci_fix", trigger_key="ci:a", trigger={})
    assert await store.sessions.count_runs(session.id, "ci_fix", "a" * 40) == 0
    await store.sessions.update_round(round_.id, status=R_DONE, head_before="a" * 40)
    assert await store.sessions.count_runs(session.id, "ci_fix", "a" * 40) == 1


async def test_the_issue_body_at_the_trigger_is_kept_on_the_session(store: Store):
    created = await store.sessions.create(
        repo="o/r",
        installation_id=1,
        issue_number=3,
        issue_title="t",
        branch="b",
        backend="command",
        model=None,
        triggered_by="alice",
        config={},
        issue_body="Do it ```this``` way",
    )
    assert created is not None
    assert (await store.sessions.get(created[0].id)).issue_body == "Do it ```this``` way"


async def test_the_edit_notice_is_claimed_once_however_many_ask_at_once(store: Store):
    session, _ = await new(store)
    claims = await asyncio.gather(*(store.sessions.claim_edit_notice(session.id) for _ in range(8)))
    assert sorted(claims) == [False] * 7 + [True]
    assert (await store.sessions.get(session.id)).issue_edit_noticed_at is not None
    assert not await store.sessions.claim_edit_notice(session.id)
    # A notice that could not be posted is claimed again by the retry.
    await store.sessions.release_edit_notice(session.id)
    assert await store.sessions.claim_edit_notice(session.id)
    other, _ = await new(store, issue=2)
    assert await store.sessions.claim_edit_notice(other.id)


# -- migration 0006 on a database that holds sessions from before ------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own (the shared test database is already at head)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'before.db'}"
        return
    name = f"compound_migrate_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield async_database_url(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _alembic(sync_conn, verb: str, revision: str) -> None:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    getattr(command, verb)(cfg, revision)


async def test_migration_0006_keeps_the_body_of_sessions_from_before(empty_database: str):
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "0005")
            now = datetime.now(UTC)
            for sid, context in (("s-old", '{"issue_body": "as labelled", "base_branch": "main"}'), ("s-none", "{}")):
                await conn.execute(
                    text(
                        "INSERT INTO sessions (id, repo, installation_id, issue_number, branch, status, backend, "
                        "triggered_by, created_at, updated_at) VALUES (:id, 'o/r', 1, 1, 'b', 'awaiting', 'command', "
                        "'alice', :now, :now)"
                    ),
                    {"id": sid, "now": now},
                )
                await conn.execute(
                    text(
                        "INSERT INTO rounds (session_id, number, kind, status, context, created_at) "
                        "VALUES (:id, 1, 'task', 'done', :context, :now)"
                    ),
                    {"id": sid, "context": context, "now": now},
                )
            await conn.execute(
                text(
                    "INSERT INTO rounds (session_id, number, kind, status, context, created_at) "
                    "VALUES ('s-old', 2, 'command', 'done', '{\"issue_body\": \"not this\"}', :now)"
                ),
                {"now": now},
            )
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "head")
        store = Store(engine)
        old, none = await store.sessions.get("s-old"), await store.sessions.get("s-none")
        assert (old.issue_body, old.issue_edit_noticed_at) == ("as labelled", None)
        assert none.issue_body is None
        assert await store.sessions.claim_edit_notice("s-old")
        # And back: 0006 comes off cleanly.
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "downgrade", "0005")
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("sessions")})
        assert "issue_body" not in columns and "issue_edit_noticed_at" not in columns
    finally:
        await engine.dispose()


# -- migration 0012 on a database that holds two active sessions of one issue ------------


async def test_migration_0012_stops_older_duplicates_then_makes_the_index(empty_database: str):
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "0011")
            base = datetime(2026, 12, 1, tzinfo=UTC)
            for n, (sid, issue, status) in enumerate(
                [
                    ("s-oldest", 1, "running"),
                    ("s-older", 1, "awaiting"),
                    ("s-newest", 1, "queued"),
                    ("s-ended", 1, "done"),
                    ("s-other", 2, "running"),
                ]
            ):
                at = base + timedelta(hours=n)
                await conn.execute(
                    text(
                        "INSERT INTO sessions (id, repo, installation_id, issue_number, branch, status, backend, "
                        "triggered_by, created_at, updated_at) VALUES (:id, 'o/r', 1, :issue, 'b', :status, 'command', "
                        "'alice', :at, :at)"
                    ),
                    {"id": sid, "issue": issue, "status": status, "at": at},
                )
                await conn.execute(
                    text(
                        "INSERT INTO rounds (session_id, number, kind, status, created_at) "
                        "VALUES (:id, 1, 'task', 'queued', :at)"
                    ),
                    {"id": sid, "at": at},
                )
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "head")
        store = Store(engine)
        got = {sid: await store.sessions.get(sid) for sid in ("s-oldest", "s-older", "s-newest", "s-ended", "s-other")}
        assert {sid: x.status for sid, x in got.items()} == {
            "s-oldest": "stopped",
            "s-older": "stopped",
            "s-newest": "queued",
            "s-ended": "done",
            "s-other": "running",
        }
        assert "migration 0012" in got["s-oldest"].error and got["s-newest"].error is None
        assert [x.status for x in await store.sessions.rounds("s-older")] == [R_CANCELLED]
        assert [x.status for x in await store.sessions.rounds("s-newest")] == [R_QUEUED]
        # The index holds from now on, and the new tables and column are there.
        assert (
            await store.sessions.create(
                repo="o/r",
                installation_id=1,
                issue_number=1,
                issue_title="t",
                branch="b",
                backend="command",
                model=None,
                triggered_by="bob",
                config={},
            )
            is None
        )
        assert await store.triggers.claim("comment:1") and not await store.triggers.claim("comment:1")
        assert await store.triggers.claim_refusal("o/r", 1, 3600)
        assert (await store.sessions.rounds("s-newest"))[0].quota is None
        # And back: 0012 comes off cleanly (0013 above it first).
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "downgrade", "0011")

            def shape(c):
                i = inspect(c)
                return (
                    {col["name"] for col in i.get_columns("rounds")},
                    set(i.get_table_names()),
                    {ix["name"] for ix in i.get_indexes("sessions")},
                )

            columns, tables, indexes = await conn.run_sync(shape)
        assert "quota" not in columns and "uq_sessions_active_issue" not in indexes
        assert not {"trigger_keys", "refusal_notices", "session_compactions"} & tables
        async with engine.begin() as conn:  # and up again
            await conn.run_sync(_alembic, "upgrade", "head")
    finally:
        await engine.dispose()
