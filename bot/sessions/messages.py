"""Everything Compound says on GitHub about a session: comments, PR body, check text."""

from __future__ import annotations

import json
from typing import Any

from bot.checks import RoundFigures, clip
from bot.settings import Settings
from bot.store.sessions import RoundRow, SessionRow

MARK = "<!-- compound:session {id} -->"
HELP = """\
**Compound** runs a coding agent on this issue or pull request.

| command | does |
| --- | --- |
| `/agent <instructions>` | on an issue: start a task with these instructions; on Compound's PR: a follow-up round on its branch |
| `/agent status` | where the session stands |
| `/agent stop` | stop the running agent and cancel queued rounds |
| `/agent retry` | run the last failed or stopped round again (escalated with every round pushed: one more CI round), or one waiting for the daily limit now |
| `/agent model <alias>` | use another model (an alias from `models` in `.github/compound.yml`) from the next round on |
| `/agent fix-ci` | one CI fix round on the PR's current head, even after Compound escalated |
| `/agent lessons` | the lessons Compound has learned that are in scope here |
| `/agent help` | this help |

Labelling an issue with the trigger label (`agent` unless `.github/compound.yml` says otherwise) starts a task too; a label `agent:<alias>` picks the model. Only people with write access can start work.
"""  # noqa: E501 (Markdown as GitHub renders it: a table row or a paragraph is one line)


def lessons_in_scope(lessons: list[Any], holdout: float) -> str:
    """`/agent lessons`: what a session here would carry in its prompts."""
    if not lessons:
        return (
            "No lesson Compound has learned is in scope here yet. Lessons come from ended sessions "
            "(a CI check that failed, review comments, conflicts); "
            "maintainers can add their own with `compound lessons add`."
        )
    lines = [f"**Lessons in scope here** ({len(lessons)}):", ""]
    for lesson in lessons:
        pinned = ", pinned" if lesson.pinned else ""
        evidence = len(lesson.evidence)
        sessions = "session" if evidence == 1 else "sessions"
        lines.append(f"- #{lesson.id} ({lesson.scope}; from {evidence} {sessions}{pinned}): {lesson.text}")
    if holdout > 0:
        lines += [
            "",
            f"About {holdout:.0%} of sessions run without each unpinned lesson, to measure whether it helps; "
            "a lesson that does not is retired. Maintainers manage them with `compound lessons`.",
        ]
    return "\n".join(lines)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _fence(text: str) -> str:
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{clip(text, 6000)}\n{fence}"


def round_title(round_: RoundRow, status: str) -> str:
    """A check run's title: the round, its kind and its cause, then how it stands."""
    categories = round_.category_list()
    kind = f"{round_.kind}: {', '.join(categories)}" if categories else round_.kind
    return f"Round {round_.number} ({kind}): {status}"


def round_intro(session: SessionRow, round_: RoundRow, plan: Any = None, sandbox: str | None = None) -> str:
    who = f" for @{round_.requested_by}" if round_.requested_by and not round_.automatic else ""
    text = (
        f"The agent is working on round {round_.number} ({round_.kind}){who} of session `{session.id}`.\n\n"
        f"Trigger: {trigger_text(round_)}"
    )
    if sandbox:
        text += f"\n\nSandbox: {sandbox}"
    return text + _plan_details(plan)


def _plan_details(plan: Any) -> str:
    if plan is None:
        return ""
    if getattr(plan, "failures", None):
        return "\n\n### Failing checks\n\n" + ci_summary(plan.failures, plan.more_failures)
    if getattr(plan, "review_comments", None):
        by = ", ".join(f"@{r}" for r in plan.reviewers) or "a reviewer"
        reviews = "Reviews" if len(plan.reviewers) > 1 else "Review"
        return f"\n\n{reviews} by {by}: {len(plan.review_comments)} comments to address."
    return ""


def commit_message(session: SessionRow, round_: RoundRow, result: Any) -> str:
    if round_.kind == "task":
        subject = f"{session.issue_title or 'Resolve issue'} (#{session.issue_number})"
    else:
        first = (round_.instructions.strip().splitlines() or [round_.kind])[0]
        subject = f"{round_.kind.replace('_', ' ')}: {first}"
    subject = subject[:72]
    body = (result.final_message or "").strip()
    return f"{subject}\n\n{clip(body, 3000, keep='head')}" if body else subject


def pr_body(session: SessionRow, round_: RoundRow, result: Any, figures: RoundFigures) -> str:
    summary = (result.final_message or "The agent did not describe its change.").strip()
    return (
        f"Closes #{session.issue_number}\n\n"
        f"## What changed\n\n{clip(summary, 20000, keep='head')}\n\n"
        f"## How it was made\n\n{figures.table()}\n\n"
        f"Made by Compound with model `{figures.model or 'default'}` ({session.backend}), "
        f"session `{session.id}`. Comment `/agent <instructions>` on this PR for a follow-up round, "
        f"`/agent help` for the commands.\n\n" + MARK.format(id=session.id)
    )


