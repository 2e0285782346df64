"""What kind of task an issue is: the unit first-try success is compared within.

From the issue's labels first (the words teams use: `bug`, `documentation`,
`enhancement`, …), else from its title's first words. One of `KINDS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

KINDS = ("bug", "feature", "docs", "test", "refactor", "chore", "other")

_LABELS = {
    "bug": "bug",
    "defect": "bug",
    "regression": "bug",
    "fix": "bug",
    "crash": "bug",
    "feature": "feature",
    "enhancement": "feature",
    "feature request": "feature",
    "improvement": "feature",
    "documentation": "docs",
    "docs": "docs",
    "doc": "docs",
    "test": "test",
    "tests": "test",
    "testing": "test",
    "flaky": "test",
    "flaky test": "test",
    "refactor": "refactor",
    "refactoring": "refactor",
    "cleanup": "refactor",
    "tech debt": "refactor",
    "chore": "chore",
    "dependencies": "chore",
    "ci": "chore",
    "build": "chore",
    "maintenance": "chore",
}
_TITLE = [
    ("bug", re.compile(r"\b(fix|bug|crash|broken|error|fails?|regression|wrong)\b")),
    ("docs", re.compile(r"\b(docs?|documentation|readme|typo|docstrings?)\b")),
    ("test", re.compile(r"\b(tests?|coverage|flaky)\b")),
    ("refactor", re.compile(r"\b(refactor|rename|clean ?up|simplify|extract|move)\b")),
    ("chore", re.compile(r"\b(bump|upgrade|dependenc(y|ies)|ci|lint|chore)\b")),
    ("feature", re.compile(r"\b(add|support|implement|allow|new|feature|introduce)\b")),
]


def task_kind(labels: Iterable[str], title: str = "") -> str:
    for label in labels:
        name = label.strip().lower()
        name = name.split(":", 1)[-1].strip() if name.startswith(("type:", "kind:")) else name
        if name in _LABELS:
            return _LABELS[name]
    lowered = title.lower()
    for kind, pattern in _TITLE:
        if pattern.search(lowered):
            return kind
    return "other"


def area_of(path: str) -> str:
    """A file's path area: its top directory (`src/app/x.py` → `src`); `.` for top-level files."""
    head, sep, _ = path.strip("/").partition("/")
    return head if sep else "."


def areas_of(paths: Iterable[str]) -> list[str]:
    return sorted({area_of(p) for p in paths if p})
