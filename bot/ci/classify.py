"""What kind of failure a failing check is: one of `CATEGORIES`.

Deterministic and table-driven: `RULES` is a list of (category, pattern,
weak) searched in the check's annotations and log (the excerpt, or any text
the check gave). Precedence, first that applies wins:

1. the conclusion `timed_out`, or a strong `timeout` rule (the runner's own
   words: "exceeded the maximum execution time", "has timed out after");
2. a strong `infra` rule: the runner died or the machine gave out ("shutdown
   signal", "No space left on device", "lost communication with the server");
3. code evidence, the strong rules of `type`, `lint`, `test`, `build`: the
   first of them in that order (`CODE`). A type checker's or linter's output
   is the most specific; `build` is last because its marks (npm ERR!,
   ModuleNotFoundError, SyntaxError) also show up as side effects of the
   others. The name does not overrule it: a job called "build" often runs
   the tests too;
4. weak rules, in table order: network trouble (could not resolve host, 502
   and 503 from a registry, "The operation was canceled"), then "timed out"
   anywhere. They only count when nothing in 1-3 matched, since a failing
   test may print them too;
5. the check name's hint ("lint", "mypy", "unit tests" …);
6. `other`.

To extend: add a row to `RULES` (or `NAME_HINTS`); the order within a
category does not matter.
"""

from __future__ import annotations

import re
from typing import NamedTuple

CATEGORIES = ("lint", "type", "test", "build", "timeout", "infra", "other")
CODE = ("type", "lint", "test", "build")  # the order in which code evidence wins


class Rule(NamedTuple):
    category: str
    pattern: re.Pattern[str]
    weak: bool = False  # counts only without stronger evidence (step 4)


def _rule(category: str, pattern: str, weak: bool = False) -> Rule:
    return Rule(category, re.compile(pattern, re.M), weak)


RULES: tuple[Rule, ...] = (
    # timeout
    _rule("timeout", r"exceeded the maximum execution time|has timed out after|The action '.*' has timed out"),
    # infra: the runner and the machine
    _rule(
        "infra",
        r"runner has received a shutdown signal|No space left on device|lost communication with the server"
        r"|The hosted runner encountered an error|We stopped hearing from runner|runner .* (?:lost|went offline)",
    ),
    _rule(
        "infra",
        r"npm ERR! code E50[234]|npm ERR! 50[234] |HTTP error 50[234]|returned error: 50[234]"
        r"|50[234] Server Error: .* for url",
    ),  # a package registry's 5xx
    _rule(
        "infra",
        r"Could not resolve host|Temporary failure in name resolution|Name or service not known"
        r"|\b50[234] (?:Bad Gateway|Service Unavailable|Gateway Time-?out)|(?:HTTP|status|error:?) 50[234]\b"
        r"|Connection reset by peer|ECONNRESET|ETIMEDOUT|EAI_AGAIN|The operation was canceled"
        r"|API rate limit exceeded",
        weak=True,
    ),
    _rule(
        "timeout", r"(?i)\btimed out\b|\bTimeout exceeded\b", weak=True
    ),  # after the network's "Connection timed out"
    # type checkers: mypy, pyright, tsc
    _rule("type", r"\.pyi?:\d+(?::\d+)?: error: |^Found \d+ errors? in \d+ files? \(checked"),
    _rule("type", r"\.pyi?:\d+:\d+ - error: |^\d+ errors?, \d+ warnings?, \d+ (?:informations?|notes?)\b"),
    _rule("type", r"\berror TS\d{4,5}\b"),
    # linters and formatters: ruff, flake8, pylint, eslint, black, isort, prettier
    _rule(
        "lint",
        r"^\s*\S+\.pyi?:\d+:\d+: [A-Z]{1,3}\d{2,4}\b|^\s*--> \S+\.pyi?:\d+:\d+|^Found \d+ errors?\.$"
        r"|\[\*\] \d+ fixable",
    ),
    _rule("lint", r"^\s+\d+:\d+\s+error\s{2,}\S|^✖ \d+ problems? \(\d+ errors?"),
    _rule(
        "lint",
        r"[Ww]ould reformat|\d+ files? would be reformatted|Oh no! 💥|Imports are incorrectly sorted"
        r"|Code style issues found|\[warn\] .*Prettier|\bSC\d{4}\b",
    ),
    # test runners: pytest, unittest, jest, go test, cargo test, mocha and rspec
    _rule(
        "test",
        r"^FAILED \S+::|^=+ .*\b\d+ failed\b|^\d+ failed\b|^E {3,}\S|error during collection"
        r"|^FAILED \((?:failures|errors)=\d+|^(?:FAIL|ERROR): test",
    ),
    _rule("test", r"^Tests:\s+.*\d+ failed|^\s*● .+ › |^FAIL\s+\S+\.(?:test|spec)\.[cm]?[jt]sx?\b"),
    _rule(
        "test",
        r"^--- FAIL: |^FAIL\s+\S+\s+[\d.]+s$|test result: FAILED|^\s+\d+ failing$|\d+ examples?, [1-9]\d* failures?",
    ),
    # build: installing, compiling, bundling
    _rule(
        "build",
        r"Could not build wheels|Failed building wheel|subprocess-exited-with-error"
        r"|No matching distribution found|ResolutionImpossible|ModuleNotFoundError: |ImportError: "
        r"|\b(?:SyntaxError|IndentationError): ",
    ),
    _rule(
        "build",
        r"^npm (?:ERR!|error) |ERR_PNPM_|error\[E\d{4}\]|error: could not compile"
        r"|\.(?:c|cc|cpp|cxx|h|hpp):\d+:\d+: (?:fatal )?error:|make(?:\[\d+\])?: \*\*\*|undefined reference to"
        r"|Module not found: Error|^ERROR in |Build failed|BUILD FAILED|COMPILATION ERROR|cannot find package",
    ),
)

