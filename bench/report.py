"""`compound report` over 100,000 stored sessions, on SQLite and on PostgreSQL.

Fills a fresh SQLite database and a scratch PostgreSQL database with
outcomes spread as a busy installation's would be (5 repos of unequal
traffic, 6 task kinds, 3 models, 2 prompt variants, 20 lessons with their
holdout trials, 90 days), then times the report: `build_report` in-process
(the function) and `python -m bot report --json` as a subprocess (the CLI,
interpreter start-up and imports included), each over the whole history
(`--since all`) and over the default 30 days; median of 5 after a warm-up.

    .venv/bin/python bench/report.py [--sessions 100000] [--runs 5] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from bot.learning.report import build_report  # noqa: E402
from bot.settings import async_database_url  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store.learning import Outcome  # noqa: E402
from bot.store.schema import lesson_trials, outcomes  # noqa: E402

REPOS = {"acme/api": 0.4, "acme/web": 0.25, "acme/mobile": 0.15, "acme/infra": 0.12, "acme/docs": 0.08}
KINDS = {"bug": 0.35, "feature": 0.3, "docs": 0.1, "test": 0.1, "refactor": 0.1, "chore": 0.05}
# model: (share, first-try rate, mean cost per round in USD)
MODELS = {"claude-opus-4": (0.2, 0.55, 1.8), "claude-sonnet-4": (0.6, 0.48, 0.6), "claude-haiku-4": (0.2, 0.35, 0.12)}
VARIANTS = {"default": 0.0, "concise": 0.06}  # lift in first-try rate
BATCH = 5000


def pick(rng: random.Random, weights: dict[str, object]) -> str:
    names = list(weights)
    shares = [w[0] if isinstance(w, tuple) else w for w in weights.values()]
    return rng.choices(names, weights=shares)[0]


def lessons_for() -> list[tuple[int, str, str | None]]:
    """20 lessons, 4 per repo: (id, repo, task kind in scope or None for every kind)."""
    scoped = [None, "bug", "feature", None]
    return [(1 + i * 4 + j, repo, scoped[j]) for i, repo in enumerate(REPOS) for j in range(4)]


def simulate(n: int, seed: int, now: datetime) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    lessons = lessons_for()
    rows, trials = [], []
    for i in range(n):
        repo, kind, model, variant = pick(rng, REPOS), pick(rng, KINDS), pick(rng, MODELS), rng.choice(list(VARIANTS))
        started = now - timedelta(days=90 * rng.random())
        in_scope = [lid for lid, r, k in lessons if r == repo and k in (None, kind)]
        carried = [lid for lid in in_scope if rng.random() >= 0.2]
        held_out = [lid for lid in in_scope if lid not in carried]
        p_first = MODELS[model][1] + VARIANTS[variant] + 0.03 * len(carried)
        first_try = rng.random() < p_first
        if first_try:
            outcome, ci, review, rebase = "merged", 0, 0, 0
        else:
            ci, review, rebase = (
                min(int(rng.expovariate(0.8)), 3),
                min(int(rng.expovariate(1.2)), 3),
                int(rng.random() < 0.15),
            )
            outcome = rng.choices(
                ["merged", "closed", "escalated", "failed", "stopped"], [0.55, 0.15, 0.12, 0.12, 0.06]
            )[0]
            if outcome == "merged" and ci + review + rebase == 0:
                ci = 1
        has_pr = outcome != "failed" or rng.random() < 0.5
        to_pr = timedelta(seconds=rng.lognormvariate(6.0, 0.6))  # minutes
        to_end = to_pr + timedelta(seconds=rng.lognormvariate(10.0, 1.2))  # hours to days
        rounds = 1 + ci + review + rebase
        cost = round(sum(rng.uniform(0.5, 1.5) * MODELS[model][2] for _ in range(rounds)), 6)
        ended = min(started + to_end, now)
        o = Outcome(
            session_id=f"bench-{i:06d}",
            repo=repo,
            installation_id=1,
            issue_number=i + 1,
            pr_number=i + 1 if has_pr else None,
            outcome=outcome,
            first_try=first_try,
            ci_rounds=ci,
            review_rounds=review,
            rebase_rounds=rebase,
            started_at=started,
            ended_at=ended,
            pr_opened_at=min(started + to_pr, ended) if has_pr else None,
            backend="claude-code",
            task_kind=kind,
            model=model,
            prompt_template="task",
            prompt_variant=variant,
            input_tokens=rounds * rng.randint(20_000, 120_000),
            output_tokens=rounds * rng.randint(2_000, 12_000),
            cost_usd=cost,
            categories=["lint"] if ci else [],
            labels=[kind],
            files=["src/app.py"],
            areas=["src"],
            lessons=carried,
            held_out=held_out,
        )
        rows.append(o.row())
        trials += [
            {
                "lesson_id": lid,
                "session_id": o.session_id,
                "carried": lid in carried,
                "success": first_try,
                "ended_at": ended,
            }
            for lid in in_scope
        ]
    return rows, trials


async def fill(url: str, rows: list[dict], trials: list[dict]) -> None:
    store = Store.connect(url)
    try:
        await store.migrate()
        for lid, repo, kind in lessons_for():
            await store.learning.upsert_lesson(
                f"bench:{lid}",
                f"Lesson {lid}: run the repo's checks before finishing",
                repo,
                evidence=[f"bench-{lid}"],
                task_kind=kind,
            )
        async with store.engine.begin() as conn:
            for table, values in ((outcomes, rows), (lesson_trials, trials)):
                for start in range(0, len(values), BATCH):
                    await conn.execute(insert(table), values[start : start + BATCH])
        if store.dialect == "postgresql":
            async with store.engine.begin() as conn:
                await conn.execute(text("ANALYZE"))  # what autovacuum does soon after a bulk load
    finally:
        await store.close()


async def time_function(url: str, since: datetime | None, runs: int) -> list[float]:
    store = Store.connect(url, pool_size=3)  # as `compound report` opens it
    try:
        await build_report(store.engine, since=since)  # warm-up
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            await build_report(store.engine, since=since)
            times.append(time.perf_counter() - started)
        return times
    finally:
        await store.close()


def time_cli(plain_url: str, since: str, runs: int, workdir: Path) -> tuple[list[float], dict]:
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    env.update(DATABASE_URL=plain_url, DATA_DIR=str(workdir / "data"), LOG_LEVEL="warning")
    command = [sys.executable, "-m", "bot", "report", "--since", since, "--json"]
    times, report = [], {}
    for i in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        if i:  # the first run warms the page cache and the bytecode
            times.append(time.perf_counter() - started)
        report = json.loads(done.stdout)
    return times, report


async def pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    now = datetime.now(UTC)
    started = time.perf_counter()
    rows, trials = simulate(args.sessions, args.seed, now)
    print(
        f"simulated {len(rows):,} outcomes and {len(trials):,} lesson trials in {time.perf_counter() - started:.1f} s"
    )
    # The 365,000 simulated rows stay in this process; the collector would walk them during every
    # timed report (the CLI holds none of them): keep them out of its generations.
    gc.collect()
    gc.freeze()
    pg_db = f"compound_bench_report_{uuid.uuid4().hex[:8]}"
    results: dict[str, object] = {
        "sessions": len(rows),
        "lesson_trials": len(trials),
        "runs": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "command": " ".join(["bench/report.py", *sys.argv[1:]]),
    }
    with tempfile.TemporaryDirectory(prefix="compound-bench-report-") as tmp:
        workdir = Path(tmp)
        targets = {"sqlite": f"sqlite:///{workdir / 'compound.db'}"}
        asyncio.run(pg_admin(args.pg_admin_url, f'CREATE DATABASE "{pg_db}"'))
        targets["postgresql"] = f"{args.pg_admin_url.rsplit('/', 1)[0]}/{pg_db}"
        try:
            for name, plain in targets.items():
                url = async_database_url(plain)
                started = time.perf_counter()
                asyncio.run(fill(url, rows, trials))
                print(f"{name}: stored in {time.perf_counter() - started:.1f} s")
                figures: dict[str, object] = {}
                for since_arg, since in (("all", None), ("30d", now - timedelta(days=30))):
                    fn = asyncio.run(time_function(url, since, args.runs))
                    cli, report = time_cli(plain, since_arg, args.runs, workdir)
                    figures[since_arg] = {
                        "sessions_in_window": report["totals"]["sessions"],
                        "function_s": statistics.median(fn),
                        "function_runs": fn,
                        "cli_s": statistics.median(cli),
                        "cli_runs": cli,
                    }
                    print(
                        f"{name} --since {since_arg}: {report['totals']['sessions']:,} sessions, "
                        f"function {statistics.median(fn) * 1000:.0f} ms, CLI {statistics.median(cli) * 1000:.0f} ms "
                        f"(median of {args.runs})"
                    )
                results[name] = figures
        finally:
            asyncio.run(pg_admin(args.pg_admin_url, f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
    # The CLI's floor: the interpreter and the imports a report needs, no query.
    floor = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import bot.__main__, bot.learning.report, bot.store"], cwd=ROOT, check=True
        )
        floor.append(time.perf_counter() - started)
    results["cli_start_s"] = statistics.median(floor)
    print(f"CLI start-up (interpreter and imports): {statistics.median(floor) * 1000:.0f} ms")
    out = ROOT / "bench" / "results" / f"report-{now:%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
