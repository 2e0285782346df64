"""The retrospective comment a session leaves on its issue when it ends."""

from __future__ import annotations

from bot.store.learning import Lesson, Outcome
from bot.store.sessions import RoundRow

MARKER = "<!-- compound:retrospective -->"
MAX_TIMELINE = 30


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _trigger(round_: RoundRow) -> str:
    trigger = round_.trigger_data()
    if round_.kind == "task":
        return f"started by @{round_.requested_by}" if round_.requested_by else "started"
    if round_.kind == "ci_fix":
        checks = trigger.get("checks") or []
        named = ", ".join(f"`{c.get('name')}` ({c.get('category')})" for c in checks[:5]) or "CI"
        return f"CI failed: {named}"
    if round_.kind == "review_fix":
        who = trigger.get("reviewer")
        count = trigger.get("comments")
        return f"review by @{who}" + (f", {count} comments" if count else "") if who else "review feedback"
    if round_.kind == "rebase":
        conflicts = trigger.get("conflicts") or []
        base = trigger.get("base_branch") or "the base"
        return f"`{base}` moved" + (f", conflicts in {len(conflicts)} files" if conflicts else "")
    return f"`/agent` by @{round_.requested_by}" if round_.requested_by else "a command"


def _result(round_: RoundRow) -> str:
    if round_.head_after:
        return f"pushed {round_.head_after[:7]}"
    return round_.status


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(
    outcome: Outcome,
    rounds: list[RoundRow],
    applied: list[Lesson],
    held_out: list[Lesson],
    learned: list[Lesson],
    retired: list[tuple[Lesson, str]],
) -> str:
    headline = {
        "merged": "merged" + (", first try" if outcome.first_try else ""),
        "closed": "closed without merging",
        "escalated": "handed to a human",
        "failed": "failed",
        "stopped": "stopped",
    }.get(outcome.outcome, outcome.outcome)
    pr = f"PR #{outcome.pr_number}" if outcome.pr_number else "no PR"
    tokens = (
        f"{outcome.input_tokens:,} in / {outcome.output_tokens:,} out"
        if outcome.input_tokens or outcome.output_tokens
        else "—"
    )
    cost = f"${outcome.cost_usd:.2f}" if outcome.cost_usd else "—"
    lines = [
        MARKER,
        f"### Compound retrospective: {headline}",
        "",
        "| | |",
        "| --- | --- |",
        f"| Outcome | {outcome.outcome} ({pr}) |",
        f"| First-try success | {'yes' if outcome.first_try else 'no'} |",
        f"| Rounds | CI {outcome.ci_rounds}, review {outcome.review_rounds}, rebase {outcome.rebase_rounds} |",
        f"| Failure categories | {', '.join(outcome.categories) or '—'} |",
        f"| Time to PR | {duration(outcome.time_to_pr)} |",
        f"| Time to resolution | {duration(outcome.time_to_resolution)} |",
        f"| Tokens | {tokens} |",
        f"| Cost | {cost} |",
        f"| Model | {_cell(outcome.model or 'default')} ({outcome.backend}) |",
        f"| Prompt | `{outcome.prompt_template}` variant `{outcome.prompt_variant or 'default'}` |",
        f"| Task kind | {outcome.task_kind} |",
        f"| Areas | {', '.join(f'`{a}`' for a in outcome.areas) or '—'} |",
        "",
        "**Timeline**",
        "",
    ]
    shown = [r for r in rounds if r.status != "cancelled"][:MAX_TIMELINE]
    for r in shown:
        categories = r.category_list()
        extra = f" [{', '.join(categories)}]" if categories else ""
        lines.append(f"{r.number}. `{r.kind}`: {_cell(_trigger(r))}{extra} → {_result(r)}")
    if not shown:
        lines.append("No round ran.")
    lines += ["", "**Lessons**", ""]
    if applied:
        lines.append("Carried in its prompts: " + "; ".join(f"#{x.id} {_cell(x.text)}" for x in applied))
    if held_out:
        lines.append("Held out (to measure them): " + ", ".join(f"#{x.id}" for x in held_out))
    for lesson in learned:
        state = (
            "active for the next sessions"
            if lesson.status == "active"
            else "a candidate until another session shows it"
        )
        lines.append(f"Learned #{lesson.id} ({lesson.scope}; {state}): {_cell(lesson.text)}")
    for lesson, why in retired:
        lines.append(f"Retired #{lesson.id}: {why}")
    if not (applied or held_out or learned or retired):
        lines.append("None in scope, none drawn.")
    lines += ["", "<sub>`/agent lessons` lists the lessons in scope; `compound report` has the figures.</sub>"]
    return "\n".join(lines)
