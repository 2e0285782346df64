"""`compound report`: first-try success, rounds, time and cost over a window (docs/report.md).

Every figure is aggregated in SQL: one GROUP BY per grouping over the
outcomes in the window. A group's medians come from the same query, exact:
each row is numbered within its group in the order of its duration, and the
middle row (or the mean of the two middle rows) is kept. Python only divides,
computes the intervals and formats.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, extract, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

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
GROUPS: dict[str, tuple[Any, ...]] = {
    "task_kind": (oc.c.task_kind,),
    "model": (oc.c.model,),
    "variant": (oc.c.prompt_template, oc.c.prompt_variant),
    "repo": (oc.c.repo,),
}
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


def _window(since: datetime | None, repo: str | None) -> list[ColumnElement[bool]]:
    where = []
    if since is not None:
        where.append(oc.c.ended_at >= since)
    if repo:
        where.append(oc.c.repo == repo)
    return where


def _median(value: Any, rank: Any, count: Any) -> ColumnElement[Any]:
    # The middle row of `count`, or the two middle rows when `count` is even: 2·rank ∈ [count, count + 2].
    return func.avg(case((and_(value.is_not(None), (2 * rank).between(count, count + 2)), value)))


def _grouped(dialect: str, keys: Sequence[Any], where: list[ColumnElement[bool]]) -> Any:
    """One row per group (one row in all without keys) with its sums and medians."""
    to_pr = _seconds(dialect, oc.c.pr_opened_at, oc.c.started_at)
    to_end = _seconds(dialect, oc.c.ended_at, oc.c.started_at)
    part = list(keys) or None
    rows = (
        select(
            *keys, oc.c.outcome, oc.c.first_try, oc.c.ci_rounds, oc.c.review_rounds, oc.c.rebase_rounds,
            oc.c.input_tokens, oc.c.output_tokens, oc.c.cost_usd,
            to_pr.label("to_pr"), to_end.label("to_end"),
            # Sessions without a PR are numbered apart, so the ones with one count from 1.
            func.row_number().over(partition_by=[*keys, oc.c.pr_opened_at.is_(None)], order_by=to_pr).label("pr_rank"),
            func.count(oc.c.pr_opened_at).over(partition_by=part).label("prs"),
            func.row_number().over(partition_by=part, order_by=to_end).label("end_rank"),
            func.count().over(partition_by=part).label("n"),
        )
        .where(*where)
        .subquery()
    )
    r = rows.c
    group = [r[k.name] for k in keys]
    return select(
        *group,
        func.count().label("sessions"),
        *[func.sum(case((r.outcome == name, 1), else_=0)).label(name) for name in OUTCOMES],
        func.sum(cast(r.first_try, Integer)).label("first_try"),
        func.sum(r.ci_rounds).label("ci"),
        func.sum(r.review_rounds).label("review"),
        func.sum(r.rebase_rounds).label("rebase"),
        func.sum(r.input_tokens).label("input_tokens"),
        func.sum(r.output_tokens).label("output_tokens"),
        func.sum(r.cost_usd).label("cost"),
        func.max(r.prs).label("prs"),
        _median(r.to_pr, r.pr_rank, r.prs).label("median_pr"),
        _median(r.to_end, r.end_rank, r.n).label("median_end"),
    ).group_by(*group)


def rate(successes: int, trials: int) -> tuple[float | None, list[float] | None]:
    """The rate and its 95 % credible interval; nothing without trials."""
    if not trials:
        return None, None
    return successes / trials, list(interval(successes, trials))


def _figures(row: Any) -> dict[str, Any]:
    n = int(row.sessions or 0)
    first_try = int(row.first_try or 0)
    ci, review, rebase = int(row.ci or 0), int(row.review or 0), int(row.rebase or 0)
    cost = round(float(row.cost or 0.0), 6)
    first_try_rate, first_try_interval = rate(first_try, n)

    def mean(total: float) -> float | None:
        return total / n if n else None

    return {
        "sessions": n,
        "outcomes": {name: int(getattr(row, name) or 0) for name in OUTCOMES},
        "first_try": first_try,
        "first_try_rate": first_try_rate,
        "first_try_interval": first_try_interval,
        "mean_ci_rounds": mean(ci),
        "mean_review_rounds": mean(review),
        "mean_rebase_rounds": mean(rebase),
        "mean_rounds": mean(ci + review + rebase),
        "with_pr": int(row.prs or 0),
        "median_time_to_pr_s": None if row.median_pr is None else round(float(row.median_pr), 3),
        "median_time_to_resolution_s": None if row.median_end is None else round(float(row.median_end), 3),
        "cost_usd": cost,
        "mean_cost_usd": round(cost / n, 6) if n else None,
        "input_tokens": int(row.input_tokens or 0),
        "output_tokens": int(row.output_tokens or 0),
    }


def _key(name: str, row: Any) -> str | None:
    if name == "variant":
        template, variant = row.prompt_template, row.prompt_variant
        return f"{template}.{variant}" if template and variant else (template or variant)
    return getattr(row, name)


def _order(entry: dict[str, Any]) -> tuple[int, bool, str]:
    return -entry["sessions"], entry["key"] is None, entry["key"] or ""


async def _lessons(conn: Any, since: datetime | None, repo: str | None) -> list[dict[str, Any]]:
    stmt = select(
        lt.c.lesson_id, lt.c.carried, func.sum(cast(lt.c.success, Integer)), func.count()
    ).group_by(lt.c.lesson_id, lt.c.carried)
    if since is not None:
        stmt = stmt.where(lt.c.ended_at >= since)
    if repo:  # a lesson belongs to one repo and is only tried on its sessions
        stmt = stmt.where(lt.c.lesson_id.in_(select(ls.c.id).where(ls.c.repo == repo)))
    arms: dict[int, dict[bool, tuple[int, int]]] = {}
    for lesson_id, carried, s, n in (await conn.execute(stmt)).all():
        arms.setdefault(lesson_id, {})[bool(carried)] = (int(s or 0), int(n))
    found = {
        row.id: Lesson.from_row(row)
        for row in (await conn.execute(select(ls).where(ls.c.id.in_(list(arms))))).all()
    } if arms else {}
    out = []
    for lesson_id in sorted(arms):
        (ws, wn), (hs, hn) = arms[lesson_id].get(True, (0, 0)), arms[lesson_id].get(False, (0, 0))
        lesson = found.get(lesson_id)
        with_rate, with_interval = rate(ws, wn)
        holdout_rate, holdout_interval = rate(hs, hn)
        out.append({
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
        })
    return out


async def build_report(
    engine: AsyncEngine, *, since: datetime | None, repo: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The report over the outcomes that ended in [since, now], as `--json` prints it."""
    now = now or datetime.now(UTC)
    dialect = engine.dialect.name
    where = _window(since, repo)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "window": {"since": since.isoformat() if since else None, "until": now.isoformat(), "repo": repo},
    }
    async with engine.connect() as conn:
        report["totals"] = _figures((await conn.execute(_grouped(dialect, (), where))).one())
        for name, keys in GROUPS.items():
            rows = (await conn.execute(_grouped(dialect, keys, where))).all()
            report[f"by_{name}"] = sorted(({"key": _key(name, row), **_figures(row)} for row in rows), key=_order)
        report["lessons"] = await _lessons(conn, since, repo)
    report["spiralled"] = [
        {k: v[k] for k in ("key", "sessions", "mean_rounds", "mean_ci_rounds", "mean_review_rounds",
                           "mean_rebase_rounds", "first_try_rate")}
        for v in sorted(report["by_variant"], key=lambda v: (-v["mean_rounds"], v["key"] or ""))
    ]
    return report