def pr_opened(session: SessionRow, pr: dict[str, Any]) -> str:
    return (
        f"Compound opened #{pr['number']} for this issue (session `{session.id}`). "
        f"Review it there; `/agent <instructions>` on the PR asks for changes.\n\n" + MARK.format(id=session.id)
    )


def round_done(round_: RoundRow, result: Any, figures: RoundFigures, head: str, plan: Any = None) -> str:
    summary = (result.final_message or "").strip()
    return (
        f"Round {round_.number} ({round_.kind}) pushed {head[:7]}: "
        f"{figures.files_changed} files changed. Trigger: {trigger_text(round_)}.\n\n"
        f"{clip(summary, 4000, keep='head')}"
    )


def check_summary(round_: RoundRow, result: Any, figures: RoundFigures, plan: Any = None) -> str:
    summary = (result.final_message or "").strip()
    return (
        f"{figures.table()}\n\nTrigger: {trigger_text(round_)}{_plan_details(plan)}{learning_text(round_)}\n\n"
        f"{clip(summary, 30000, keep='head')}"
    )


def learning_text(round_: RoundRow) -> str:
    """How the learning loop shaped the round: its prompt variant, lessons and model choice."""
    choice = json.loads(round_.choice or "{}")
    if not choice:
        return ""
    lines = []
    variant = choice.get("variant") or {}
    if variant:
        posterior = variant.get("posterior") or {}
        odds = ", ".join(f"`{v}` {a - 1}/{a + b - 2}" for v, (a, b) in posterior.items())
        lines.append(
            f"Prompt: `{round_.kind}` variant `{variant.get('picked')}` ({variant.get('why')}"
            + (f"; first try so far: {odds}" if odds else "")
            + ")"
        )
    carried = json.loads(round_.lessons or "{}")
    if carried.get("carried") or carried.get("held_out"):
        lines.append(
            "Lessons: "
            + (", ".join(f"#{i}" for i in carried.get("carried") or []) or "none")
            + (
                f"; held out to measure them: {', '.join(f'#{i}' for i in carried['held_out'])}"
                if carried.get("held_out")
                else ""
            )
        )
    routing = round_.context_data().get("routing") or {}
    if routing:
        lines.append(f"Model `{routing.get('model')}` chosen by learned routing: {routing.get('why')}")
    return ("\n\n### Learning\n\n" + "\n".join(f"- {line}" for line in lines)) if lines else ""


def log_text(result: Any) -> str:
    return "Agent output (last lines):\n\n" + _fence(result.log_tail or "(no output)")


def stopped(round_: RoundRow) -> str:
    who = f" as @{round_.requested_by} asked" if round_.requested_by else ""
    return (
        f"Compound stopped round {round_.number} ({round_.kind}){who}. Nothing was pushed. "
        "`/agent retry` runs it again."
    )


def agent_failed(result: Any, settings: Settings, attempts: int = 1) -> str:
    tries = f" (on each of {attempts} tries)" if attempts > 1 else ""
    if result.timed_out:
        why = f"the agent was still running after {result.duration:.0f} s (the limit) and was stopped"
    elif result.exit_code is None:
        why = f"the agent could not be started: {result.final_message or 'unknown error'}"
    else:
        why = f"the agent exited with status {result.exit_code}"
    return (
        f"Compound could not finish this: {why}{tries}. Nothing was pushed.\n\n"
        "<details><summary>Last lines of the agent's output</summary>\n\n"
        f"{_fence(_tail(result.log_tail or ''))}\n\n</details>\n\n"
        "`/agent retry` tries again."
    )


def no_changes(round_: RoundRow, result: Any) -> str:
    said = (result.final_message or "").strip()
    quoted = f"\n\nThe agent said:\n\n{_fence(said)}" if said else ""
    return (
        f"The agent finished round {round_.number} without changing any file "
        f"(changes to forbidden paths do not count), so there is nothing to push.{quoted}"
    )


def crashed(round_: RoundRow, exc: Exception) -> str:
    return (
        f"Compound gave up on round {round_.number} after {round_.attempts} tries: "
        f"{clip(f'{type(exc).__name__}: {exc}', 1000, keep='head')}. `/agent retry` tries again."
    )


