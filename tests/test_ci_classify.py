"""Failure categories, from Actions-shaped logs (those of `test_ci_logs`) and the texts checks give."""

from __future__ import annotations

import pytest

from bot.ci.classify import CATEGORIES, CODE, NAME_HINTS, RULES, classify, evidence, name_hint
from bot.ci.logs import excerpt_text
from tests.test_ci_logs import (
    ESLINT,
    FLAKE8,
    GO_TEST,
    MYPY,
    NPM_BUILD,
    PYTEST,
    RUFF,
    SHUTDOWN,
    TIMEOUT,
    TSC,
    job,
    passing,
    step,
)

PIP_WHEELS = job(
    step(
        "pip install -e .",
        [
            "Building wheel for pycairo (pyproject.toml): started",
            "  error: subprocess-exited-with-error",
            "  × Building wheel for pycairo (pyproject.toml) did not run successfully.",
            "  Dependency 'cairo' is required but not found.",
            "ERROR: Could not build wheels for pycairo, which is required to install pyproject.toml-based projects",
        ],
    )
)
IMPORT_AT_BUILD = job(
    step(
        "python -m build && python -c 'import app'",
        [
            "Successfully built app-0.1.0.tar.gz and app-0.1.0-py3-none-any.whl",
            "Traceback (most recent call last):",
            '  File "<string>", line 1, in <module>',
            '  File "/home/runner/work/app/app/app/__init__.py", line 3, in <module>',
            "    from app.settings import load",
            "ModuleNotFoundError: No module named 'app.settings'",
        ],
    )
)
CARGO = job(
    step(
        "cargo build --locked",
        [
            "   Compiling app v0.1.0 (/home/runner/work/app/app)",
            "error[E0308]: mismatched types",
            " --> src/main.rs:4:18",
            "  |",
            '4 |     let n: u32 = "four";',
            "  |            ---   ^^^^^^ expected `u32`, found `&str`",
            'error: could not compile `app` (bin "app") due to 1 previous error',
        ],
    ),
    code=101,
)
JEST = job(
    step(
        "npx jest --ci",
        [
            "FAIL src/sum.test.js",
            "  ● sum › adds 1 + 2 to equal 3",
            "",
            "    expect(received).toBe(expected) // Object.is equality",
            "    Expected: 3",
            "    Received: 4",
            "Tests:       1 failed, 11 passed, 12 total",
        ],
    )
)
UNITTEST = job(
    step(
        "python -m unittest -v",
        [
            "test_add (tests.test_calc.CalcTest.test_add) ... FAIL",
            "=" * 70,
            "FAIL: test_add (tests.test_calc.CalcTest.test_add)",
            "-" * 70,
            "Traceback (most recent call last):",
            "AssertionError: 3 != 4",
            "-" * 70,
            "Ran 12 tests in 0.004s",
            "",
            "FAILED (failures=1)",
        ],
    )
)
BLACK = job(
    step(
        "black --check .",
        [
            "would reformat /home/runner/work/app/app/bot/web.py",
            "Oh no! 💥 💔 💥",
            "1 file would be reformatted, 56 files would be left unchanged.",
        ],
    )
)
PYRIGHT = job(
    step(
        "pyright",
        [
            '/home/runner/work/app/app/bot/web.py:12:5 - error: "parse" is not defined (reportUndefinedVariable)',
            "1 error, 0 warnings, 0 informations ",
        ],
    )
)
NO_SPACE = job(
    step(
        "pytest",
        [
            *passing(0, 50),
            "OSError: [Errno 28] No space left on device: '/tmp/pytest-of-runner'",
            "FAILED tests/test_mod1.py::test_case_51 - OSError: [Errno 28] No space left on device",
            "1 failed, 50 passed",
        ],
    )
)
DNS = job(
    step(
        "pip install -e .",
        [
            "WARNING: Retrying (Retry(total=4, connect=None)) after connection broken by "
            "'NewConnectionError: Failed to establish a"
            " new connection: [Errno -3] Temporary failure in name resolution': /simple/aiohttp/",
            "ERROR: Could not find a version that satisfies the requirement aiohttp>=3.10 (from compound) "
            "(from versions: none)",
        ],
    )
)
REGISTRY_503 = job(
    step("npm ci", ["npm ERR! code E503", "npm ERR! 503 Service Unavailable - GET https://registry.npmjs.org/react"])
)
CANCELED = job(step("pytest", passing(0, 30)), code=None, end=["##[error]The operation was canceled."])


