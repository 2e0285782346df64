"""Retention over 1,000,000 stored deliveries, on SQLite and PostgreSQL, with the intake writing meanwhile.

Fills a fresh SQLite database and a scratch PostgreSQL database through the
store's own write path (the intake's), 1 KB bodies, received over the last
120 days: 95 % processed, 4 % failed, 1 % still pending. Then runs the store
part of a retention pass (`RetentionStore.prune_deliveries` with the
defaults: 30 days for processed, 90 for failed, batches of 1,000 on
PostgreSQL and 250 on SQLite, with a 10 ms pause) while a probe stores one new delivery every 20 ms the way the
intake's writer does, and reports the pass's duration, what it removed, and
the probe's write latency during the pass next to the same probe with no
pass running (the peer in the same run: the ratio is the pause intake sees).

    .venv/bin/python bench/retention.py [--deliveries 1000000] [--pg-admin-url URL] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from bot.settings import async_database_url  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store.deliveries import DeliveryRecord  # noqa: E402
from bot.store.retention import Cutoffs, RetentionStore, StorePruned, default_batch  # noqa: E402
from bot.store.schema import deliveries  # noqa: E402

WRITE_BATCH = 5000
BODY = json.dumps({"action": "labeled", "padding": "x" * 960}).encode()
PROBE_EVERY = 0.02
DAYS = 120


def records(start: int, count: int, prefix: str) -> list[DeliveryRecord]:
    return [
        DeliveryRecord(
            delivery_id=f"{prefix}{i:08d}",
            event="issues",
            action="labeled",
            installation_id=1 + i % 7,
            repo="acme/api",
            payload=BODY,
        )
        for i in range(start, start + count)
    ]


async def fill(url: str, total: int) -> None:
    """Store `total` deliveries, then spread their ages and statuses."""
    store = Store.connect(url)
    await store.migrate()
    try:
        for start in range(0, total, WRITE_BATCH):
            batch = records(start, min(WRITE_BATCH, total - start), "old-")
            # 99 % processed (of which 4 points failed below), 1 % left pending.
            done = [r.delivery_id for i, r in enumerate(batch, start) if i % 100 != 99]
            await store.deliveries.write(batch, None, 0.0)
            await store.deliveries.write((), None, 0.0, processed=done)
        # Ages and the failed share from the id's number: deterministic, one statement each.
        async with store.engine.begin() as conn:
            if store.dialect == "postgresql":
                await conn.execute(
                    text(
                        "UPDATE deliveries SET received_at = received_at - "
                        f"make_interval(secs => (substr(delivery_id, 5)::bigint * 7919 % ({DAYS} * 86400))), "
                        "status = CASE WHEN substr(delivery_id, 5)::bigint % 100 BETWEEN 95 AND 98 "
                        "THEN 'failed' ELSE status END"
                    )
                )
                await conn.execute(text("ANALYZE deliveries"))
            else:
                await conn.execute(
                    text(
                        "UPDATE deliveries SET received_at = strftime('%Y-%m-%d %H:%M:%S', received_at, "
                        f"'-' || (CAST(substr(delivery_id, 5) AS INTEGER) * 7919 % ({DAYS} * 86400)) || ' seconds') "
                        "|| '.000000', "
                        "status = CASE WHEN CAST(substr(delivery_id, 5) AS INTEGER) % 100 BETWEEN 95 AND 98 "
                        "THEN 'failed' ELSE status END"
                    )
                )
                await conn.execute(text("ANALYZE"))
    finally:
        await store.close()


async def probe(store: Store, stop: asyncio.Event, prefix: str) -> list[float]:
    """Store one delivery every PROBE_EVERY seconds as the intake does; each write's latency."""
    latencies: list[float] = []
    n = 0
    while not stop.is_set():
        [record] = records(n, 1, prefix)
        started = time.perf_counter()
        await store.deliveries.write([record], None, 0.0, hold=True)
        latencies.append(time.perf_counter() - started)
        n += 1
        try:
            await asyncio.wait_for(stop.wait(), PROBE_EVERY)
        except TimeoutError:
            pass
    await store.deliveries.release_held()
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "writes": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def measure(url: str, baseline_seconds: float, batch: int | None) -> dict[str, object]:
    store = Store.connect(url)
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(probe(store, stop, "base-"))
        await asyncio.sleep(baseline_seconds)
        stop.set()
        baseline = await task

        async with store.engine.connect() as conn:
            before = dict(
                (await conn.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status))).all()
            )
        cut = Cutoffs.of(datetime.now(UTC), processed_days=30, failed_days=90, compact_days=None)
        report = StorePruned()
        stop = asyncio.Event()
        task = asyncio.create_task(probe(store, stop, "during-"))
        started = time.perf_counter()
        batch = batch or default_batch(store.dialect)
        await RetentionStore(store.engine).prune_deliveries(cut, report, batch=batch)
        seconds = time.perf_counter() - started
        stop.set()
        during = await task
        async with store.engine.connect() as conn:
            after = dict(
                (await conn.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status))).all()
            )
    finally:
        await store.close()
    return {
        "batch": batch,
        "before": before,
        "after": after,
        "pass_s": seconds,
        "batches": report.batches,
        "removed": {"processed": report.processed, "failed": report.failed, "payloads": report.payloads},
        "removed_per_s": (report.processed + report.failed) / seconds,
        "intake_write_idle": summary(baseline),
        "intake_write_during_pass": summary(during),
    }


async def pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--batch", type=int, help="deliveries per transaction (default: the store's for the database)")
    args = parser.parse_args()
    results: dict[str, object] = {
        "deliveries": args.deliveries,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "command": " ".join(["bench/retention.py", *sys.argv[1:]]),
    }
    pg_db = f"compound_bench_retention_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="compound-bench-retention-") as tmp:
        targets = {"sqlite": f"sqlite:///{Path(tmp) / 'compound.db'}"}
        if args.only != "sqlite":
            asyncio.run(pg_admin(args.pg_admin_url, f'CREATE DATABASE "{pg_db}"'))
            targets["postgresql"] = f"{args.pg_admin_url.rsplit('/', 1)[0]}/{pg_db}"
        if args.only == "postgresql":
            del targets["sqlite"]
        try:
            for name, plain in targets.items():
                url = async_database_url(plain)
                started = time.perf_counter()
                asyncio.run(fill(url, args.deliveries))
                print(
                    f"{name}: {args.deliveries:,} deliveries stored in {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
                figures = asyncio.run(measure(url, args.baseline_seconds, args.batch))
                results[name] = figures
                idle, during = figures["intake_write_idle"], figures["intake_write_during_pass"]
                print(
                    f"{name}: batch {figures['batch']}, pass {figures['pass_s']:.1f} s, removed {figures['removed']}, "
                    f"{figures['removed_per_s']:,.0f}/s; intake write p50/p99/max "
                    f"idle {idle['p50_ms']:.1f}/{idle['p99_ms']:.1f}/{idle['max_ms']:.1f} ms, "
                    f"during {during['p50_ms']:.1f}/{during['p99_ms']:.1f}/{during['max_ms']:.1f} ms",
                    flush=True,
                )
        finally:
            if "postgresql" in targets:
                asyncio.run(pg_admin(args.pg_admin_url, f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
