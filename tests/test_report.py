"""`compound report` and `compound events export` against real SQLite and PostgreSQL.

Every figure the report prints is computed again here, by hand, from the
same outcomes the test stored, and the two must be equal.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.events import EventLog
from bot.learning.report import BUCKET_WIDTH, build_report, median, parse_since
from bot.learning.report_table import render
from bot.learning.stats import interval, prob_greater
from bot.store.events import stream_events
from bot.store.learning import Outcome
from tests.service_process import COMPOUND, base_env

NOW = datetime.now(UTC).replace(microsecond=0)
OUTCOMES = ("merged", "closed", "escalated", "failed", "stopped")


def outcomes(lesson_a: int, lesson_b: int) -> list[Outcome]:
    """A known set: 3 kinds, 2 models and none, 2 variants, 2 repos, lessons carried and held out,
    one session without a PR, one that ended before the default 30-day window.

    Each session's durations are 1.3× the last one's (and PR times a
    different order of the same ladder), so no two share a 10 % bucket and
    every median is exact.
    """
    specs = [
        # repo, kind, model, variant, outcome, first_try, ci, review, rebase, cost, lessons, held_out, pr
        ("o/a", "bug", "opus", "default", "merged", True, 0, 0, 0, 0.5, [lesson_a], [lesson_b], True),
        ("o/a", "bug", "opus", "default", "merged", False, 2, 0, 0, 1.25, [lesson_a, lesson_b], [], True),
        ("o/a", "bug", "haiku", "concise", "failed", False, 0, 0, 0, 0.125, [], [lesson_a], False),
        ("o/a", "feature", "haiku", "concise", "merged", True, 0, 0, 0, 0.25, [lesson_a], [], True),
        ("o/a", "feature", "opus", "concise", "escalated", False, 3, 1, 0, 2.0, [lesson_b], [lesson_a], True),
        ("o/a", "feature", None, "default", "closed", False, 1, 0, 1, 0.75, [], [lesson_b], True),
        ("o/b", "bug", "haiku", "default", "merged", False, 0, 2, 1, 1.5, [], [], True),
        ("o/b", "docs", "haiku", "concise", "merged", True, 0, 0, 0, 0.0625, [], [], True),
        ("o/b", "docs", "opus", "default", "stopped", False, 0, 0, 0, 0.375, [], [], True),
        ("o/b", "bug", "opus", "concise", "merged", False, 1, 1, 0, 1.0, [], [], True),
        ("o/a", "bug", "opus", "default", "merged", True, 0, 0, 0, 0.5, [lesson_a], [], True),
    ]
    pr_order = [4, 9, 0, 2, 7, 5, 10, 1, 8, 3, 6]
    made = []
    for i, (repo, kind, model, variant, outcome, first, ci, review, rebase, cost, carried, held, pr) in enumerate(
        specs
    ):
        to_end = timedelta(seconds=round(3600 * 1.3**i))
        started = NOW - timedelta(days=i + 1) - to_end
        made.append(
            Outcome(
                session_id=f"s-{i:02d}",
                repo=repo,
                installation_id=7,
                issue_number=100 + i,
                pr_number=200 + i if pr else None,
                outcome=outcome,
                first_try=first,
                ci_rounds=ci,
                review_rounds=review,
                rebase_rounds=rebase,
                started_at=started,
                ended_at=started + to_end,
                pr_opened_at=started + timedelta(seconds=round(60 * 1.3 ** pr_order[i])) if pr else None,
                backend="command",
                task_kind=kind,
                model=model,
                prompt_template="task",
                prompt_variant=variant,
                input_tokens=1000 * (i + 1),
                output_tokens=100 * (i + 1),
                cost_usd=cost,
                categories=["lint"] if ci else [],
                labels=[kind],
                lessons=carried,
                held_out=held,
            )
        )
    # Outside the default window (ended 40 days ago), in o/a.
    old = NOW - timedelta(days=40)
    made.append(
        Outcome(
            session_id="s-old",
            repo="o/a",
            installation_id=7,
            issue_number=99,
            pr_number=199,
            outcome="merged",
            first_try=True,
            ci_rounds=0,
            review_rounds=0,
            rebase_rounds=0,
            started_at=old - timedelta(hours=2),
            ended_at=old,
            pr_opened_at=old - timedelta(hours=1),
            backend="command",
            task_kind="bug",
            model="opus",
            prompt_template="task",
            prompt_variant="default",
            cost_usd=4.0,
            lessons=[lesson_a],
        )
    )
    return made


# -- the figures by hand ------------------------------------------------------------


def figures(rows: list[Outcome]) -> dict:
    n = len(rows)
    first = sum(o.first_try for o in rows)
    ci, review, rebase = (sum(getattr(o, f"{k}_rounds") for o in rows) for k in ("ci", "review", "rebase"))
    to_pr = [o.time_to_pr for o in rows if o.time_to_pr is not None]
    cost = round(sum(o.cost_usd for o in rows), 6)
    return {
        "sessions": n,
        "outcomes": {name: sum(o.outcome == name for o in rows) for name in OUTCOMES},
        "first_try": first,
        "first_try_rate": first / n,
        "first_try_interval": list(interval(first, n)),
        "mean_ci_rounds": ci / n,
        "mean_review_rounds": review / n,
        "mean_rebase_rounds": rebase / n,
        "mean_rounds": (ci + review + rebase) / n,
        "with_pr": len(to_pr),
        "median_time_to_pr_s": statistics.median(to_pr) if to_pr else None,
        "median_time_to_resolution_s": statistics.median(o.time_to_resolution for o in rows),
        "cost_usd": cost,
        "mean_cost_usd": round(cost / n, 6),
        "input_tokens": sum(o.input_tokens for o in rows),
        "output_tokens": sum(o.output_tokens for o in rows),
    }


def grouped(rows: list[Outcome], key) -> list[dict]:
    keys = {key(o) for o in rows}
    entries = [{"key": k, **figures([o for o in rows if key(o) == k])} for k in keys]
    return sorted(entries, key=lambda e: (-e["sessions"], e["key"] is None, e["key"] or ""))


def lesson_entry(rows: list[Outcome], lesson_id: int, text: str) -> dict:
    with_ = [o.first_try for o in rows if lesson_id in o.lessons]
    held = [o.first_try for o in rows if lesson_id in o.held_out]
    return {
        "id": lesson_id,
        "text": text,
        "status": "active",
        "pinned": False,
        "repo": "o/a",
        "scope": "o/a",
        "with_trials": len(with_),
        "with_first_try": sum(with_),
        "with_rate": sum(with_) / len(with_),
        "with_interval": list(interval(sum(with_), len(with_))),
        "holdout_trials": len(held),
        "holdout_first_try": sum(held),
        "holdout_rate": sum(held) / len(held),
        "holdout_interval": list(interval(sum(held), len(held))),
        "p_with_better": prob_greater(sum(with_), len(with_), sum(held), len(held)),
    }


def by_hand(rows: list[Outcome], lessons: dict[int, str]) -> dict:
    variants = grouped(rows, lambda o: f"{o.prompt_template}.{o.prompt_variant}")
    return {
        "totals": figures(rows),
        "by_task_kind": grouped(rows, lambda o: o.task_kind),
        "by_model": grouped(rows, lambda o: o.model),
        "by_variant": variants,
        "by_repo": grouped(rows, lambda o: o.repo),
        "lessons": [lesson_entry(rows, i, text) for i, text in sorted(lessons.items())],
        "spiralled": [
            {
                k: v[k]
                for k in (
                    "key",
                    "sessions",
                    "mean_rounds",
                    "mean_ci_rounds",
                    "mean_review_rounds",
                    "mean_rebase_rounds",
                    "first_try_rate",
                )
            }
            for v in sorted(variants, key=lambda v: (-v["mean_rounds"], v["key"]))
        ],
    }


def rounded(report: dict) -> dict:
    """The report's medians are to the millisecond (SQLite reads times to it): so are the hand's."""

    def fix(f: dict) -> dict:
        for name in ("median_time_to_pr_s", "median_time_to_resolution_s"):
            if f.get(name) is not None:
                f[name] = round(f[name], 3)
        return f

    fix(report["totals"])
    for name in ("by_task_kind", "by_model", "by_variant", "by_repo"):
        for entry in report[name]:
            fix(entry)
    return report


@pytest.fixture
async def known(store):
    a, _ = await store.learning.upsert_lesson("t:a", "Run `ruff check .` before finishing", "o/a", evidence=["x"])
    b, _ = await store.learning.upsert_lesson("t:b", "Update the changelog", "o/a", evidence=["y"])
    rows = outcomes(a.id, b.id)
    for o in rows:
        await store.learning.save_outcome(o)
    return rows, {a.id: a.text, b.id: b.text}


async def test_every_figure_equals_the_one_computed_by_hand(store, known):
    rows, lessons = known
    since = parse_since("30d", NOW)
    report = await build_report(store.engine, since=since, now=NOW)
    expected = rounded(by_hand([o for o in rows if o.ended_at >= since], lessons))
    assert report["version"] == 1
    assert report["window"] == {"since": since.isoformat(), "until": NOW.isoformat(), "repo": None}
    for name, value in expected.items():
        assert report[name] == value, name
    assert list(report) == ["version", "window", *expected]
    # The old session counts once the window reaches it; its lesson trial too.
    everything = await build_report(store.engine, since=None, now=NOW)
    for name, value in rounded(by_hand(rows, lessons)).items():
        assert everything[name] == value, name


async def test_repo_narrows_every_figure(store, known):
    rows, lessons = known
    report = await build_report(store.engine, since=None, repo="o/b", now=NOW)
    mine = [o for o in rows if o.repo == "o/b"]
    expected = rounded(by_hand(mine, {}))  # the lessons are o/a's
    for name, value in expected.items():
        assert report[name] == value, name
    assert report["window"]["repo"] == "o/b"


async def test_an_empty_window(store):
    report = await build_report(store.engine, since=NOW - timedelta(hours=1), now=NOW)
    assert report["totals"]["sessions"] == 0
    assert report["totals"]["first_try_rate"] is None and report["totals"]["median_time_to_pr_s"] is None
    assert report["by_task_kind"] == [] and report["lessons"] == [] and report["spiralled"] == []
    assert "0 sessions" in render(report)


def run(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMPOUND, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


async def test_json_through_the_cli_equals_the_figures(store, known, database_url, tmp_path):
    rows, lessons = known
    env = base_env(DATABASE_URL=database_url, DATA_DIR=tmp_path / "data")
    done = run("report", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    since = datetime.fromisoformat(printed["window"]["since"])
    assert abs(since - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=1)
    expected = rounded(by_hand([o for o in rows if o.ended_at >= since], lessons))
    for name, value in expected.items():
        assert printed[name] == value, name

    text = run("report", "--since", "all", "--repo", "o/a", env=env, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "o/a" in text.stdout and "By task kind" in text.stdout and "Run `ruff check .`" in text.stdout
    assert "o/b" not in text.stdout


@pytest.mark.parametrize("command", [["report"], ["events"], ["events", "export"]], ids=" ".join)
def test_help(command, tmp_path):
    done = run(*command, "--help", env=base_env(), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("usage: compound")


@pytest.mark.parametrize("since", ["yesterday", "30x", "2099-01-01", ""])
@pytest.mark.parametrize("command", [["report"], ["events", "export"]], ids=" ".join)
def test_a_bad_since_is_a_clear_error(command, since, tmp_path):
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}", DATA_DIR=tmp_path / "data")
    done = run(*command, "--since", since, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("compound: --since: ") and done.stdout == ""


def test_since():
    assert parse_since("30d", NOW) == NOW - timedelta(days=30)
    assert parse_since("6h", NOW) == NOW - timedelta(hours=6)
    assert parse_since("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2w", NOW) == NOW - timedelta(weeks=2)
    assert parse_since("all", NOW) is None
    assert parse_since("2026-11-01", datetime(2026, 12, 1, tzinfo=UTC)) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T12:00+02:00", datetime(2026, 12, 1, tzinfo=UTC)) == datetime(
        2026, 11, 1, 10, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="not a duration"):
        parse_since("last week", NOW)


def test_a_median_in_a_crowded_bucket_is_interpolated_within_it():
    # Exact at a bucket's ends and when it holds one value; by rank in between.
    assert median({3: [1, 10.0, 10.0]}) == 10.0
    assert median({3: [2, 10.0, 10.5], 9: [1, 40.0, 40.0]}) == 10.5
    assert median({3: [2, 10.0, 10.5], 9: [2, 40.0, 41.0]}) == (10.5 + 40.0) / 2
    assert median({3: [5, 10.0, 10.8]}) == pytest.approx(10.4)
    values = [100 * BUCKET_WIDTH ** (i / 7) for i in range(15)]  # 15 values, two or three buckets
    buckets: dict[int, list] = {}
    for v in values:
        b = math.floor(math.log(v) / math.log(BUCKET_WIDTH))
        seen = buckets.setdefault(b, [0, v, v])
        seen[0] += 1
        seen[1], seen[2] = min(seen[1], v), max(seen[2], v)
    exact = statistics.median(values)
    assert abs(median(buckets) - exact) / exact < BUCKET_WIDTH - 1
    assert median({}) is None


# -- events export --------------------------------------------------------------------


async def test_events_export_round_trips_what_the_event_log_wrote(store, database_url, tmp_path):
    log = EventLog(tmp_path / "data" / "events.jsonl", store.sessions)
    sessions = []
    for issue in (1, 2):
        created = await store.sessions.create(
            repo="o/a",
            installation_id=7,
            issue_number=issue,
            issue_title="Fix it",
            branch=f"agent/{issue}",
            backend="command",
            model="opus",
            triggered_by="octocat",
            config={},
        )
        assert created is not None
        session, round_ = created
        sessions.append(session)
        await log.record(session, "session.created", round_, trigger="octocat", labels=["agent"])
        await log.record(session, "round.started", round_, attempt=1, trigger={"event": "label"}, categories=None)
        await log.record(session, "session.outcome", outcome="merged", first_try=True, lessons=[1, 2])
    written = [json.loads(line) for line in (tmp_path / "data" / "events.jsonl").read_text().splitlines()]
    assert len(written) == 6

    def same(exported: list[dict], expected: list[dict]) -> None:
        assert len(exported) == len(expected)
        for got, want in zip(exported, expected, strict=True):
            assert list(got) == list(want)  # the same keys in the same order
            assert {k: v for k, v in got.items() if k != "ts"} == {k: v for k, v in want.items() if k != "ts"}
            gap = datetime.fromisoformat(got["ts"]) - datetime.fromisoformat(want["ts"])
            assert abs(gap) < timedelta(seconds=1)  # the row's own time, a moment apart from the line's

    env = base_env(DATABASE_URL=database_url, DATA_DIR=tmp_path / "data")
    done = run("events", "export", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    same([json.loads(line) for line in done.stdout.splitlines()], written)

    one = run(
        "events",
        "export",
        "--session",
        sessions[1].id,
        "--type",
        "session.outcome",
        "--type",
        "session.created",
        "--since",
        "1h",
        env=env,
        cwd=tmp_path,
    )
    assert one.returncode == 0, one.stderr
    same(
        [json.loads(line) for line in one.stdout.splitlines()],
        [w for w in written if w["session"] == sessions[1].id and w["type"] != "round.started"],
    )
    later = run(
        "events",
        "export",
        "--since",
        (datetime.now(UTC) + timedelta(seconds=-0.001)).isoformat(),
        env=env,
        cwd=tmp_path,
    )
    assert later.returncode == 0 and later.stdout == ""

    # A page at a time: two rows a page gives the same lines.
    same([line async for line in stream_events(store.engine, page=2)], written)


def test_the_report_command_imports_only_what_it_needs():
    # What `compound report` loads before its query: the parser (every command's) and the report's modules.
    probe = (
        "import sys, bot.__main__ as m\n"
        "m.build_parser().parse_args(['report', '--json'])\n"
        "import bot.learning.report, bot.learning.report_table, bot.store\n"
        "heavy = ['bot.learning.loop', 'bot.config', 'yaml', 'pathspec', 'bot.github', 'aiohttp',\n"
        "         'gidgethub', 'alembic']\n"
        "print(' '.join(name for name in heavy if name in sys.modules))\n"
        "import bot; print('version read' if '__version__' in vars(bot) else '')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent
    )
    assert done.stdout.strip() == ""