@pytest.mark.parametrize(
    ("name", "log", "expected"),
    [
        ("tests", PYTEST, "test"),
        ("mypy", MYPY, "type"),
        ("lint", RUFF, "lint"),
        ("flake8", FLAKE8, "lint"),
        ("eslint", ESLINT, "lint"),
        ("typecheck", TSC, "type"),
        ("build", NPM_BUILD, "build"),
        ("go", GO_TEST, "test"),
        ("tests", TIMEOUT, "timeout"),
        ("tests", SHUTDOWN, "infra"),
        ("install", PIP_WHEELS, "build"),
        ("package", IMPORT_AT_BUILD, "build"),
        ("rust", CARGO, "build"),
        ("web", JEST, "test"),
        ("unit", UNITTEST, "test"),
        ("style", BLACK, "lint"),
        ("pyright", PYRIGHT, "type"),
        ("tests", NO_SPACE, "infra"),
        ("ci", DNS, "infra"),
        ("ci", REGISTRY_503, "infra"),
        ("tests", CANCELED, "infra"),
    ],
)
def test_actions_logs_by_category(name: str, log: str, expected: str) -> None:
    assert classify(name, "failure", [], excerpt_text(log)) == expected  # what Compound passes: the excerpt
    assert classify("ci", "failure", [], log) == expected  # the whole log, no hint from the name


def test_strong_log_evidence_beats_the_name() -> None:
    assert classify("mypy", "failure", [], excerpt_text(PYTEST)) == "test"
    assert classify("lint", "failure", [], excerpt_text(TSC)) == "type"
    assert classify("build", "failure", [], excerpt_text(ESLINT)) == "lint"  # `npm run lint` also says npm ERR!
    # tsc inside `npm run build`: the type errors are the cause, npm's complaint the consequence
    tsc_in_npm = job(
        step("npm run build", ["src/a.ts(1,7): error TS2322: Type 'string' is not assignable.", "npm ERR! code 2"])
    )
    assert classify("build", "failure", [], excerpt_text(tsc_in_npm)) == "type"


def test_the_name_decides_only_without_evidence() -> None:
    # a job called "build" that also runs the tests: failing tests (and a ModuleNotFoundError in them)
    both = "E       ModuleNotFoundError: No module named 'x'\nFAILED tests/test_a.py::test_a - ModuleNotFoundError"
    assert classify("tests", "failure", [], both) == "test"
    assert classify("build", "failure", [], both) == "test"
    bare = "error: Process completed with exit code 1."
    assert classify("lint", "failure", [], bare) == "lint"
    assert classify("Type check (3.12)", "failure", [], bare) == "type"
    assert classify("unit tests", "failure", [], bare) == "test"
    assert classify("deploy", "failure", [], bare) == "other"
    assert classify("deploy", "failure", [], "") == "other"


def test_timeouts() -> None:
    assert classify("lint", "timed_out", [], excerpt_text(RUFF)) == "timeout"  # the conclusion wins over all
    step_timeout = "error: The action 'Run tests' has timed out after 10 minutes."
    assert classify("tests", "failure", [], step_timeout) == "timeout"
    # a test's own "timed out" is a failing test; alone it means a timeout
    assert (
        classify("tests", "failure", [], "FAILED tests/test_io.py::test_read - TimeoutError: read timed out") == "test"
    )
    assert classify("ci", "failure", [], "request timed out while waiting") == "timeout"
    assert classify("ci", "failure", [], "curl: (28) Connection timed out after 5001 ms") == "timeout"


def test_weak_infra_needs_no_code_evidence() -> None:
    canceled_with_tests = "FAILED tests/test_a.py::test_a - assert 1 == 2\n1 failed\nerror: The operation was canceled."
    assert classify("tests", "failure", [], canceled_with_tests) == "test"
    network_in_a_test = (
        "E   requests.exceptions.ConnectionError: Could not resolve host: api.example.com\n1 failed, 3 passed"
    )
    assert classify("tests", "failure", [], network_in_a_test) == "test"
    assert (
        classify(
            "tests",
            "failure",
            [],
            "fatal: unable to access 'https://github.com/a/b/': Could not resolve host: github.com",
        )
        == "infra"
    )


def test_annotations_count() -> None:
    shutdown = [".github:1: failure: The runner has received a shutdown signal."]
    assert classify("tests", "failure", shutdown, "") == "infra"
    matcher = ["bot/web.py:3: failure: F401 'os' imported but unused", "bot/web.py:3:1: F401 'os' imported but unused"]
    assert classify("ci", "failure", matcher, "") == "lint"


def test_the_table_is_consistent() -> None:
    assert CATEGORIES == ("lint", "type", "test", "build", "timeout", "infra", "other")
    assert {rule.category for rule in RULES} <= set(CATEGORIES) - {"other"}
    assert set(CODE) | {category for category, _ in NAME_HINTS} <= set(CATEGORIES)
    assert name_hint("Lint / ruff") == "lint" and name_hint("mypy (3.11)") == "type" and name_hint("deploy") is None
    strong, weak = evidence(excerpt_text(SHUTDOWN))
    assert "infra" in strong and "infra" not in weak
    logs = [PYTEST, MYPY, RUFF, ESLINT, TSC, NPM_BUILD, GO_TEST, TIMEOUT, SHUTDOWN, CARGO, JEST, DNS]
    first = [classify("ci", "failure", [], excerpt_text(log)) for log in logs]
    assert first == [classify("ci", "failure", [], excerpt_text(log)) for log in logs]  # deterministic
    assert set(first) <= set(CATEGORIES)
