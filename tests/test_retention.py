"""Retention (docs/operations.md#retention), on SQLite and PostgreSQL, with real git for the files."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

from bot.events import EventLog
from bot.retention import Retention
from bot.settings import async_database_url
from bot.store import Store
from bot.store.base import utcnow
from bot.store.deliveries import DeliveryRecord
from bot.store.retention import RetentionStore
from bot.store.schema import deliveries as d
from bot.store.schema import delivery_payloads as bodies
from bot.store.schema import outcomes, redelivery_requests
from bot.store.schema import session_compactions as sc
from bot.store.schema import session_events as ev
from bot.store.schema import sessions as s
from bot.workspace import Workspaces

BODY = json.dumps({"action": "labeled", "pad": "x" * 900}).encode()  # past MIN_COMPRESS: lz4 on SQLite


def retention(store: Store, tmp_path: Path, workspaces: Workspaces | None = None, **kw: object) -> Retention:
    kw.setdefault("pause", 0.0)
    return Retention(store=store, workspaces=workspaces, data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]


async def add_deliveries(store: Store, prefix: str, n: int, *, days: float, status: str) -> list[str]:
    """`n` deliveries stored through the intake's writer, then aged and given `status`."""
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    for start in range(0, n, 500):
        chunk = [DeliveryRecord(i, "issues", "labeled", 1, "o/r", BODY) for i in ids[start : start + 500]]
        assert len(await store.deliveries.insert_new(chunk, None, lease=30)) == len(chunk)
    when = utcnow() - timedelta(days=days)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(d)
            .where(d.c.delivery_id.like(f"{prefix}-%"))
            .values(
                received_at=when,
                status=status,
                processed_at=when if status != "pending" else None,
            )
        )
    return ids


