"""The store's own contract, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from bot.store import Store, payloads
from bot.store.base import utcnow
from bot.store.deliveries import DeliveryRecord


def rec(delivery_id: str, event: str = "issues") -> DeliveryRecord:
    return DeliveryRecord(delivery_id, event, "labeled", 1, "o/r", json.dumps({"n": delivery_id}).encode())


async def test_migrations_create_the_schema_and_are_idempotent(store: Store):
    await store.migrate()  # a second run changes nothing
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"deliveries", "installations", "repositories", "alembic_version"} <= tables


async def test_insert_new_reports_only_new_deliveries(store: Store):
    new = await store.deliveries.insert_new([rec("a"), rec("b"), rec("a")], "p1", lease=30)
    assert new == {"a", "b"}
    assert await store.deliveries.insert_new([rec("a"), rec("c")], "p1", lease=30) == {"c"}
    assert await store.deliveries.count() == 3
    stored = await store.deliveries.get("a")
    assert stored is not None
    assert (stored.event, stored.action, stored.installation_id, stored.repo) == ("issues", "labeled", 1, "o/r")
    assert json.loads(stored.payload) == {"n": "a"}
    assert stored.status == "pending" and stored.attempts == 0
    assert stored.received_at is not None and stored.received_at.tzinfo is not None


async def test_the_same_delivery_from_many_writers_is_stored_once(store: Store):
    results = await asyncio.gather(*(store.deliveries.insert_new([rec("same")], f"p{i}", lease=30) for i in range(8)))
    assert sum(len(r) for r in results) == 1


async def test_claims_leases_and_release(store: Store):
    await store.deliveries.insert_new([rec("held")], "p1", lease=30)
    await store.deliveries.insert_new([rec("free")], None, lease=30)
    await store.deliveries.insert_new([rec("lapsing")], "dead", lease=0.05)
    await asyncio.sleep(0.1)
    claimed = await store.deliveries.claim_due("p2", lease=30)
    assert sorted(r.delivery_id for r in claimed) == ["free", "lapsing"]
    assert await store.deliveries.claim_due("p3", lease=30) == []
    assert await store.deliveries.renew("p2", lease=30) == 2
    await store.deliveries.release("p2", "free")
    assert [r.delivery_id for r in await store.deliveries.claim_due("p3", lease=30)] == ["free"]
    await store.deliveries.release("p1")
    assert [r.delivery_id for r in await store.deliveries.claim_due("p3", lease=30)] == ["held"]


async def test_concurrent_claims_never_hand_one_delivery_to_two_processes(store: Store):
    await store.deliveries.insert_new([rec(f"d{i}") for i in range(50)], None, lease=30)
    batches = await asyncio.gather(*(store.deliveries.claim_due(f"p{i}", lease=30, limit=10) for i in range(8)))
    ids = [r.delivery_id for batch in batches for r in batch]
    assert len(ids) == len(set(ids)) == 50


async def test_failed_attempts_retry_then_park(store: Store):
    await store.deliveries.insert_new([rec("x")], "p1", lease=30)
    retry_at = utcnow() + timedelta(seconds=60)
    attempts = await store.deliveries.mark_attempt_failed(
        "x", pending_handlers=["h2", "h1"], error="boom", retry_at=retry_at, lease=30
    )
    assert attempts == 1
    stored = await store.deliveries.get("x")
    assert stored is not None
    assert (stored.status, stored.pending_handlers, stored.last_error) == ("pending", ["h1", "h2"], "boom")
    # Not due yet, so nobody claims it even after its owner lets go.
    await store.deliveries.release("p1")
    assert await store.deliveries.claim_due("p2", lease=30) == []
    await store.deliveries.mark_attempt_failed(
        "x", pending_handlers=["h1"], error="boom again", retry_at=None, lease=30
    )
    stored = await store.deliveries.get("x")
    assert stored is not None
    assert (stored.status, stored.attempts, stored.pending_handlers) == ("failed", 2, ["h1"])
    assert await store.deliveries.count("failed") == 1


async def test_mark_processed(store: Store):
    await store.deliveries.insert_new([rec("p"), rec("q")], "p1", lease=30)
    await store.deliveries.mark_processed(["p", "q"])
    await store.deliveries.mark_processed([])
    assert await store.deliveries.count("processed") == 2
    stored = await store.deliveries.get("p")
    assert stored is not None and stored.processed_at is not None and stored.attempts == 1
    assert await store.deliveries.claim_due("p2", lease=30) == []


async def test_installations_and_repositories(store: Store):
    inst = store.installations
    await inst.upsert(9, account_login="octo-org", account_type="Organization", repository_selection="selected")
    await inst.add_repositories(
        9, [{"id": 1, "full_name": "octo-org/a", "private": True}, {"id": 2, "full_name": "octo-org/b"}]
    )
    await inst.upsert(
        9, account_login="octo-org", account_type="Organization", repository_selection="all", suspended=True
    )
    got = await inst.get(9)
    assert got is not None and got.repository_selection == "all" and got.suspended and not got.deleted
    await inst.remove_repositories(9, [1])
    assert [r.full_name for r in await inst.repositories(9)] == ["octo-org/b"]
    assert len(await inst.repositories(9, include_removed=True)) == 2
    await inst.add_repositories(9, [{"id": 1, "full_name": "octo-org/a-renamed"}])
    assert [r.full_name for r in await inst.repositories(9)] == ["octo-org/a-renamed", "octo-org/b"]
    await inst.remove_repositories(9, [])
    assert await inst.repositories(9) == []
    assert await inst.get(404) is None


# -- how payloads are kept -----------------------------------------------------------


BIG_BODY = json.dumps(
    {
        "action": "labeled",
        "issue": {"body": "x" * 200, "labels": [{"url": f"https://api.github.com/l/{i}"} for i in range(300)]},
    }
).encode()


async def _raw_payload(store: Store, delivery_id: str):
    """The stored body as the database holds it, wherever it is."""
    async with store.engine.connect() as conn:
        inline, body_id = (
            await conn.execute(
                text("SELECT payload, payload_id FROM deliveries WHERE delivery_id = :i"), {"i": delivery_id}
            )
        ).one()
        if body_id is None:
            return inline
        assert store.dialect == "sqlite" and inline == b""  # the row carries no body of its own
        return (
            await conn.execute(text("SELECT payload FROM delivery_payloads WHERE id = :i"), {"i": body_id})
        ).scalar_one()


async def test_payloads_come_back_byte_for_byte_and_sqlite_keeps_them_compressed(store: Store):
    body = BIG_BODY
    small = b'{"zen":"Keep it logically awesome."}'
    records = [
        DeliveryRecord("big", "issues", "labeled", 1, "o/r", body),
        DeliveryRecord("small", "issues", "labeled", 1, "o/r", small),
    ]
    await store.deliveries.insert_new(records, "p1", lease=30)
    assert (await store.deliveries.get("big")).payload == body
    assert (await store.deliveries.get("small")).payload == small
    # The sweeper's path (claim_due) reads them back the same way.
    await store.deliveries.release("p1")
    claimed = {r.delivery_id: r.payload for r in await store.deliveries.claim_due("p2", lease=30)}
    assert claimed == {"big": body, "small": small}

    raw = await _raw_payload(store, "big")
    if store.dialect == "sqlite":
        assert isinstance(raw, bytes) and raw[0] == payloads.LZ4
        assert len(raw) < len(body) // 3  # one page, not four
        assert await _raw_payload(store, "small") == small  # too small to be worth it
    else:
        assert raw == body.decode()  # text; PostgreSQL compresses it in TOAST


async def test_payloads_stored_as_text_before_compression_are_still_read(store: Store):
    await store.deliveries.insert_new([rec("old")], "p1", lease=30)
    async with store.engine.begin() as conn:
        await conn.execute(
            text("UPDATE deliveries SET payload = :p, payload_id = NULL WHERE delivery_id = 'old'"),
            {"p": '{"n": "old ✓"}'},
        )
    stored = await store.deliveries.get("old")
    assert stored.payload == '{"n": "old ✓"}'.encode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_keeps_bodies_apart_one_per_stored_delivery(store: Store):
    """Bodies live in delivery_payloads; duplicates leave none behind; the mark leaves them alone."""
    first = [DeliveryRecord(f"d{i}", "issues", "labeled", 1, "o/r", BIG_BODY + b" " * i) for i in range(3)]
    assert await store.deliveries.insert_new(first, "p1", lease=30) == {"d0", "d1", "d2"}
    # One batch with two old ids, a new one, and the new one twice.
    again = [
        first[0],
        DeliveryRecord("d3", "issues", "labeled", 1, "o/r", b'{"n": 3}'),
        first[2],
        DeliveryRecord("d3", "issues", "labeled", 1, "o/r", b'{"n": 3}'),
    ]
    assert await store.deliveries.insert_new(again, "p1", lease=30) == {"d3"}

    async def bodies() -> list[tuple]:
        async with store.engine.connect() as conn:
            return (await conn.execute(text("SELECT id, payload FROM delivery_payloads ORDER BY id"))).all()

    before = await bodies()
    assert len(before) == 4  # one per stored delivery
    await store.deliveries.mark_processed(["d0", "d1", "d2", "d3"])
    assert await bodies() == before
    for r in first:
        assert (await store.deliveries.get(r.delivery_id)).payload == r.payload
    assert (await store.deliveries.get("d3")).payload == b'{"n": 3}'
    # A row written before migration 0004 (its compressed body in the row) reads as before.
    async with store.engine.begin() as conn:
        await conn.execute(
            text("UPDATE deliveries SET payload = :p, payload_id = NULL WHERE delivery_id = 'd1'"),
            {"p": payloads.pack(BIG_BODY)},
        )
    assert (await store.deliveries.get("d1")).payload == BIG_BODY


def test_pack_and_unpack():
    assert payloads.unpack(payloads.pack(BIG_BODY)) == BIG_BODY
    assert payloads.pack(b"{}") == b"{}"
    assert payloads.unpack("{}") == b"{}"
    assert payloads.unpack(memoryview(b'{"a":1}')) == b'{"a":1}'
    damaged = payloads.pack(BIG_BODY)[:40]
    with pytest.raises(payloads.CorruptPayload, match="does not decompress"):
        payloads.unpack(damaged)


# -- SQLite: the intake's writer on the event loop ----------------------------------


def _sqlite_path(store: Store) -> str:
    return store.engine.url.database


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_write_lock_held_by_another_process_never_stops_the_event_loop(store: Store):
    """The writer's statements run on the loop; waiting for a lock must not."""
    other = sqlite3.connect(_sqlite_path(store), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (compound receive, say) is writing
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        write = asyncio.create_task(store.deliveries.insert_new([rec("waits")], "p1", lease=30))
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting for the lock, in aiosqlite's thread
        assert ticks >= 10  # while the loop went on
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, 10) == {"waits"}
    finally:
        ticker.cancel()
        other.close()
    assert (await store.deliveries.get("waits")).payload == rec("waits").payload


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_connection_returned_with_a_transaction_open_is_rolled_back(store: Store):
    async with store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection._conn
        raw.execute("BEGIN")
        raw.execute("DELETE FROM deliveries")
    await store.deliveries.insert_new([rec("after")], "p1", lease=30)
    async with store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection._conn
        assert not raw.in_transaction
    assert await store.deliveries.count() == 1