def git_failed(exc: Exception) -> str:
    """Why a round's git work failed (the session is escalated with it)."""
    detail = _fence(clip(str(exc), 2000, keep="head"))
    command = str(getattr(exc, "command", ""))
    if command.startswith("git push") and "rejected" in str(getattr(exc, "stderr", "")):
        return (
            "Compound could not push this round's commit: the branch moved while the round ran "
            "(someone else pushed to it), and Compound never forces a push over another's commit. "
            f"`/agent retry` runs the round again from the branch's new head.\n\n{detail}"
        )
    if command.startswith("git merge"):
        why = "Git refused to merge the base branch into this branch, for a reason no agent can resolve"
        return f"{why} (not a conflict).\n\n{detail}"
    return f"Compound could not prepare or push the branch.\n\n{detail}"


def refusal(login: str) -> str:
    return (
        f"Sorry @{login}, only people with write access to this repository can start Compound. "
        "A maintainer can add the label or comment `/agent` instead."
    )


def already_running(session: SessionRow) -> str:
    where = f" on #{session.pr_number}" if session.pr_number else ""
    return (
        f"Compound already has an active session for this issue (`{session.id}`, {session.status}){where}. "
        "`/agent status` shows it; `/agent stop` ends it."
    )


def status(session: SessionRow | None, rounds: list[RoundRow]) -> str:
    if session is None:
        return "Compound has no session here yet. Label the issue or comment `/agent <instructions>` to start one."
    lines = [
        f"Session `{session.id}`: **{session.status}**",
        f"- model `{session.model or 'default'}`, backend {session.backend}",
        f"- branch `{session.branch}`" + (f", PR #{session.pr_number}" if session.pr_number else ""),
    ]
    if session.error:
        lines.append(f"- last problem: {clip(session.error.splitlines()[0], 300, keep='head')}")
    for r in rounds[-10:]:
        held = " (waiting for the daily limit to reset; `/agent retry` starts it now)" if r.quota == "held" else ""
        lines.append(f"- round {r.number} ({r.kind}): {r.status}{held}")
    return "\n".join(lines)


EDIT_MARK = "<!-- compound:issue-edited {id} -->"


def issue_edited(session: SessionRow, trigger_label: str) -> str:
    """Said once per session when the issue is edited after it was triggered."""
    text = (
        f"{EDIT_MARK.format(id=session.id)}\n"
        f"This issue was edited after @{session.triggered_by} started session `{session.id}`. "
        "Compound keeps working from the title and description as they were then, "
        "so that nobody can change a task after a maintainer has started it; the edit is not shown to the agent.\n\n"
    )
    if session.pr_number is not None:
        return text + (
            f"To use the new text, a maintainer can tell the agent what changed with `/agent <instructions>` "
            f"on #{session.pr_number}, or close #{session.pr_number} and label this issue `{trigger_label}` "
            "again to start a new session from the issue as it reads now."
        )
    stop_first = "`/agent stop` this session, then " if session.active else ""
    return text + (
        f"To use the new text, a maintainer can {stop_first}remove and add the `{trigger_label}` label "
        "again (or comment `/agent`) to start a new session from the issue as it reads now. "
        "`/agent retry` keeps the text from the start."
    )


def config_invalid(error: str) -> str:
    return f"`.github/compound.yml` is not valid, so Compound uses its defaults for now:\n\n{_fence(error)}"


# -- healing rounds --------------------------------------------------------------

ESCALATION_MARK = "<!-- compound:escalation {id} -->"
KIND_NAMES = {
    "task": "task",
    "command": "follow-up",
    "ci_fix": "CI fix",
    "review_fix": "review fix",
    "rebase": "merge of the base branch",
}


def trigger_text(round_: RoundRow) -> str:
    """What started a round, in a few words (Markdown)."""
    trigger = round_.trigger_data()
    if round_.kind == "ci_fix":
        checks = trigger.get("checks") or []
        failed = ", ".join(f"{c['name']} ({c['category']})" for c in checks[:5]) or "failing CI"
        head = (trigger.get("head") or "")[:7]
        how = "CI failed" if round_.automatic else _asked(round_, trigger, "`/agent fix-ci`")
        return f"{how} on {head}: {failed}" if head else f"{how}: {failed}"
    if round_.kind == "review_fix":
        reviewers = [trigger.get("reviewer") or round_.requested_by or "a reviewer"]
        for joined in trigger.get("joined", []):  # reviews that joined the queued round
            if joined.get("reviewer") and joined["reviewer"] not in reviewers:
                reviewers.append(joined["reviewer"])
        count = trigger.get("comments")
        reviews = "reviews" if trigger.get("joined") else "review"
        by = " and ".join(f"@{r}" for r in reviewers)
        return f"{reviews} by {by}" + (f" ({count} comments)" if count else "")
    if round_.kind == "rebase":
        base = trigger.get("base_branch") or "the base branch"
        return f"`{base}` moved to {(trigger.get('base_sha') or '')[:7]}"
    who = round_.requested_by
    if trigger.get("retry_of"):
        return _asked(round_, trigger, "a retry")
    return f"asked by @{who}" if who else round_.kind