async def counts(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        by_status = dict((await conn.execute(select(d.c.status, func.count()).group_by(d.c.status))).all())
        payloads = (await conn.execute(select(func.count()).select_from(bodies))).scalar_one()
        events = (await conn.execute(select(func.count()).select_from(ev))).scalar_one()
        outcome_rows = (await conn.execute(select(func.count()).select_from(outcomes))).scalar_one()
    return {**by_status, "payloads": payloads, "events": events, "outcomes": outcome_rows}


async def ids_left(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set((await conn.execute(select(d.c.delivery_id))).scalars())


async def test_removes_old_processed_and_failed_deliveries_and_keeps_the_rest(store: Store, tmp_path: Path):
    old = await add_deliveries(store, "old", 20, days=40, status="processed")
    young = await add_deliveries(store, "young", 5, days=10, status="processed")
    parked = await add_deliveries(store, "parked", 3, days=60, status="failed")  # inside its 90 days
    stale = await add_deliveries(store, "stale", 4, days=100, status="failed")
    waiting = await add_deliveries(store, "waiting", 2, days=200, status="pending")  # never, however old
    fresh = await add_deliveries(store, "fresh", 2, days=0, status="processed")
    sqlite = store.dialect == "sqlite"
    assert (await counts(store))["payloads"] == (36 if sqlite else 0)

    report = await retention(store, tmp_path).prune()

    assert report.store is not None
    assert (report.store.processed, report.store.failed) == (20, 4)
    assert report.store.payloads == (24 if sqlite else 0)  # PostgreSQL keeps the body in the row
    assert await ids_left(store) == set(young + parked + waiting + fresh)
    left = await counts(store)
    assert left["payloads"] == (12 if sqlite else 0)
    # The bodies left are the right ones: each delivery kept still reads its payload.
    for delivery_id in young + parked + waiting:
        record = await store.deliveries.get(delivery_id)
        assert record is not None and record.payload == BODY
    assert set(old).isdisjoint(await ids_left(store)) and set(stale).isdisjoint(await ids_left(store))
    # Nothing more on a second pass.
    again = await retention(store, tmp_path).prune()
    assert again.store is not None and (again.store.processed, again.store.failed) == (0, 0)


async def test_skipped_deliveries_go_with_the_processed_ones_and_their_bodies(store: Store, tmp_path: Path):
    old = await add_deliveries(store, "skip-old", 6, days=40, status="skipped")
    young = await add_deliveries(store, "skip-young", 2, days=10, status="skipped")
    dry = await retention(store, tmp_path).prune(dry_run=True)
    assert dry.store is not None and (dry.store.skipped, dry.store.processed) == (6, 0)
    assert any("would remove 6 skipped deliveries" in line for line in dry.lines())
    report = await retention(store, tmp_path).prune()
    assert report.store is not None and report.store.skipped == 6
    assert report.counts()["deliveries_skipped"] == 6
    assert await ids_left(store) == set(young)
    assert set(old).isdisjoint(await ids_left(store))
    left = await counts(store)
    assert left["payloads"] == (2 if store.engine.dialect.name == "sqlite" else 0)


async def test_nothing_younger_than_72_hours_whatever_the_setting(store: Store, tmp_path: Path):
    two_days = await add_deliveries(store, "two", 3, days=2, status="processed")
    failed = await add_deliveries(store, "fail", 2, days=2.5, status="failed")
    four_days = await add_deliveries(store, "four", 3, days=4, status="processed")
    report = await retention(store, tmp_path, processed_days=0.01, failed_days=0.01).prune()
    assert report.store is not None and report.store.processed == 3 and report.store.failed == 0
    assert await ids_left(store) == set(two_days + failed)
    assert set(four_days).isdisjoint(await ids_left(store))


async def test_dry_run_changes_nothing_and_reports_the_same_counts(store: Store, tmp_path: Path):
    await add_deliveries(store, "old", 30, days=40, status="processed")
    await add_deliveries(store, "stale", 7, days=95, status="failed")
    await add_deliveries(store, "young", 4, days=1, status="processed")
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(redelivery_requests),
            [
                {
                    "guid": f"g{i}",
                    "hook_delivery_id": i,
                    "event": "issues",
                    "reason": "failed",
                    "asked_at": utcnow() - timedelta(days=40 if i < 3 else 1),
                }
                for i in range(5)
            ],
        )
    session_id = await ended_session(store, days=45)
    before = await counts(store)
    events_before = await event_data(store, session_id)

    dry = await retention(store, tmp_path, batch=8).prune(dry_run=True)
    assert await counts(store) == before
    assert await event_data(store, session_id) == events_before
    assert len(await ids_left(store)) == 41

    done = await retention(store, tmp_path, batch=8).prune()
    assert dry.counts() == done.counts()
    assert dry.store is not None
    assert (dry.store.processed, dry.store.failed, dry.store.redelivery_requests) == (30, 7, 3)
    assert dry.store.sessions_compacted == 1 and dry.store.events_compacted == 2
    assert len(await ids_left(store)) == 4
    assert any("would remove 30 processed deliveries" in line for line in dry.lines())
    assert any("removed 30 processed deliveries" in line for line in done.lines())


async def test_a_pass_with_more_rows_than_a_batch_takes_several_transactions(store: Store, tmp_path: Path):
    await add_deliveries(store, "old", 2500, days=31, status="processed")
    # Rows it must walk past, between the old ones and in the middle of its batches.
    kept = await add_deliveries(store, "parked", 150, days=31, status="failed")
    report = await retention(store, tmp_path, batch=1000).prune()
    assert report.store is not None
    assert report.store.processed == 2500
    assert report.store.batches == 3  # 2,650 rows walked 1,000 at a time, none twice
    assert await ids_left(store) == set(kept)
    if store.dialect == "sqlite":
        assert (await counts(store))["payloads"] == 150


async def test_a_delivery_set_back_to_pending_is_not_removed(store: Store, tmp_path: Path):
    """The DELETE checks the status again: an operator's reset between the SELECT and it wins."""
    ids = await add_deliveries(store, "stale", 3, days=100, status="failed")
    rs = RetentionStore(store.engine)
    original = rs.engine

    class Resetting:
        """The engine, with the reset done by 'another session' right after the batch's SELECT."""

        dialect = original.dialect
        url = original.url

        def connect(self):  # pragma: no cover - not used by the walk
            return original.connect()

        def begin(self):
            return _ResetAfterSelect(original, ids[0])

    rs.engine = Resetting()  # type: ignore[assignment]
    from bot.retention import Cutoffs
    from bot.store.retention import StorePruned

    report = StorePruned()
    await rs.prune_deliveries(Cutoffs.of(utcnow(), processed_days=30, failed_days=90, compact_days=None), report)
    assert report.failed == 2
    assert await ids_left(store) == {ids[0]}
    assert (await store.deliveries.get(ids[0])).status == "pending"  # type: ignore[union-attr]


class _ResetAfterSelect:
    """`engine.begin()` whose connection sets one delivery back to pending after the first SELECT."""

    def __init__(self, engine, delivery_id: str) -> None:
        self.engine, self.delivery_id = engine, delivery_id

    async def __aenter__(self):
        self._cm = self.engine.begin()
        conn = await self._cm.__aenter__()
        outer = self

        class Conn:
            async def execute(self, stmt, *args):
                result = await conn.execute(stmt, *args)
                if stmt.is_select:
                    # Another connection would wait for our lock on SQLite; the same
                    # transaction stands in for the operator's UPDATE.
                    await conn.execute(update(d).where(d.c.delivery_id == outer.delivery_id).values(status="pending"))
                return result

        return Conn()

    async def __aexit__(self, *exc):
        return await self._cm.__aexit__(*exc)


async def test_two_prunes_at_once_one_does_it_the_other_skips(database_url: str, store: Store, tmp_path: Path):
    await add_deliveries(store, "old", 3000, days=40, status="processed")
    other = Store.connect(async_database_url(database_url))
    try:
        one = retention(store, tmp_path, batch=100, pause=0.02)
        two = retention(other, tmp_path, batch=100, pause=0.02)
        a, b = await asyncio.gather(one.prune(), two.prune())
    finally:
        await other.close()
    did = [r for r in (a, b) if r.store is not None]
    skipped = [r for r in (a, b) if r.store is None]
    assert len(did) == 1 and len(skipped) == 1
    assert did[0].store.processed == 3000  # type: ignore[union-attr]
    assert any("skipped, another process" in line for line in skipped[0].lines())
    assert await ids_left(store) == set()
    # The lock is given back: the next pass runs.
    assert (await retention(store, tmp_path).prune()).store is not None


async def test_the_lock_is_held_for_the_whole_pass(database_url: str, store: Store, tmp_path: Path):
    other = Store.connect(async_database_url(database_url))
    try:
        async with RetentionStore(other.engine).exclusive() as mine:
            assert mine
            assert (await retention(store, tmp_path).prune()).store is None
        assert (await retention(store, tmp_path).prune()).store is not None
    finally:
        await other.close()


# --- session events ---------------------------------------------------------------

TRIGGER = {
    "event": "check_suite",
    "head": "a" * 40,
    "checks": [{"name": "ci", "output": "E" * 5000}],
    "comments": [{"body": "please fix " * 200}],
}
CHOICE = {
    "task_kind": "bug",
    "variant": {
        "picked": "default",
        "why": "sampled",
        "posterior": {"default": [3, 4]},
        "draws": {"default": 0.61, "terse": 0.4},
    },
}


async def ended_session(store: Store, *, days: float, status: str = "done") -> str:
    created = await store.sessions.create(
        repo="octo/app",
        installation_id=1,
        issue_number=int(days * 10) + (status == "running"),
        issue_title="t",
        branch="compound/issue-1",
        backend="command",
        model=None,
        triggered_by="alice",
        config={},
    )
    assert created is not None
    session = created[0]
    for type_, data in (
        ("session.created", {"labels": ["agent"], "trigger": "alice"}),
        ("round.started", {"round": 1, "attempt": 1, "trigger": TRIGGER, "categories": ["lint"]}),
        ("round.prompt", {"round": 1, "variant": "default", "lessons": [1], "held_out": [], "choice": CHOICE}),
        ("round.pushed", {"round": 1, "head": "b" * 40, "files": ["src/app.py", "README.md"]}),
        ("session.closed", {"outcome": "merged"}),
    ):
        await store.sessions.add_event(session.id, type_, {"v": 1, "repo": "octo/app", **data})
    when = utcnow() - timedelta(days=days)
    async with store.engine.begin() as conn:
        await conn.execute(update(s).where(s.c.id == session.id).values(status=status, updated_at=when))
        await conn.execute(
            insert(outcomes).values(
                session_id=session.id,
                repo="octo/app",
                installation_id=1,
                issue_number=1,
                outcome="merged",
                first_try=True,
                ci_rounds=0,
                review_rounds=0,
                rebase_rounds=0,
                started_at=when,
                ended_at=when,
                backend="command",
                task_kind="bug",
            )
        )
    return session.id


async def event_data(store: Store, session_id: str) -> list[tuple[str, dict]]:
    return await store.sessions.events(session_id)


async def test_events_of_long_ended_sessions_are_compacted_not_removed(store: Store, tmp_path: Path):
    old = await ended_session(store, days=45)
    recent = await ended_session(store, days=5)
    running = await ended_session(store, days=60, status="running")
    recent_before = await event_data(store, recent)
    running_before = await event_data(store, running)
    sizes = await stored_sizes(store, old)

    report = await retention(store, tmp_path).prune()
    assert report.store is not None and report.store.sessions_compacted == 1 and report.store.events_compacted == 2

    events = dict(await event_data(store, old))
    assert list(dict(await event_data(store, old))) == [
        "session.created",
        "round.started",
        "round.prompt",
        "round.pushed",
        "session.closed",
    ]  # every transition stays
    assert events["round.started"]["trigger"] == {"event": "check_suite", "head": "a" * 40}
    assert events["round.started"]["categories"] == ["lint"] and events["round.started"]["compacted"] is True
    assert events["round.prompt"]["choice"] == {"task_kind": "bug", "variant": {"picked": "default", "why": "sampled"}}
    assert events["round.prompt"]["lessons"] == [1]
    assert events["round.pushed"]["files"] == ["src/app.py", "README.md"]  # the learning loop reads them
    assert "compacted" not in events["round.pushed"]
    after = await stored_sizes(store, old)
    assert after["round.started"] < sizes["round.started"] / 10
    assert await event_data(store, recent) == recent_before
    assert await event_data(store, running) == running_before
    assert (await counts(store))["outcomes"] == 3

    # Done once: the next pass looks at no session, and changes nothing.
    again = await retention(store, tmp_path).prune()
    assert again.store is not None and again.store.sessions_compacted == 0
    assert dict(await event_data(store, old)) == events

    # A session resumed and ended again since is looked at again (its new events too):
    # compacted 40 days ago, resumed and ended 31 days ago.
    await store.sessions.add_event(old, "round.started", {"v": 1, "round": 2, "trigger": TRIGGER})
    async with store.engine.begin() as conn:
        await conn.execute(update(sc).values(compacted_at=utcnow() - timedelta(days=40)))
        await conn.execute(update(s).where(s.c.id == old).values(updated_at=utcnow() - timedelta(days=31)))
    third = await retention(store, tmp_path).prune()
    assert third.store is not None and (third.store.sessions_compacted, third.store.events_compacted) == (1, 1)
    assert all(
        data["trigger"] == {"event": "check_suite", "head": "a" * 40}
        for type_, data in await event_data(store, old)
        if type_ == "round.started"
    )


async def test_compaction_off(store: Store, tmp_path: Path):
    old = await ended_session(store, days=400)
    before = await event_data(store, old)
    report = await retention(store, tmp_path, compact_days=0).prune()
    assert report.store is not None and report.store.sessions_compacted == 0
    assert await event_data(store, old) == before
    assert any("event compaction: off" in line for line in report.lines())


async def stored_sizes(store: Store, session_id: str) -> dict[str, int]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(ev.c.type, ev.c.data).where(ev.c.session_id == session_id))).all()
    return {t: len(data) for t, data in rows}


