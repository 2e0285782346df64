"""`compound report` as tables for a terminal (the figures: bot/learning/report.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
            str(c).ljust(w) if i in left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


_FIGURES = (
    "",
    "sessions",
    "merged",
    "first try",
    "95 % interval",
    "CI",
    "review",
    "rebase",
    "to PR",
    "resolved",
    "cost $",
    "$/session",
    "tokens in/out",
)


def _figure_row(key: str, f: dict[str, Any]) -> list[str]:
    return [
        key,
        str(f["sessions"]),
        str(f["outcomes"]["merged"]),
        _pct(f["first_try_rate"]),
        _span(f["first_try_interval"]),
        _mean(f["mean_ci_rounds"]),
        _mean(f["mean_review_rounds"]),
        _mean(f["mean_rebase_rounds"]),
        _duration(f["median_time_to_pr_s"]),
        _duration(f["median_time_to_resolution_s"]),
        f"{f['cost_usd']:.2f}",
        "-" if f["mean_cost_usd"] is None else f"{f['mean_cost_usd']:.2f}",
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
        out += [
            "",
            "Which prompts spiralled (most rounds per session first)",
            *_table(
                ("variant", "sessions", "rounds", "CI", "review", "rebase", "first try"),
                [
                    [
                        v["key"] or "-",
                        str(v["sessions"]),
                        _mean(v["mean_rounds"]),
                        _mean(v["mean_ci_rounds"]),
                        _mean(v["mean_review_rounds"]),
                        _mean(v["mean_rebase_rounds"]),
                        _pct(v["first_try_rate"]),
                    ]
                    for v in report["spiralled"]
                ],
            ),
        ]
    if report["lessons"]:
        out += [
            "",
            "Lessons: first try with the lesson and held out of it",
            *_table(
                ("id", "status", "with", "held out", "P(with > held out)", "lesson"),
                [
                    [
                        str(x["id"]),
                        (x["status"] or "gone") + (" pinned" if x["pinned"] else ""),
                        _arm(x["with_trials"], x["with_first_try"], x["with_interval"]),
                        _arm(x["holdout_trials"], x["holdout_first_try"], x["holdout_interval"]),
                        "-" if x["p_with_better"] is None else f"{x['p_with_better']:.2f}",
                        _clip(x["text"] or "", 60),
                    ]
                    for x in report["lessons"]
                ],
                left=(0, 1, 5),
            ),
        ]
    return "\n".join(out) + "\n"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