NAME_HINTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("type", re.compile(r"(?i)mypy|pyright|typecheck|type-check|\btypes?\b|\btsc\b")),
    ("lint", re.compile(r"(?i)lint|ruff|flake8|pylint|black|isort|prettier|format|style|pre-commit|clippy")),
    ("test", re.compile(r"(?i)test|pytest|jest|vitest|mocha|spec|unit|e2e|integration|coverage")),
    ("build", re.compile(r"(?i)build|compile|install|package|wheel|bundle|docker")),
)


# Raw log text (not an excerpt) starts its lines with a timestamp and colours them.
_RAW = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?|\x1b\[[0-?]*[ -/]*[@-~]|##\[\w+\]", re.M)


def name_hint(name: str) -> str | None:
    """The category a check's name suggests ("lint", "mypy (3.12)", "unit tests")."""
    return next((category for category, pattern in NAME_HINTS if pattern.search(name)), None)


def evidence(text: str) -> tuple[set[str], list[str]]:
    """The categories with a strong rule matching `text`, and the weak ones in table order."""
    strong: set[str] = set()
    weak: list[str] = []
    for rule in RULES:
        if rule.category in strong or (rule.weak and rule.category in weak):
            continue
        if rule.pattern.search(text):
            if rule.weak:
                weak.append(rule.category)
            else:
                strong.add(rule.category)
    weak = [category for category in weak if category not in strong]
    return strong, weak


def classify(name: str, conclusion: str, annotations: list[str], log: str) -> str:
    """The failure's category; see the module's docstring for the precedence."""
    if conclusion == "timed_out":
        return "timeout"
    strong, weak = evidence(_RAW.sub("", "\n".join([*annotations, log])))
    for category in ("timeout", "infra"):
        if category in strong:
            return category
    for category in CODE:
        if category in strong:
            return category
    if weak:
        return weak[0]
    return name_hint(name) or "other"