# --- events.jsonl ---------------------------------------------------------------------


async def test_events_jsonl_rotates_by_size_while_sessions_write(store: Store, tmp_path: Path):
    created = await store.sessions.create(
        repo="octo/app",
        installation_id=1,
        issue_number=1,
        issue_title="t",
        branch="compound/issue-1",
        backend="command",
        model=None,
        triggered_by="alice",
        config={},
    )
    assert created is not None
    session = created[0]
    path = tmp_path / "data" / "events.jsonl"
    log = EventLog(path, store.sessions, max_bytes=8192, keep=100)

    async def writer(w: int) -> None:
        for i in range(40):
            await log.record(session, "round.queued", n=f"{w}-{i}", pad="p" * 200)

    async def logrotate() -> None:
        # An operator's logrotate moves the file away once while the writers go on.
        while not path.exists() or path.stat().st_size < 4000:
            await asyncio.sleep(0.001)
        os.rename(path, tmp_path / "data" / "moved-by-logrotate")

    await asyncio.gather(*(writer(w) for w in range(8)), logrotate())

    files = sorted(path.parent.glob("events.jsonl*")) + [tmp_path / "data" / "moved-by-logrotate"]
    files = [f for f in files if not f.name.endswith(".rotate-lock")]
    assert len(files) > 5  # it did rotate
    seen = []
    for f in files:
        lines = f.read_bytes().splitlines()
        seen += [json.loads(line)["n"] for line in lines]  # every line whole
        if f.name != "moved-by-logrotate":
            # Rotated once past the size: over it by the lines the other
            # writers appended meanwhile (8 writers, < 400 bytes a line, more
            # than one each on a loaded machine), never by a whole file's worth.
            assert f.stat().st_size < 2 * 8192
    assert sorted(seen) == sorted(f"{w}-{i}" for w in range(8) for i in range(40))  # none lost, none twice


