"""`compound report`: first-try success, rounds, time and cost over a window (docs/report.md).

The figures are aggregated in SQL, in two GROUP BY queries over the outcomes
in the window, each grouped by every combination of task kind, model,
prompt variant and repo (a few hundred rows at most) and by a duration
bucket; Python adds those rows up into the totals and each grouping. A sort
per grouping and duration would cost SQLite about 0.1 s each at 100,000
sessions; two sorts keep the report under a second.

Medians come from the buckets (10 % wide, log-spaced) with the smallest and
largest duration in each: the middle session's bucket is found by counting,
and its duration is exact when it is alone in its bucket or at one of its
ends (always so in a small window), else interpolated by rank between the
bucket's smallest and largest, so off by less than the bucket's spread.
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Float, Integer, case, cast, extract, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from bot.learning.stats import interval, prob_greater
from bot.store.learning import Lesson
from bot.store.schema import lesson_trials as lt
from bot.store.schema import lessons as ls
from bot.store.schema import outcomes as oc

# The version of the `--json` shape (docs/report.md); bumped on any change
# that is not adding a key.
REPORT_VERSION = 1
DEFAULT_SINCE = "30d"
OUTCOMES = ("merged", "closed", "escalated", "failed", "stopped")
KEYS = ("task_kind", "model", "prompt_template", "prompt_variant", "repo")
GROUPS: dict[str, tuple[str, ...]] = {
    "task_kind": ("task_kind",),
    "model": ("model",),
    "variant": ("prompt_template", "prompt_variant"),
    "repo": ("repo",),
}
# Duration buckets: a bucket per 10 % (log-spaced), so a median is within 10 % when it is
# estimated (and much closer, interpolated by rank, when its bucket holds many sessions).
BUCKET_WIDTH = 1.1
_SUMS = ("sessions", *OUTCOMES, "first_try", "ci", "review", "rebase", "input_tokens", "output_tokens", "cost", "prs")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime | None:
    """The start of the window: `30d`, `6h`, `90m`, `2w` back from now; a date
    (`2026-11-01`) or an ISO time (UTC unless it says otherwise); `all`: None."""
    value = text.strip()
    if value == "all":
        return None
    if m := re.fullmatch(r"(\d+)([mhdw])", value):
        return now - timedelta(**{_UNITS[m[2]]: int(m[1])})
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration (30d, 6h, 90m, 2w), a date (2026-11-01), an ISO time or `all`"
        ) from None
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    if start > now:
        raise ValueError(f"{text!r} is in the future")
    return start


def _seconds(dialect: str, later: Any, earlier: Any) -> ColumnElement[float]:
    if dialect == "postgresql":
        return cast(extract("epoch", later - earlier), Float)
    # SQLite keeps times as text; julianday() reads them to the millisecond.
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _bucket(dialect: str, seconds: ColumnElement[float]) -> ColumnElement[int]:
    """A bucket number that never decreases with the duration (which is all the medians need).

    The constants are written into the SQL, not bound: PostgreSQL only sees
    the GROUP BY expression as the selected one when they are the same text.
    """
    floor: ColumnClause[float] = literal_column("0.001")
    scale: ColumnClause[float] = literal_column(repr(1 / math.log(BUCKET_WIDTH)))
    at_least = func.greatest(seconds, floor) if dialect == "postgresql" else func.max(seconds, floor)
    return cast(func.floor(func.ln(at_least) * scale), Integer)


def _window(since: datetime | None, until: datetime | None, repo: str | None) -> list[ColumnElement[bool]]:
    where = []
    if since is not None:
        where.append(oc.c.ended_at >= since)
    if until is not None:
        where.append(oc.c.ended_at < until)
    if repo:
        where.append(oc.c.repo == repo)
    return where


def _queries(dialect: str, where: list[ColumnElement[bool]]) -> tuple[Any, Any]:
    """Per combination and bucket of time to resolution: the sums and the bucket's ends;
    per combination and bucket of time to PR: the count and the bucket's ends."""
    keys = [oc.c[k] for k in KEYS]
    to_end = _seconds(dialect, oc.c.ended_at, oc.c.started_at)
    to_pr = _seconds(dialect, oc.c.pr_opened_at, oc.c.started_at)
    end_bucket, pr_bucket = _bucket(dialect, to_end), _bucket(dialect, to_pr)
    ends = (
        select(
            *keys,
            end_bucket.label("bucket"),
            func.count().label("sessions"),
            *[func.sum(case((oc.c.outcome == name, 1), else_=0)).label(name) for name in OUTCOMES],
            func.sum(cast(oc.c.first_try, Integer)).label("first_try"),
            func.sum(oc.c.ci_rounds).label("ci"),
            func.sum(oc.c.review_rounds).label("review"),
            func.sum(oc.c.rebase_rounds).label("rebase"),
            # PostgreSQL sums BIGINTs as NUMERIC, which would reach Python as Decimals.
            cast(func.sum(oc.c.input_tokens), BigInteger).label("input_tokens"),
            cast(func.sum(oc.c.output_tokens), BigInteger).label("output_tokens"),
            func.sum(oc.c.cost_usd).label("cost"),
            func.count(oc.c.pr_opened_at).label("prs"),
            func.min(to_end).label("low"),
            func.max(to_end).label("high"),
        )
        .where(*where)
        .group_by(*keys, end_bucket)
    )
    prs = (
        select(
            *keys,
            pr_bucket.label("bucket"),
            func.count().label("sessions"),
            func.min(to_pr).label("low"),
            func.max(to_pr).label("high"),
        )
        .where(*where, oc.c.pr_opened_at.is_not(None))
        .group_by(*keys, pr_bucket)
    )
    return ends, prs


