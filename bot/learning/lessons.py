"""Lessons: mined from ended sessions, put into the prompts in their scope, kept only if they help.

The miner is deterministic. From an ended session's rounds it reads three
kinds of pattern, each with a key that names it, so the same pattern seen in
another session adds evidence to the same lesson instead of a second one:

- a CI check that failed and made a `ci_fix` round: its category and, for
  GitHub Actions, the command of the step that failed (`Run …` in the job
  log). With a command the lesson is concrete ("run `make lint`") and
  becomes active at once; without one it needs two sessions.
- review comments of one kind (tests asked for, naming, docs, types, error
  handling, style) in two sessions of the repo;
- merge conflicts on one file in two sessions.

A lesson is scoped to its repository and, when the sessions that taught it
touched one path area (a top-level directory), to that area. `infra` and
`timeout` failures teach nothing about the code and are not mined.

Whether a lesson earns its place is decided from its trials
(`lesson_trials`): in-scope sessions that carried it against in-scope
sessions held out of it (`holdout`, by a hash of session and lesson, so a
session keeps its arm across rounds). See docs/learning.md for the rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.learning.stats import prob_greater
from bot.store.learning import ACTIVE, Lesson, Trials

NOT_MINED = frozenset({"infra", "timeout"})
MAX_PER_PROMPT = 5
# The retirement rule (docs/learning.md).
MIN_HOLDOUT = 5
MIN_CARRIED = 10
KEEP_PROBABILITY = 0.8

REVIEW_KINDS = {
    "tests": (
        re.compile(r"\b(add|missing|needs?|write|cover)\b.{0,40}\btests?\b|\bcoverage\b|\bunit tests?\b", re.I),
        "Reviewers here ask for tests with every change: add or update tests for what you change.",
    ),
    "docs": (
        re.compile(r"\b(docstring|document(ation)?|readme|changelog)\b", re.I),
        "Reviewers here ask for documentation: update docstrings, the README or the changelog with the change.",
    ),
    "naming": (
        re.compile(r"\b(rename|naming|better name|name (is|should))\b", re.I),
        "Reviewers here care about names: choose descriptive names that match the surrounding code.",
    ),
    "types": (
        re.compile(r"\b(type hints?|annotations?|typing|mypy|any\b)", re.I),
        "Reviewers here ask for type annotations: annotate new functions and keep the type checker clean.",
    ),
    "errors": (
        re.compile(r"\b(error handling|exceptions?|raise|try/except|edge case)\b", re.I),
        "Reviewers here ask about error handling: handle failures and edge cases explicitly.",
    ),
    "style": (
        re.compile(r"\b(style|format(ting)?|nit|whitespace|line length)\b", re.I),
        "Reviewers here comment on style: follow the formatting of the surrounding code exactly.",
    ),
}


@dataclass(frozen=True)
class Pattern:
    key: str
    text: str
    area: str | None
    need: int  # sessions of evidence before the lesson becomes active


def review_kinds(bodies: Iterable[str]) -> list[str]:
    found = set()
    for body in bodies:
        for kind, (pattern, _) in REVIEW_KINDS.items():
            if pattern.search(body or ""):
                found.add(kind)
    return sorted(found)


def _where(area: str | None) -> str:
    return f" under `{area}/`" if area and area != "." else ""


def _clean(text: str, limit: int = 200) -> str:
    return " ".join(text.replace("`", "'").split())[:limit]


def mine(repo: str, areas: list[str], rounds_triggers: list[tuple[str, dict[str, Any]]]) -> list[Pattern]:
    """The patterns of one ended session: (round kind, round trigger) for each round that ran."""
    area = areas[0] if len(areas) == 1 else None
    found: dict[str, Pattern] = {}
    for kind, trigger in rounds_triggers:
        if kind == "ci_fix":
            for check in trigger.get("checks") or []:
                category = check.get("category") or "other"
                if category in NOT_MINED:
                    continue
                name = _clean(check.get("name") or "CI", 100)
                command = _clean(check.get("command") or "")
                if command:
                    key = f"ci:{repo}:{area or '*'}:{category}:{command}"
                    text = (
                        f"CI's `{name}` check runs `{command}` and has failed on {category} errors{_where(area)}. "
                        f"Run `{command}` yourself and fix everything it reports before you finish."
                    )
                    found[key] = Pattern(key, text, area, 1)
                else:
                    key = f"ci:{repo}:{area or '*'}:{category}:check={name}"
                    text = (
                        f"Changes{_where(area)} have failed CI's `{name}` check on {category} errors. "
                        f"Run the project's {category} checks locally before you finish."
                    )
                    found[key] = Pattern(key, text, area, 2)
        elif kind == "review_fix":
            for review in trigger.get("review_kinds") or []:
                if review in REVIEW_KINDS:
                    key = f"review:{repo}:{area or '*'}:{review}"
                    found[key] = Pattern(key, REVIEW_KINDS[review][1], area, 2)
        elif kind == "rebase":
            for path in trigger.get("conflicts") or []:
                path = _clean(str(path), 300)
                key = f"conflict:{repo}:{path}"
                top = path.partition("/")[0] if "/" in path else "."
                text = (
                    f"`{path}` often changes on the base branch while a PR is open (merge conflicts). "
                    "Keep changes to it small and separate from the rest of the work."
                )
                found[key] = Pattern(key, text, top, 2)
    return list(found.values())


def in_scope(
    lesson: Lesson, *, repo: str, labels: Iterable[str], task_kind: str, areas: Iterable[str], text: str
) -> bool:
    """Whether a session is in the lesson's scope.

    Path areas: a session is in an area when it has touched files there (its
    earlier rounds) or its issue names the area (`dashboard/`, or the word
    `dashboard`); top-level files (`.`) are every session's area.
    """
    if lesson.repo != repo:
        return False
    if lesson.label and lesson.label.lower() not in {label.lower() for label in labels}:
        return False
    if lesson.task_kind and lesson.task_kind != task_kind:
        return False
    if lesson.area and lesson.area != ".":
        if lesson.area not in set(areas) and not re.search(rf"(?<![\w/.-]){re.escape(lesson.area)}(?![\w-])", text):
            return False
    return True


def held_out(session_id: str, lesson: Lesson, holdout: float) -> bool:
    """The session's arm for this lesson: the same in every round, spread evenly."""
    if lesson.pinned or holdout <= 0:
        return False
    digest = hashlib.sha256(f"{session_id}:{lesson.id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < holdout


def verdict(trials: Trials) -> tuple[bool, str] | None:
    """None while the evidence is short; else (keep, why)."""
    if trials.holdout_total < MIN_HOLDOUT or trials.with_total < MIN_CARRIED:
        return None
    p = prob_greater(trials.with_success, trials.with_total, trials.holdout_success, trials.holdout_total)
    why = (
        f"first try with it {trials.with_success}/{trials.with_total}, held out "
        f"{trials.holdout_success}/{trials.holdout_total}: P(it helps) = {p:.2f}"
    )
    return p >= KEEP_PROBABILITY, why


def usable(lessons: Iterable[Lesson]) -> list[Lesson]:
    """Active lessons, pinned first, then the best evidenced."""
    return sorted((x for x in lessons if x.status == ACTIVE), key=lambda x: (not x.pinned, -len(x.evidence), x.id))