async def test_rotation_keeps_a_few_files(store: Store, tmp_path: Path):
    created = await store.sessions.create(
        repo="octo/app",
        installation_id=1,
        issue_number=2,
        issue_title="t",
        branch="compound/issue-2",
        backend="command",
        model=None,
        triggered_by="alice",
        config={},
    )
    assert created is not None
    path = tmp_path / "events.jsonl"
    log = EventLog(path, store.sessions, max_bytes=1000, keep=3)
    for i in range(100):
        await log.record(created[0], "round.queued", n=i, pad="p" * 100)
    await log.record(created[0], "round.queued", n=100)  # small: the file exists after it
    names = sorted(p.name for p in tmp_path.glob("events.jsonl*") if not p.name.endswith("lock"))
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    newest = [json.loads(x)["n"] for x in path.read_bytes().splitlines()]
    oldest_kept = [json.loads(x)["n"] for x in (tmp_path / "events.jsonl.3").read_bytes().splitlines()]
    assert newest[-1] == 100 and oldest_kept[0] > 0  # the oldest files were dropped
    # The store keeps every event regardless.
    assert len(await store.sessions.events(created[0].id)) == 101


async def test_a_rotation_that_fails_does_not_fail_the_event(store: Store, tmp_path: Path):
    created = await store.sessions.create(
        repo="octo/app",
        installation_id=1,
        issue_number=3,
        issue_title="t",
        branch="compound/issue-3",
        backend="command",
        model=None,
        triggered_by="alice",
        config={},
    )
    assert created is not None
    path = tmp_path / "events.jsonl"
    log = EventLog(path, store.sessions, max_bytes=100, keep=2)
    (tmp_path / "events.jsonl.1").write_text("older\n")
    (tmp_path / "events.jsonl.2").mkdir()  # in the way: a file cannot replace a directory
    (tmp_path / "events.jsonl.2" / "x").write_text("x")
    await log.record(created[0], "round.queued", pad="p" * 200)
    await log.record(created[0], "round.queued", pad="q" * 200)
    assert len(path.read_bytes().splitlines()) == 2  # written, not rotated
    assert len(await store.sessions.events(created[0].id)) == 2