class _Group:
    """One group's figures as the rows add up: the sums, and a histogram per duration."""

    __slots__ = ("sums", "ends", "prs")

    def __init__(self) -> None:
        self.sums = dict.fromkeys(_SUMS, 0)
        self.ends: dict[int, list[Any]] = {}
        self.prs: dict[int, list[Any]] = {}


def _add(histogram: dict[int, list[Any]], bucket: int, count: int, low: float, high: float) -> None:
    seen = histogram.get(bucket)
    if seen is None:
        histogram[bucket] = [count, low, high]
    else:
        seen[0] += count
        seen[1] = min(seen[1], low)
        seen[2] = max(seen[2], high)


def _merge(into: dict[int, list[Any]], histogram: dict[int, list[Any]]) -> None:
    for bucket, (count, low, high) in histogram.items():
        seen = into.get(bucket)
        if seen is None:
            into[bucket] = [count, low, high]
        else:
            seen[0] += count
            if low < seen[1]:
                seen[1] = low
            if high > seen[2]:
                seen[2] = high


def median(histogram: dict[int, list[Any]]) -> float | None:
    """The median from buckets of [count, smallest, largest] (see the module's docstring)."""
    n = sum(c for c, _, _ in histogram.values())
    if not n:
        return None
    ranks = (n // 2 + 1,) if n % 2 else (n // 2, n // 2 + 1)
    values: list[float] = []
    for rank in ranks:
        before = 0
        for bucket in sorted(histogram):
            count, low, high = histogram[bucket]
            if before + count >= rank:
                j = rank - before  # 1 … count within the bucket
                values.append(
                    low if j == 1 or count == 1 else high if j == count else low + (high - low) * (j - 1) / (count - 1)
                )
                break
            before += count
    return sum(values) / len(values)


def _key(name: str, combo: tuple[Any, ...]) -> str | None:
    values: dict[str, str | None] = dict(zip(KEYS, combo, strict=True))
    if name == "variant":
        template, variant = values["prompt_template"], values["prompt_variant"]
        return f"{template}.{variant}" if template and variant else (template or variant)
    return values[name]


def rate(successes: int, trials: int) -> tuple[float | None, list[float] | None]:
    """The rate and its 95 % credible interval; nothing without trials."""
    if not trials:
        return None, None
    return successes / trials, list(interval(successes, trials))


def _figures(group: _Group) -> dict[str, Any]:
    sums = group.sums
    n = sums["sessions"]
    ci, review, rebase = sums["ci"], sums["review"], sums["rebase"]
    cost = round(sums["cost"], 6)
    first_try_rate, first_try_interval = rate(sums["first_try"], n)
    to_pr, to_end = median(group.prs), median(group.ends)

    def mean(total: float) -> float | None:
        return total / n if n else None

    return {
        "sessions": n,
        "outcomes": {name: sums[name] for name in OUTCOMES},
        "first_try": sums["first_try"],
        "first_try_rate": first_try_rate,
        "first_try_interval": first_try_interval,
        "mean_ci_rounds": mean(ci),
        "mean_review_rounds": mean(review),
        "mean_rebase_rounds": mean(rebase),
        "mean_rounds": mean(ci + review + rebase),
        "with_pr": sums["prs"],
        "median_time_to_pr_s": None if to_pr is None else round(to_pr, 3),
        "median_time_to_resolution_s": None if to_end is None else round(to_end, 3),
        "cost_usd": cost,
        "mean_cost_usd": round(cost / n, 6) if n else None,
        "input_tokens": sums["input_tokens"],
        "output_tokens": sums["output_tokens"],
    }


def _order(entry: dict[str, Any]) -> tuple[int, bool, str]:
    return -entry["sessions"], entry["key"] is None, entry["key"] or ""


async def _fetch(engine: AsyncEngine, stmt: Any) -> list[Any]:
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Room to hash the groups: a sort of 100,000 rows on five text keys spills to disk at the 4 MB default.
            await conn.execute(text("SET LOCAL work_mem = '64MB'"))
        return list((await conn.execute(stmt)).all())


async def _lessons(
    engine: AsyncEngine, since: datetime | None, until: datetime | None, repo: str | None
) -> list[dict[str, Any]]:
    carried, success = cast(lt.c.carried, Integer), cast(lt.c.success, Integer)
    stmt = select(
        lt.c.lesson_id,
        func.count(),
        func.sum(carried),
        func.sum(success),
        func.sum(carried * success),
    ).group_by(lt.c.lesson_id)
    if since is not None:
        stmt = stmt.where(lt.c.ended_at >= since)
    if until is not None:
        stmt = stmt.where(lt.c.ended_at < until)
    if repo:  # a lesson belongs to one repo and is only tried on its sessions
        stmt = stmt.where(lt.c.lesson_id.in_(select(ls.c.id).where(ls.c.repo == repo)))
    arms: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
    for lesson_id, n, wn, s, ws in await _fetch(engine, stmt):
        n, wn, s, ws = int(n), int(wn or 0), int(s or 0), int(ws or 0)
        arms[lesson_id] = (ws, wn), (s - ws, n - wn)  # (first tries, trials) with it and held out
    found = (
        {row.id: Lesson.from_row(row) for row in await _fetch(engine, select(ls).where(ls.c.id.in_(list(arms))))}
        if arms
        else {}
    )
    out = []
    for lesson_id in sorted(arms):
        (ws, wn), (hs, hn) = arms[lesson_id]
        lesson = found.get(lesson_id)
        with_rate, with_interval = rate(ws, wn)
        holdout_rate, holdout_interval = rate(hs, hn)
        out.append(
            {
                "id": lesson_id,
                "text": lesson.text if lesson else None,
                "status": lesson.status if lesson else None,
                "pinned": lesson.pinned if lesson else None,
                "repo": lesson.repo if lesson else None,
                "scope": lesson.scope if lesson else None,
                "with_trials": wn,
                "with_first_try": ws,
                "with_rate": with_rate,
                "with_interval": with_interval,
                "holdout_trials": hn,
                "holdout_first_try": hs,
                "holdout_rate": holdout_rate,
                "holdout_interval": holdout_interval,
                "p_with_better": prob_greater(ws, wn, hs, hn) if wn and hn else None,
            }
        )
    return out


async def build_report(
    engine: AsyncEngine,
    *,
    since: datetime | None,
    repo: str | None = None,
    now: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The report over the outcomes that ended in [since, now], as `--json` prints it.

    With `until` (the periodic digest's closed period) only those that ended
    before it, and the window ends there.
    """
    now = until or now or datetime.now(UTC)
    dialect = engine.dialect.name
    where = _window(since, until, repo)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "window": {"since": since.isoformat() if since else None, "until": now.isoformat(), "repo": repo},
    }
    ends, prs = _queries(dialect, where)
    groups: dict[str, dict[str | None, _Group]] = {name: {} for name in ("totals", *GROUPS)}
    combos: dict[tuple[Any, ...], _Group] = {}
    # The three queries at once, each on its own connection (when the pool has three: the
    # CLI's does; SQLite runs each in its own thread, outside the GIL while it sorts).
    end_rows, pr_rows, report["lessons"] = await asyncio.gather(
        _fetch(engine, ends),
        _fetch(engine, prs),
        _lessons(engine, since, until, repo),
    )
    # Each combination's rows first, then the combinations into each grouping.
    width = len(KEYS)
    for row in end_rows:
        combo = tuple(row[:width])
        group = combos.get(combo) or combos.setdefault(combo, _Group())
        sums = group.sums
        for name, value in zip(_SUMS, row[width + 1 :], strict=False):
            sums[name] += value or 0
        _add(group.ends, row[width], row.sessions, row.low, row.high)
    for row in pr_rows:
        combo = tuple(row[:width])
        group = combos.get(combo) or combos.setdefault(combo, _Group())
        _add(group.prs, row[width], row.sessions, row.low, row.high)
    groups["totals"][None] = _Group()
    for combo, part in combos.items():
        for name in groups:
            key = None if name == "totals" else _key(name, combo)
            group = groups[name].get(key) or groups[name].setdefault(key, _Group())
            for field, value in part.sums.items():
                group.sums[field] += value
            _merge(group.ends, part.ends)
            _merge(group.prs, part.prs)
    report["totals"] = _figures(groups["totals"][None])
    for name in GROUPS:
        report[f"by_{name}"] = sorted(
            ({"key": key, **_figures(group)} for key, group in groups[name].items()), key=_order
        )
    report["lessons"] = report.pop("lessons")
    report["spiralled"] = [
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
        for v in sorted(report["by_variant"], key=lambda v: (-v["mean_rounds"], v["key"] or ""))
    ]
    return report