def test_an_sqlite_too_old_for_the_writer_is_a_clear_setting_error(monkeypatch, tmp_path):
    from bot.settings import SettingsError

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(
        SettingsError, match=r"DATABASE_URL: SQLite 3\.35\.0 or newer is needed and this Python has 3\.31\.1"
    ):
        Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")


async def test_a_new_database_another_process_is_writing_is_switched_to_wal_once_it_is_free(tmp_path):
    """`compound serve` and `compound worker` started together on a new database file: one of them
    switching it to WAL met the other's write lock, SQLite answered "database is locked" at once
    (it skips its busy handler there), and that process exited with "cannot reach the database"."""
    import subprocess
    import sys

    from bot.store import check_reachable

    path = tmp_path / "compound.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE early (x)")  # a database not yet in WAL, as a first start leaves it
    setup.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE'); db.execute('INSERT INTO early VALUES (1)')\n"
            "print('holding', flush=True); time.sleep(0.5); db.execute('COMMIT')\n"
        )],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        # The control: the switch, as SQLite answers it while the other process writes.
        plain = sqlite3.connect(path, timeout=5, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            plain.execute("PRAGMA journal_mode=WAL")
        plain.close()
        url = f"sqlite+aiosqlite:///{path}"
        await check_reachable(url)
        store = Store.connect(url)
        try:
            await store.migrate()
            async with store.engine.connect() as conn:
                assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
                assert (await conn.execute(text("SELECT count(*) FROM early"))).scalar() == 1
        finally:
            await store.close()
    finally:
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