# --- workspaces and mirrors, with real git ------------------------------------------------


def age(path: Path, seconds: float = 7200) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_workspaces_of_ended_sessions_and_mirrors_of_uninstalled_repos_go(twin, store: Store, tmp_path: Path):
    iid = twin.add_installation(account="octo-org")
    files = {"README.md": "# app\n"}
    twin.add_repo("octo-org/app", installation_id=iid, default_branch="main", files=files)
    twin.add_repo("octo-org/gone", installation_id=iid, default_branch="main", files=files)
    twin.add_repo("octo-org/unknown", installation_id=iid, default_branch="main", files=files)
    token = twin.mint_token(iid)
    data = tmp_path / "data"
    ws = Workspaces(data, twin.git_url)

    await store.installations.upsert(
        iid, account_login="octo-org", account_type="Organization", repository_selection="selected"
    )
    await store.installations.add_repositories(
        iid,
        [
            {"id": 1, "full_name": "octo-org/app"},
            {"id": 2, "full_name": "octo-org/gone"},
        ],
    )
    await store.installations.remove_repositories(iid, [2])

    async def session(repo: str, issue: int, status: str) -> str:
        created = await store.sessions.create(
            repo=repo,
            installation_id=iid,
            issue_number=issue,
            issue_title="t",
            branch=f"compound/issue-{issue}",
            backend="command",
            model=None,
            triggered_by="alice",
            config={},
        )
        assert created is not None
        async with store.engine.begin() as conn:
            await conn.execute(update(s).where(s.c.id == created[0].id).values(status=status))
        return created[0].id

    ended = await session("octo-org/app", 1, "done")
    live = await session("octo-org/app", 2, "running")
    just_ended = await session("octo-org/app", 3, "failed")
    on_gone = await session("octo-org/gone", 4, "stopped")
    spaces = {}
    for sid, repo, issue in (
        (ended, "octo-org/app", 1),
        (live, "octo-org/app", 2),
        (just_ended, "octo-org/app", 3),
        (on_gone, "octo-org/gone", 4),
    ):
        spaces[sid] = await ws.open(repo, sid, f"compound/issue-{issue}", token)
    await ws.sync_mirror("octo-org/unknown", token)
    stray = data / "workspaces" / "not-in-the-store"
    stray.mkdir()
    for sid in (ended, live, on_gone):
        age(spaces[sid].path)
    age(stray, 2 * 86400)
    app_mirror = ws.mirror_path("octo-org/app")

    dry = await retention(store, tmp_path, workspaces=ws).prune(dry_run=True)
    assert sorted(dry.workspaces or []) == sorted([ended, on_gone, "not-in-the-store"])
    assert dry.mirrors == ["octo-org/gone"]
    assert all(w.path.exists() for w in spaces.values()) and stray.exists()
    assert ws.mirror_path("octo-org/gone").exists()

    report = await retention(store, tmp_path, workspaces=ws).prune()
    assert report.counts() == dry.counts()
    assert not spaces[ended].path.exists() and not spaces[on_gone].path.exists() and not stray.exists()
    assert spaces[live].path.exists() and spaces[just_ended].path.exists()
    # git forgot the removed worktree and its branch; the live one is intact.
    listing = await ws.git.out("worktree", "list", "--porcelain", git_dir=app_mirror)
    assert str(spaces[ended].path) not in listing and str(spaces[live].path) in listing
    branches = await ws.git.out("branch", "--list", git_dir=app_mirror)
    assert "compound/issue-1" not in branches and "compound/issue-2" in branches
    assert (await ws.git.out("status", "--porcelain", cwd=spaces[live].path)) == ""
    # The uninstalled repository's mirror is gone; the installed one and the
    # one the store never heard of stay, and still work.
    assert not ws.mirror_path("octo-org/gone").exists()
    assert ws.mirror_path("octo-org/unknown").exists() and app_mirror.exists()
    assert report.maintained == 2
    await ws.sync_mirror("octo-org/app", token)
    again = await ws.open("octo-org/gone", on_gone, "compound/issue-4", token)  # recreated on demand
    assert (again.path / "README.md").read_text() == "# app\n"


