"""Everything Compound says on GitHub about a session: comments, PR body, check text."""

from __future__ import annotations

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
| `/agent retry` | run the last failed or stopped round again |
| `/agent model <alias>` | use another model (an alias from `models` in `.github/compound.yml`) from the next round on |
| `/agent help` | this help |

Labelling an issue with the trigger label (`agent` unless `.github/compound.yml` says otherwise) starts a task too; a label `agent:<alias>` picks the model. Only people with write access can start work.
"""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _fence(text: str) -> str:
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{clip(text, 6000)}\n{fence}"


def round_intro(session: SessionRow, round_: RoundRow) -> str:
    who = f" for @{round_.requested_by}" if round_.requested_by else ""
    return f"The agent is working on round {round_.number} ({round_.kind}){who} of session `{session.id}`."


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
        f"Review it there; `/agent <instructions>` on the PR asks for changes.\n\n"
        + MARK.format(id=session.id)
    )


def round_done(round_: RoundRow, result: Any, figures: RoundFigures, head: str) -> str:
    summary = (result.final_message or "").strip()
    return (
        f"Round {round_.number} ({round_.kind}) pushed {head[:7]}: "
        f"{figures.files_changed} files changed.\n\n{clip(summary, 4000, keep='head')}"
    )


def check_summary(round_: RoundRow, result: Any, figures: RoundFigures) -> str:
    summary = (result.final_message or "").strip()
    return f"{figures.table()}\n\n{clip(summary, 30000, keep='head')}"


def log_text(result: Any) -> str:
    return "Agent output (last lines):\n\n" + _fence(result.log_tail or "(no output)")


def stopped(round_: RoundRow) -> str:
    who = f" as @{round_.requested_by} asked" if round_.requested_by else ""
    return f"Compound stopped round {round_.number} ({round_.kind}){who}. Nothing was pushed. `/agent retry` runs it again."


def agent_failed(result: Any, settings: Settings) -> str:
    if result.timed_out:
        why = f"the agent was still running after {result.duration:.0f} s (the limit) and was stopped"
    elif result.exit_code is None:
        why = f"the agent could not be started: {result.final_message or 'unknown error'}"
    else:
        why = f"the agent exited with status {result.exit_code}"
    return (
        f"Compound could not finish this: {why}. Nothing was pushed.\n\n"
        f"<details><summary>Last lines of the agent's output</summary>\n\n{_fence(_tail(result.log_tail or ''))}\n\n</details>\n\n"
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
    return f"Compound could not prepare or push the branch: {clip(str(exc), 2000, keep='head')}"


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
        lines.append(f"- round {r.number} ({r.kind}): {r.status}")
    return "\n".join(lines)


def config_invalid(error: str) -> str:
    return (
        "`.github/compound.yml` is not valid, so Compound uses its defaults for now:\n\n"
        f"{_fence(error)}"
    )