def _asked(round_: RoundRow, trigger: dict[str, Any], default: str) -> str:
    """Who asked for a person's round, and how: `/agent fix-ci`, `/agent retry`, the Retry button."""
    how = trigger.get("asked") or default
    again = f", retrying round {trigger['retry_of']}" if trigger.get("retry_of") else ""
    return f"{how} by @{round_.requested_by}{again}"


def retrying(retried: RoundRow, head: str | None) -> str:
    """The answer to `/agent retry`: the round it runs again, or the CI look it runs instead."""
    of = retried.trigger_data().get("retry_of")
    if of:
        return f"Retrying round {of}'s work as round {retried.number}."
    return (
        f"No round of this session failed, so round {retried.number} looks at CI on "
        f"{(head or '')[:7]} again, as `/agent fix-ci` would."
    )


def _round_result(round_: RoundRow) -> str:
    if round_.status == "done" and round_.head_after:
        return f"pushed {round_.head_after[:7]}" + (
            f" ({round_.files_changed} files)" if round_.files_changed is not None else ""
        )
    return {
        "failed": "failed",
        "stopped": "stopped",
        "cancelled": "not needed",
        "queued": "queued",
        "running": "running",
    }.get(round_.status, round_.status)


def escalation(session: SessionRow, rounds: list[RoundRow], why: str) -> str:
    ran = [r for r in rounds if r.status != "cancelled"]
    lines = [
        f"**Compound needs a human here.** {why.strip()}",
        "",
        "| round | kind | trigger | failure categories | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in ran[-30:]:
        categories = ", ".join(r.category_list()) or "—"
        kind = KIND_NAMES.get(r.kind, r.kind)
        lines.append(f"| {r.number} | {kind} | {_cell(trigger_text(r))} | {categories} | {_round_result(r)} |")
    lines += [
        "",
        "Compound starts no round on its own while this session is escalated. "
        "Comment `/agent fix-ci` for one more CI round, `/agent retry` to run the last round again, "
        "`/agent <instructions>` to steer it, or remove the `agent:needs-human` label to let it carry on by itself.",
        "",
        ESCALATION_MARK.format(id=session.id),
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def ci_summary(checks: list[Any], more: int = 0) -> str:
    """The failing checks a CI round works on, for its check run and comments."""
    lines = ["| check | conclusion | category |", "| --- | --- | --- |"]
    for f in checks:
        name = f"[{_cell(f.name)}]({f.url})" if f.url else _cell(f.name)
        lines.append(f"| {name} | {f.conclusion} | {f.category} |")
    if more:
        lines.append(f"| … and {more} more | | |")
    return "\n".join(lines)


def ci_limit_reached(limit: int, categories: list[str]) -> str:
    what = f" ({', '.join(categories)})" if categories else ""
    return f"CI still fails{what} after {limit} CI fix round{'s' if limit != 1 else ''}, the limit for this repository."


def review_limit_reached(limit: int) -> str:
    rounds = "round" if limit == 1 else "rounds"
    return f"Reviewers still ask for changes after {limit} review {rounds}, the limit for this repository."


def ci_not_failing(head: str) -> str:
    return f"CI is not failing on {head[:7]}, so there is nothing for `/agent fix-ci` to fix."


def review_reply(round_: RoundRow, head: str, result: Any) -> str:
    said = (result.final_message or "").strip()
    quoted = f"\n\n> {clip(said, 1500, keep='head').replace(chr(10), chr(10) + '> ')}" if said else ""
    return f"Compound's round {round_.number} pushed {head} for this review; please take another look.{quoted}"


def review_not_shown(round_: RoundRow, limit: int) -> str:
    return (
        f"Compound's round {round_.number} did not hand this comment to the agent: one round carries"
        f" at most {limit} review comments. Repeat it in a new review, or say what to do with"
        " `/agent <instructions>` on the pull request."
    )


def review_reply_failed(round_: RoundRow, why: str) -> str:
    first = why.strip().splitlines()[0] if why.strip() else "the round failed"
    return f"Compound could not address this in round {round_.number}: {clip(first, 500, keep='head')}"


def conflict_unresolved(paths: list[str]) -> str:
    shown = ", ".join(f"`{p}`" for p in paths[:10]) + (" …" if len(paths) > 10 else "")
    return f"The agent left conflict markers in {shown}, so Compound did not push the merge."


def daily_limit(session: SessionRow, limit: int, resets_at: Any) -> str:
    """A round held by the installation's daily cap (docs/operations.md#quotas), said once per thread."""
    return (
        f"This installation has used its daily limit of {limit} Compound round{'s' if limit != 1 else ''}: "
        f"this session's next round waits until the limit resets at {resets_at:%Y-%m-%d %H:%M} UTC "
        "and then starts by itself. A maintainer's `/agent retry` starts it now."
    )