async def test_a_mirror_with_an_active_session_stays_even_if_uninstalled(twin, store: Store, tmp_path: Path):
    iid = twin.add_installation(account="octo-org")
    twin.add_repo("octo-org/app", installation_id=iid, default_branch="main", files={"a": "1\n"})
    ws = Workspaces(tmp_path / "data", twin.git_url)
    await store.installations.upsert(
        iid, account_login="octo-org", account_type="Organization", repository_selection="all", deleted=True
    )
    await store.installations.add_repositories(iid, [{"id": 1, "full_name": "octo-org/app"}])
    created = await store.sessions.create(
        repo="octo-org/app",
        installation_id=iid,
        issue_number=1,
        issue_title="t",
        branch="compound/issue-1",
        backend="command",
        model=None,
        triggered_by="alice",
        config={},
    )
    assert created is not None
    await ws.sync_mirror("octo-org/app", twin.mint_token(iid))
    report = await retention(store, tmp_path, workspaces=ws).prune()
    assert report.mirrors == [] and ws.mirror_path("octo-org/app").exists()
    async with store.engine.begin() as conn:
        await conn.execute(update(s).values(status="done"))
    report = await retention(store, tmp_path, workspaces=ws).prune()
    assert report.mirrors == ["octo-org/app"] and not ws.mirror_path("octo-org/app").exists()


