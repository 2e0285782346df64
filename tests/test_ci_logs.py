"""CI log excerpts and failure categories, on logs shaped like GitHub Actions prints them."""

from __future__ import annotations

import tracemalloc

import pytest

from bot.ci.classify import CATEGORIES, classify
from bot.ci.logs import LogExcerpt, excerpt_stream, excerpt_text, failing_command

TS = "2026-12-04T10:00:00.1234567Z "


def actions_log(command: str, lines: list[str], code: int = 1) -> str:
    body = [f"##[group]Run {command}", *lines, "##[endgroup]"]
    if code:
        body.append(f"##[error]Process completed with exit code {code}.")
    return "".join(f"{TS}{line}\n" for line in body)


PYTEST = actions_log("pytest -q", [
    *(f"tests/test_{i}.py . [ {i}%]" for i in range(20_000)),
    "\x1b[31m=================================== FAILURES ===================================\x1b[0m",
    "________________________________ test_feature ________________________________",
    "    def test_feature():",
    ">       assert feature() == 42",
    "E       assert 41 == 42",
    "tests/test_feature.py:5: AssertionError",
    "FAILED tests/test_feature.py::test_feature - assert 41 == 42",
    "1 failed, 20000 passed in 12.34s",
    *(f"post step {i}" for i in range(40)),
])


def test_the_error_in_the_middle_of_a_long_log_is_found_with_its_context():
    excerpt = excerpt_text(PYTEST, limit=10_000)
    assert len(excerpt) <= 10_000
    assert "E       assert 41 == 42" in excerpt and ">       assert feature() == 42" in excerpt
    assert "FAILED tests/test_feature.py::test_feature" in excerpt
    assert "Run pytest -q" in excerpt  # the step it belongs to
    assert "error: Process completed with exit code 1." in excerpt  # the log's end
    assert "tests/test_100.py" not in excerpt  # the noise is not
    assert "\x1b[" not in excerpt and TS not in excerpt and "##[" not in excerpt
    assert "lines …]" in excerpt


def test_many_error_blocks_keep_the_first_and_the_last_within_the_limit():
    lines = []
    for i in range(2_000):
        lines += [f"ok {i}"] * 20 + [f"src/m{i}.py:{i}:1: error: problem number {i}"]
    excerpt = excerpt_text(actions_log("mypy .", lines), limit=4_000)
    assert len(excerpt) <= 4_000
    assert "problem number 0" in excerpt and "problem number 1999" in excerpt
    assert "error blocks left out" in excerpt


def test_chunks_split_inside_utf8_and_escape_sequences():
    text = f"{TS}##[group]Run make\n{TS}\x1b[1;31merror: café ☕ broke\x1b[0m\n{TS}done\n".encode()
    whole = excerpt_text(text.decode())
    for size in (1, 2, 3, 7):
        piece = LogExcerpt()
        for start in range(0, len(text), size):
            piece.feed(text[start:start + size])
        assert piece.result() == whole
    assert "error: café ☕ broke" in whole


def test_progress_bars_and_endless_lines():
    log = f"{TS}Downloading 10%\r20%\r100%\n" + "x" * 5_000_000 + f"\n{TS}fatal: could not read\n"
    excerpt = excerpt_text(log)
    assert "Downloading" not in excerpt.splitlines()[0] or "100%" in excerpt
    assert "fatal: could not read" in excerpt and len(excerpt) <= 10_000


def test_no_error_line_falls_back_to_the_tail():
    excerpt = excerpt_text("".join(f"{TS}line {i}\n" for i in range(1000)))
    assert "line 999" in excerpt and "line 10\n" not in excerpt


def test_the_failing_step_command():
    assert failing_command(PYTEST) == "pytest -q"
    log = actions_log("pip install -e .", ["ok"], 0) + actions_log("ruff check .", ["a.py:1:1: F401 unused"])
    assert failing_command(log) == "ruff check ."


async def test_a_50_mb_log_is_read_in_bounded_memory():
    noise = "".join(f"{TS}tests/test_x.py::test_{i} PASSED [ 50%]\n" for i in range(1000)).encode()
    middle = f"{TS}E   ValueError: the needle\n{TS}FAILED tests/test_y.py::test_needle\n".encode()

    async def chunks():
        sent = 0
        while sent < 25 * 1024 * 1024:
            yield noise
            sent += len(noise)
        yield middle
        while sent < 50 * 1024 * 1024:
            yield noise
            sent += len(noise)

    tracemalloc.start()
    try:
        excerpt = await excerpt_stream(chunks())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "E   ValueError: the needle" in excerpt and "test_needle" in excerpt
    assert peak < 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "conclusion", "log", "expected"),
    [
        ("pytest", "failure", PYTEST, "test"),
        ("check", "failure", "feature.py:2: error: Incompatible return value type (got \"str\", expected \"int\")  [return-value]\nFound 1 error in 1 file (checked 2 source files)", "type"),
        ("check", "failure", "src/app.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.", "type"),
        ("check", "failure", "feature.py:1:8: F401 [*] `os` imported but unused\nFound 1 error.", "lint"),
        ("check", "failure", "would reformat src/app.py\nOh no! 1 file would be reformatted.", "lint"),
        ("check", "failure", "/app/src/a.js\n  1:7  error  'x' is assigned a value but never used  no-unused-vars\n✖ 1 problem (1 error, 0 warnings)", "lint"),
        ("check", "failure", "--- FAIL: TestAdd (0.00s)\n    add_test.go:9: got 3, want 4\nFAIL", "test"),
        ("check", "failure", "npm ERR! code ELIFECYCLE\nnpm ERR! errno 1", "build"),
        ("check", "failure", "error[E0308]: mismatched types", "build"),
        ("build", "timed_out", "", "timeout"),
        ("check", "failure", "Error: The operation was canceled.\nThe job running on runner GitHub Actions 2 has exceeded the maximum execution time of 360 minutes.", "timeout"),
        ("check", "failure", "##[error]The runner has received a shutdown signal.", "infra"),
        ("check", "failure", "OSError: [Errno 28] No space left on device", "infra"),
        ("lint", "failure", "Process completed with exit code 1.", "lint"),  # the name decides when the log says nothing
        ("deploy", "failure", "Process completed with exit code 1.", "other"),
    ],
)
def test_categories(name, conclusion, log, expected):
    assert expected in CATEGORIES
    assert classify(name, conclusion, [], log) == expected


def test_annotations_count_as_evidence():
    assert classify("ci", "failure", ["app.py:3: failure: mypy: Incompatible types in assignment"], "") == "type"