# -- the table on stdout ----------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _span(bounds: list[float] | None) -> str:
    return "-" if bounds is None else f"{100 * bounds[0]:.0f}–{100 * bounds[1]:.0f} %"


def _mean(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{seconds:.0f}s" if seconds < 60 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        # Names and text to the left, figures to the right.
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


_FIGURES = ("", "sessions", "merged", "first try", "95 % interval", "CI", "review", "rebase",
            "to PR", "resolved", "cost $", "$/session", "tokens in/out")


def _figure_row(key: str, f: dict[str, Any]) -> list[str]:
    return [
        key, str(f["sessions"]), str(f["outcomes"]["merged"]), _pct(f["first_try_rate"]), _span(f["first_try_interval"]),
        _mean(f["mean_ci_rounds"]), _mean(f["mean_review_rounds"]), _mean(f["mean_rebase_rounds"]),
        _duration(f["median_time_to_pr_s"]), _duration(f["median_time_to_resolution_s"]),
        f"{f['cost_usd']:.2f}", "-" if f["mean_cost_usd"] is None else f"{f['mean_cost_usd']:.2f}",
        f"{f['input_tokens']:,}/{f['output_tokens']:,}",
    ]


def _arm(trials: int, successes: int, bounds: list[float] | None) -> str:
    return "-" if not trials else f"{successes}/{trials} {_pct(successes / trials)} ({_span(bounds)})"


def render(report: dict[str, Any]) -> str:
    """The report as tables for a terminal."""
    window = report["window"]
    until = window["until"][:16].replace("T", " ")
    span = f"{window['since'][:16].replace('T', ' ')} – {until}" if window["since"] else f"up to {until}"
    out = [f"Compound report: sessions ended {span} UTC, {window['repo'] or 'all repos'}", ""]
    totals = report["totals"]
    ended = ", ".join(f"{n} {name}" for name, n in totals["outcomes"].items() if n)
    out.append(f"{totals['sessions']} sessions ({ended or 'none'}).")
    out.append("Rounds are means per session; to PR and resolved are medians; the interval is of the first-try rate.")
    titles = {"task_kind": "By task kind", "model": "By model", "variant": "By prompt variant", "repo": "By repo"}
    out += ["", *_table(_FIGURES, [_figure_row("all", totals)])]
    for name, title in titles.items():
        entries = report[f"by_{name}"]
        if entries:
            out += ["", title, *_table(_FIGURES, [_figure_row(e["key"] or "-", e) for e in entries])]
    if report["spiralled"]:
        out += ["", "Which prompts spiralled (most rounds per session first)", *_table(
            ("variant", "sessions", "rounds", "CI", "review", "rebase", "first try"),
            [[v["key"] or "-", str(v["sessions"]), _mean(v["mean_rounds"]), _mean(v["mean_ci_rounds"]),
              _mean(v["mean_review_rounds"]), _mean(v["mean_rebase_rounds"]), _pct(v["first_try_rate"])]
             for v in report["spiralled"]],
        )]
    if report["lessons"]:
        out += ["", "Lessons: first try with the lesson and held out of it", *_table(
            ("id", "status", "with", "held out", "P(with > held out)", "lesson"),
            [[str(x["id"]), (x["status"] or "gone") + (" pinned" if x["pinned"] else ""),
              _arm(x["with_trials"], x["with_first_try"], x["with_interval"]),
              _arm(x["holdout_trials"], x["holdout_first_try"], x["holdout_interval"]),
              "-" if x["p_with_better"] is None else f"{x['p_with_better']:.2f}",
              _clip(x["text"] or "", 60)]
             for x in report["lessons"]],
            left=(0, 1, 5),
        )]
    return "\n".join(out) + "\n"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