# --- the background job and the command ------------------------------------------------------


async def test_the_service_runs_passes_in_the_background(tmp_path: Path, database_url: str):
    from bot.service import Service
    from tests.conftest import FAST, _empty, make_settings

    svc = Service(make_settings(tmp_path, DATABASE_URL=database_url, RETENTION_INTERVAL="0.2"), policy=FAST)
    await svc.start()
    try:
        await _empty(svc.store)
        assert svc.retention is not None
        svc.retention.first_delay = 0  # already sleeping its first delay: start it again, at once
        await svc.retention.close()
        svc.retention.start()
        ids = await add_deliveries(svc.store, "old", 50, days=40, status="processed")
        accepted = await svc.store.deliveries.insert_new(
            [DeliveryRecord("new-1", "issues", "labeled", 1, "o/r", BODY)], None, lease=30
        )
        assert accepted == {"new-1"}
        for _ in range(100):
            if not set(ids) & await ids_left(svc.store):
                break
            await asyncio.sleep(0.1)
        assert await ids_left(svc.store) == {"new-1"}
    finally:
        await svc.stop()
    assert svc.retention.task is None


def test_compound_db_prune_dry_run_then_prune(tmp_path: Path):
    import subprocess
    import sys

    from tests.conftest import WEBHOOK_SECRET

    data = tmp_path / "data"
    env = {**os.environ, "DATA_DIR": str(data), "WEBHOOK_SECRET": WEBHOOK_SECRET, "LOG_FORMAT": "text"}
    env.pop("DATABASE_URL", None)

    async def seed() -> None:
        store = Store.connect(async_database_url(f"sqlite:///{data / 'compound.db'}"))
        await store.migrate()
        try:
            await add_deliveries(store, "old", 12, days=40, status="processed")
            await add_deliveries(store, "young", 3, days=1, status="processed")
        finally:
            await store.close()

    asyncio.run(seed())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "db", "prune", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 12 processed deliveries" in dry.stdout
    assert "would remove 12 delivery payload rows" in dry.stdout
    done = run()
    assert done.returncode == 0, done.stderr
    assert "removed 12 processed deliveries" in done.stdout and "removed 12 delivery payload rows" in done.stdout
    assert "removed 0 processed deliveries" in run().stdout


def test_settings_defaults_and_bounds(tmp_path: Path):
    from bot.settings import SettingsError
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    assert (settings.delivery_retention_days, settings.failed_delivery_retention_days) == (30, 90)
    assert (settings.events_max_mb, settings.events_keep, settings.retention_interval) == (100, 5, 3600)
    with pytest.raises(SettingsError, match="DELIVERY_RETENTION_DAYS"):
        make_settings(tmp_path, DELIVERY_RETENTION_DAYS="0")


async def test_trigger_keys_and_refusal_notices_go_after_three_days(store: Store, tmp_path: Path):
    from bot.store.schema import refusal_notices, trigger_keys

    now = utcnow()
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(trigger_keys),
            [{"key": f"comment:{i}", "created_at": now - timedelta(days=4 if i < 5 else 1)} for i in range(8)],
        )
        await conn.execute(
            insert(refusal_notices),
            [
                {"repo": "o/r", "number": 1, "created_at": now - timedelta(days=9), "last_at": now - timedelta(days=5)},
                {
                    "repo": "o/r",
                    "number": 2,
                    "created_at": now - timedelta(days=9),
                    "last_at": now - timedelta(hours=2),
                },
            ],
        )
    dry = await retention(store, tmp_path, batch=2).prune(dry_run=True)
    assert dry.store is not None and (dry.store.trigger_keys, dry.store.refusal_notices) == (5, 1)
    done = await retention(store, tmp_path, batch=2).prune()
    assert done.counts() == dry.counts()
    assert any("removed 5 trigger keys and 1 refusal notices" in line for line in done.lines())
    async with store.engine.connect() as conn:
        keys = set((await conn.execute(select(trigger_keys.c.key))).scalars())
        threads = set((await conn.execute(select(refusal_notices.c.number))).scalars())
    assert keys == {"comment:5", "comment:6", "comment:7"} and threads == {2}
    # A trigger seen two days ago is still known: its redelivery starts nothing.
    assert await store.triggers.seen("comment:6")
