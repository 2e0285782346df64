"""The optional `reflect` task: the agent backend distils 0–3 lessons from a finished session.

On with `lessons: {reflect: true}` in the repo config. The agent runs in the
sandbox like any round, in an empty scratch directory, with the session's
timeline (quoted as data) and the `reflect` prompt. What it answers is
untrusted: a lesson is used only if it is one short line, names an area the
session touched (or none), holds nothing that looks like a secret or a URL,
and does not tell agents to skip, disable or weaken tests, checks, hooks or
reviews. The rest is refused and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from bot.agents import AgentRequest, get_backend
from bot.config import RepoConfig
from bot.prompts import PromptContext, Prompts
from bot.store.sessions import RoundRow, SessionRow

log = logging.getLogger("compound.learning")

MAX_LESSONS = 3
MAX_TEXT = 300
MIN_TEXT = 15
TIMEOUT = 600.0
_SECRET = re.compile(
    r"gh[pousr]_[A-Za-z0-9]{16,}|github_pat_\w{16,}|sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|xox[abpr]-|-----BEGIN|"
    r"\b(password|passwd|secret|token|api[_ -]?key)\s*[:=]",
    re.I,
)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://", re.I)
_VERB = (
    r"(skip\w*|disabl\w*|bypass\w*|ignor\w*|suppress\w*|silenc\w*|comment(ing|ed)? out|delet\w*|remov\w*|"
    r"weaken\w*|loosen\w*|relax\w*|xfail\w*|mut(e|ed|ing))"
)
_CHECKS = (
    r"(tests?|checks?|lint(ers?|ing)?|ci|hooks?|reviews?|type[ -]?check(s|ing|er)?|assert(ion)?s?|"
    r"warnings?|errors?|failures?)"
)
_WEAKEN = re.compile(
    rf"\b{_VERB}\b[^.]{{0,50}}\b{_CHECKS}\b|\b{_CHECKS}\b[^.]{{0,30}}\b{_VERB}\b"
    r"|--no-verify|\bnoqa\b|type:\s*ignore|pytest\.mark\.skip|@skip|eslint-disable|nolint",
    re.I,
)


@dataclass
class Reflection:
    accepted: list[tuple[str, str | None]] = field(default_factory=list)  # (text, area)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (text, why)
    error: str | None = None


def timeline(rounds: list[RoundRow]) -> str:
    lines = []
    for r in rounds:
        if r.status == "cancelled":
            continue
        trigger = r.trigger_data()
        checks = ", ".join(
            f"{c.get('name')} ({c.get('category')}{', ran `' + c['command'] + '`' if c.get('command') else ''})"
            for c in trigger.get("checks") or []
        )
        parts = [f"Round {r.number} ({r.kind}): {r.status}"]
        if checks:
            parts.append(f"failing checks: {checks}")
        if trigger.get("review_kinds"):
            parts.append(f"review asked about: {', '.join(trigger['review_kinds'])}")
        if trigger.get("conflicts"):
            parts.append(f"conflicts in: {', '.join(trigger['conflicts'][:10])}")
        if r.summary:
            parts.append(f"the agent said: {' '.join(r.summary.split())[:500]}")
        lines.append("; ".join(parts))
    return "\n".join(lines) or "No round ran."


def parse(output: str) -> list[Any] | None:
    """The `lessons` list of the last JSON object in the output that has one."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip().strip("`")
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        lessons = value.get("lessons") if isinstance(value, dict) else None
        if isinstance(lessons, list):
            return lessons
    return None


def validate(items: list[Any], areas: list[str]) -> Reflection:
    out = Reflection()
    for item in items:
        text = item.get("text") if isinstance(item, dict) else item
        area = item.get("area") if isinstance(item, dict) else None
        if not isinstance(text, str):
            out.refused.append((repr(text)[:100], "not text"))
            continue
        text = " ".join(text.split())
        why = None
        if len(text) < MIN_TEXT or len(text) > MAX_TEXT:
            why = f"not between {MIN_TEXT} and {MAX_TEXT} characters"
        elif _SECRET.search(text):
            why = "looks like it holds a secret"
        elif _URL.search(text):
            why = "holds a URL"
        elif _WEAKEN.search(text):
            why = "tells agents to skip or weaken checks"
        elif area not in (None, "", ".") and area not in areas:
            why = f"names an area the session did not touch ({str(area)[:50]})"
        elif len(out.accepted) >= MAX_LESSONS:
            why = f"more than {MAX_LESSONS}"
        if why:
            out.refused.append((text[:100], why))
        else:
            out.accepted.append((text.replace("`", "'") if text.count("`") % 2 else text, area or None))
    return out


class Reflector:
    """Runs `reflect` through the configured backend, in the sandbox."""

    def __init__(self, settings: Any, runner: Any, prompts: Prompts) -> None:
        self.settings = settings
        self.runner = runner
        self.prompts = prompts

    async def __call__(
        self, session: SessionRow, rounds: list[RoundRow], config: RepoConfig, areas: list[str]
    ) -> Reflection:
        scratch = self.settings.data_dir / "reflect" / session.id
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            first = rounds[0].context_data() if rounds else {}
            prompt = self.prompts.render(
                PromptContext(
                    kind="reflect",
                    repo=session.repo,
                    issue_number=session.issue_number,
                    issue_title=session.issue_title,
                    issue_body=session.issue_body
                    if session.issue_body is not None
                    else str(first.get("issue_body", "")),
                    config=config,
                    timeline=timeline(rounds),
                )
            )
            backend = get_backend(
                config.agent.backend or self.settings.agent_backend, command=self.settings.agent_command
            )
            request = AgentRequest(
                workspace=scratch,
                prompt=prompt.text,
                session_id=session.id,
                task_kind="reflect",
                model=session.model,
                timeout=min(TIMEOUT, config.agent.timeout or self.settings.agent_timeout),
                args=list(config.agent.args),
                env_passthrough=self.settings.agent_passthrough_names(),
            )
            result = await self.runner.run(backend, request, asyncio.Event())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not result.ok:
            timed_out = " (timed out)" if result.timed_out else ""
            return Reflection(error=f"the reflect task ended with status {result.exit_code}{timed_out}")
        items = parse("\n".join(p for p in (result.log_tail, result.final_message) if p))
        if items is None:
            return Reflection(error="the reflect task answered no JSON object with `lessons`")
        return validate(items, areas)
