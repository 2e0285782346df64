"""Which kind of failure a failing check is: lint, type, test, build, timeout, infra or other.

Deterministic and table-driven: the first rule whose pattern matches the
check's log, annotations and output wins; the rules are ordered from the
most specific evidence (a timeout, the runner dying) to the least. Only when
the text gives no evidence does the check's name decide (a check called
"lint" or "mypy"). The category is stored with the round and feeds learning.
"""

from __future__ import annotations

import re

CATEGORIES = ("lint", "type", "test", "build", "timeout", "infra", "other")

RULES: list[tuple[str, re.Pattern[str]]] = [
    ("timeout", re.compile(
        r"timed out|exceeded the maximum execution time|The job running on runner .* has exceeded|Timeout of \d+", re.I)),
    ("infra", re.compile(
        r"runner has received a shutdown signal|No space left on device|Could not resolve host"
        r"|lost communication with the server|Temporary failure in name resolution|\b50[23] (?:Bad Gateway|Service Unavailable)"
        r"|Connection reset by peer|The hosted runner encountered an error", re.I)),
    ("type", re.compile(
        r"\bmypy\b|\bpyright\b|error TS\d+|Found \d+ errors? in \d+ files?|\[(?:return-value|arg-type|assignment|attr-defined|call-arg|union-attr|override|misc)\]"
        r"|Incompatible (?:return value|types)|reportGeneralTypeIssues|is not assignable to", re.I)),
    ("lint", re.compile(
        r"^\S+:\d+:\d+: [A-Z]{1,3}\d{2,4}\b|\bruff\b|\bflake8\b|\bpylint\b|\beslint\b|would reformat|\bblack\b.*--check"
        r"|\bisort\b|Code style issues|prettier|\d+ problems? \(\d+ errors?", re.I | re.M)),
    ("test", re.compile(
        r"^FAILED |\b\d+ failed\b|=+ FAILURES =+|AssertionError|--- FAIL:|Tests?:\s+\d+ failed|\bFAIL\s+\S+\.(?:test|spec)\."
        r"|Ran \d+ tests?.*\n+FAILED|\btest result: FAILED", re.I | re.M)),
    ("build", re.compile(
        r"Could not build wheels|error\[E\d+\]|\bSyntaxError\b|ModuleNotFoundError|ImportError|npm ERR!|\bmake: \*\*\*"
        r"|compilation terminated|error: command '.*' failed|Build failed|cannot find module|undefined reference", re.I)),
]

NAME_HINTS: list[tuple[str, re.Pattern[str]]] = [
    ("type", re.compile(r"type|mypy|pyright|tsc", re.I)),
    ("lint", re.compile(r"lint|ruff|flake8|format|style|eslint|prettier|pre-commit", re.I)),
    ("test", re.compile(r"test|pytest|jest|spec|unit|e2e", re.I)),
    ("build", re.compile(r"build|compile|install|package", re.I)),
]


def classify(name: str, conclusion: str, annotations: list[str], log: str) -> str:
    if conclusion == "timed_out":
        return "timeout"
    text = "\n".join([*annotations, log])
    for category, pattern in RULES:
        if pattern.search(text):
            return category
    for category, pattern in NAME_HINTS:
        if pattern.search(name):
            return category
    return "other"
