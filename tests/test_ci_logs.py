"""Log excerpts of GitHub Actions job logs, written as Actions prints them.

The logs below carry what a real job log does: a BOM, a timestamp before every
line, ANSI colours, `##[group]`/`##[endgroup]` around each step's header, and
`##[error]` from the runner. `tests/test_ci_classify.py` reuses them.
"""

from __future__ import annotations

import random
import re
import tracemalloc
from collections.abc import AsyncIterator, Iterator

from bot.ci import logs
from bot.ci.logs import (
    LINE_LIMIT,
    NO_ERRORS,
    LogExcerpt,
    excerpt_stream,
    excerpt_text,
    failing_command,
    is_error_line,
)

GREEN, RED, CYAN, BOLD, RESET = "\x1b[32m", "\x1b[31m", "\x1b[36;1m", "\x1b[1m", "\x1b[0m"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def stamp(i: int) -> str:
    return f"2026-12-04T10:{i // 60 % 60:02d}:{i % 60:02d}.{i * 7919 % 10_000_000:07d}Z "


def step(command: str, output: list[str]) -> list[str]:
    """A `run:` step: its header group (the script in cyan, the shell) and its output."""
    return [
        f"##[group]Run {command}",
        f"{CYAN}{command}{RESET}",
        "shell: /usr/bin/bash -e {0}",
        "##[endgroup]",
        *output,
    ]


SETUP = [
    "##[group]Operating System",
    "Ubuntu",
    "22.04.4",
    "LTS",
    "##[endgroup]",
    "##[group]Run actions/checkout@v4",
    "with:",
    "  repository: acme/app",
    "##[endgroup]",
    "Syncing repository: acme/app",
    "[command]/usr/bin/git version",
    "git version 2.43.0",
    "##[group]Run actions/setup-python@v5",
    "with:",
    "  python-version: 3.11",
    "##[endgroup]",
    "Successfully set up CPython (3.11.9)",
    *step(
        "pip install -e '.[test]'",
        [
            "Collecting aiohttp>=3.10",
            "  Downloading aiohttp-3.10.5.tar.gz (7.5 MB)",
            "     \x1b[90m━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━\x1b[0m \x1b[32m7.5/7.5 MB\x1b[0m",
            "Successfully installed aiohttp-3.10.5 compound-0.1.0",
        ],
    ),
]
CLEANUP = ["Post job cleanup.", "[command]/usr/bin/git version", "Cleaning up orphan processes"]


def job(*steps: list[str], code: int | None = 1, end: list[str] | None = None) -> str:
    """A whole job log: set-up, the steps, the runner's verdict and its clean-up."""
    lines = [*SETUP, *(line for s in steps for line in s)]
    if code:
        lines.append(f"##[error]Process completed with exit code {code}.")
    lines += end if end is not None else CLEANUP
    return "\ufeff" + "".join(stamp(i) + line + "\n" for i, line in enumerate(lines))


def passing(start: int, count: int) -> list[str]:
    return [
        f"tests/test_mod{i % 40}.py::test_case_{i} {GREEN}PASSED{RESET}{' ' * 20}[{i * 100 // 20_000:3d}%]"
        for i in range(start, start + count)
    ]


PYTEST_FAILURE = [
    f"{RED}{BOLD}_________________________________ test_parse_date _________________________________{RESET}",
    "",
    "    def test_parse_date():",
    '        value = parse("2024-13-01")',
    ">       assert value.month == 1",
    f"{RED}E       AttributeError: 'NoneType' object has no attribute 'month'{RESET}",
    "",
    f"{RED}tests/test_dates.py{RESET}:12: AttributeError",
]
# pytest-instafail prints a failure as it happens: the traceback sits in the middle.
PYTEST = job(
    step(
        "pytest -v --instafail tests",
        [
            f"{BOLD}============================= test session starts =============================={RESET}",
            "platform linux -- Python 3.11.9, pytest-8.3.2, pluggy-1.5.0",
            *passing(0, 10_000),
            f"tests/test_dates.py::test_parse_date {RED}FAILED{RESET}                  [ 50%]",
            *PYTEST_FAILURE,
            *passing(10_000, 10_000),
            "=========================== short test summary info ============================",
            f"{RED}FAILED{RESET} tests/test_dates.py::test_parse_date - "
            "AttributeError: 'NoneType' object has no attribute 'month'",
            f"{RED}======================= {BOLD}1 failed{RESET}{RED}, "
            f"20000 passed in 61.20s (0:01:01) ======================={RESET}",
        ],
    )
)
MYPY = job(
    step(
        "mypy bot",
        [
            "bot/config.py:41: error: Incompatible return value type "
            '(got "int | None", expected "int")  [return-value]',
            'bot/web.py:88: error: Argument 1 to "get" has incompatible type "int"; expected "str"  [arg-type]',
            "Found 2 errors in 2 files (checked 57 source files)",
        ],
    )
)
RUFF = job(
    step(
        "ruff check .",
        [
            "bot/web.py:3:8: F401 [*] `os` imported but unused",
            "bot/web.py:120:89: E501 Line too long (97 > 88)",
            "Found 2 errors.",
            "[*] 1 fixable with the `--fix` option.",
        ],
    )
)
FLAKE8 = job(
    step(
        "flake8 bot",
        [
            "./bot/web.py:3:1: F401 'os' imported but unused",
            "./bot/web.py:9:80: E501 line too long (91 > 79 characters)",
        ],
    )
)
ESLINT = job(
    step(
        "npx eslint src",
        [
            "",
            "/home/runner/work/app/app/src/index.js",
            "  3:7  error  'unused' is assigned a value but never used  no-unused-vars",
            "  9:1  error  Unexpected console statement                 no-console",
            "",
            f"{RED}{BOLD}✖ 2 problems (2 errors, 0 warnings){RESET}",
        ],
    )
)
TSC = job(
    step(
        "npx tsc --noEmit",
        [
            "src/index.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.",
            "src/api.ts(14,22): error TS2339: Property 'nam' does not exist on type 'User'.",
        ],
    ),
    code=2,
)
NPM_BUILD = job(
    step(
        "npm run build",
        [
            "",
            "> app@1.0.0 build",
            "> webpack --mode production",
            "",
            "assets by status 1.2 KiB [cached] 1 asset",
            "ERROR in ./src/index.js 3:0-32",
            "Module not found: Error: Can't resolve './missing-module' in '/home/runner/work/app/app/src'",
            "webpack 5.91.0 compiled with 1 error in 812 ms",
            "npm ERR! code 1",
            "npm ERR! path /home/runner/work/app/app",
            "npm ERR! command failed",
            "npm ERR! command sh -c webpack --mode production",
        ],
    )
)
GO_TEST = job(
    step(
        "go test ./...",
        [
            "ok  \texample.com/calc/internal/parse\t0.004s",
            "--- FAIL: TestAdd (0.00s)",
            "    add_test.go:9: Add(1, 2) = 4; want 3",
            "FAIL",
            "FAIL\texample.com/calc\t0.002s",
            "FAIL",
        ],
    )
)
TIMEOUT = job(
    step("pytest -x tests/slow", [*passing(0, 300), "tests/test_slow.py::test_forever "]),
    code=None,
    end=[
        "##[error]The job running on runner GitHub Actions 12 has exceeded the maximum execution time of 10 minutes.",
        "##[error]The operation was canceled.",
        *CLEANUP,
    ],
)
SHUTDOWN = job(
    step("pytest tests", passing(0, 120)),
    code=None,
    end=[
        "##[error]The runner has received a shutdown signal. This can happen when the runner service is stopped,"
        " or a manually started runner is canceled.",
        "##[error]The operation was canceled.",
        *CLEANUP,
    ],
)


def clean(text: str) -> bool:
    """No ANSI, no timestamps, no Actions markers left."""
    return "\x1b" not in text and not STAMP.search(text) and "##[" not in text and "\ufeff" not in text


def test_pytest_failure_in_the_middle_of_20000_passing_lines() -> None:
    excerpt = excerpt_text(PYTEST)
    assert len(PYTEST) > 1_500_000 and len(excerpt) <= 10_000 and clean(excerpt)
    for line in PYTEST_FAILURE[2:]:  # the failure with its code context
        assert re.sub(r"\x1b\[[\d;]*m", "", line) in excerpt
    assert "Run pytest -v --instafail tests" in excerpt  # the step it belongs to
    assert "FAILED tests/test_dates.py::test_parse_date - AttributeError" in excerpt
    assert "1 failed, 20000 passed" in excerpt
    assert "error: Process completed with exit code 1." in excerpt
    assert excerpt.endswith("Cleaning up orphan processes")
    assert "tests/test_dates.py::test_parse_date FAILED" in excerpt
    for noise in ("test_case_5000 ", "test_case_15000 ", "Successfully installed", "Syncing repository"):
        assert noise not in excerpt
    assert re.search(r"\[… [\d,]+ lines …\]", excerpt)
    assert failing_command(PYTEST) == "pytest -v --instafail tests"


def test_each_tool_keeps_its_error_lines_and_step() -> None:
    cases = {
        MYPY: ("Run mypy bot", "bot/config.py:41: error: Incompatible return value", "Found 2 errors in 2 files"),
        RUFF: ("Run ruff check .", "bot/web.py:3:8: F401", "Found 2 errors."),
        FLAKE8: ("Run flake8 bot", "./bot/web.py:3:1: F401", "./bot/web.py:9:80: E501"),
        ESLINT: ("Run npx eslint src", "3:7  error  'unused'", "✖ 2 problems (2 errors, 0 warnings)"),
        TSC: ("Run npx tsc --noEmit", "error TS2322", "error TS2339", "exit code 2"),
        NPM_BUILD: (
            "Run npm run build",
            "ERROR in ./src/index.js",
            "Module not found: Error",
            "npm ERR! command failed",
        ),
        GO_TEST: (
            "Run go test ./...",
            "--- FAIL: TestAdd",
            "add_test.go:9: Add(1, 2) = 4; want 3",
            "FAIL\texample.com/calc",
        ),
        TIMEOUT: (
            "Run pytest -x tests/slow",
            "error: The job running on runner",
            "exceeded the maximum execution time",
        ),
        SHUTDOWN: (
            "Run pytest tests",
            "error: The runner has received a shutdown signal",
            "error: The operation was canceled.",
        ),
    }
    for log, wanted in cases.items():
        excerpt = excerpt_text(log, limit=3_000)
        assert len(excerpt) <= 3_000 and clean(excerpt), excerpt
        for text in wanted:
            assert text in excerpt, (text, excerpt)
        for noise in ("Syncing repository", "22.04.4", "actions/setup-python"):  # the last 15 lines always stay
            assert noise not in excerpt, excerpt
        assert excerpt.endswith("Cleaning up orphan processes")
    assert failing_command(TSC) == "npx tsc --noEmit"
    assert failing_command(SHUTDOWN) == "pytest tests"


def test_lines_are_cleaned() -> None:
    log = "".join(
        stamp(i) + line + "\n"
        for i, line in enumerate(
            [
                "##[group]Run make check",
                "make check",
                "##[endgroup]",
                "\x1b]8;;https://example.com\x07a link\x1b]8;;\x07 and \x1b[1;31mred\x1b[0m\x1b[K",
                "Downloading  10%\rDownloading  55%\rDownloading 100%\r",
                "##[warning]Node.js 16 actions are deprecated.",
                "##[error]make: *** [Makefile:3: check] Error 2",
            ]
        )
    )
    assert excerpt_text(log).split("\n") == [
        "Run make check",
        "make check",
        "a link and red",
        "Downloading 100%",
        "warning: Node.js 16 actions are deprecated.",
        "error: make: *** [Makefile:3: check] Error 2",
    ]
    crlf = "2026-12-04T10:00:00.0000000Z error: one\r\n2026-12-04T10:00:01Z two\r\n"
    assert excerpt_text(crlf) == "error: one\ntwo"


def test_utf8_and_ansi_split_across_chunks() -> None:
    text = stamp(0) + f"{RED}error: ünïcödé 日本語 🚀 {RESET}\n" + stamp(1) + "last ✓\n"
    data = text.encode()
    whole = excerpt_text(text)
    assert whole == "error: ünïcödé 日本語 🚀 \nlast ✓"
    for size in (1, 2, 3, 5):
        excerpt = LogExcerpt()
        for i in range(0, len(data), size):
            excerpt.feed(data[i : i + size])
        assert excerpt.result() == whole
    broken = LogExcerpt()
    broken.feed(b"error: bad \xff\xfe bytes \xe6\x97")
    assert broken.result() == "error: bad \ufffd\ufffd bytes \ufffd"


def test_chunking_does_not_change_the_excerpt() -> None:
    rng = random.Random(7)
    data = MYPY.encode() + PYTEST.encode()[:300_000] + NPM_BUILD.encode()
    expected = excerpt_text(data.decode())
    excerpt, i = LogExcerpt(), 0
    while i < len(data):
        size = rng.choice((1, 13, 700, 4096, 70_000))
        excerpt.feed(data[i : i + size])
        i += size
    assert excerpt.result() == expected


def test_windows_merge_and_gaps_are_marked() -> None:
    lines = [f"line {i}" for i in range(100)]
    lines[40] = "error: first"
    lines[45] = "error: second, within the first's context"
    lines[80] = "error: third, far away"
    excerpt = excerpt_text("\n".join(lines) + "\n").split("\n")
    first, second, third = (excerpt.index(t) for t in (lines[40], lines[45], lines[80]))
    assert excerpt[first + 1 : second] == lines[41:45]  # one block, no marker between
    assert excerpt[first - logs.BEFORE : first] == lines[40 - logs.BEFORE : 40]
    assert excerpt[0] == f"[… {40 - logs.BEFORE:,} lines …]"
    assert excerpt[third - logs.BEFORE - 1].startswith("[… ")
    assert excerpt[-1] == "line 99"


def test_too_many_blocks_keep_the_first_and_the_last() -> None:
    lines = []
    for n in range(500):
        lines += [f"noise {n}.{i}" for i in range(30)] + [f"error: block {n}"]
    lines.append("the end")
    excerpt = excerpt_text("\n".join(lines), limit=4_000)
    assert len(excerpt) <= 4_000
    assert "error: block 0" in excerpt and "error: block 499" in excerpt and "error: block 498" in excerpt
    assert "error: block 250" not in excerpt
    assert re.search(r"\[… [\d,]+ lines, [\d,]+ error blocks not shown …\]", excerpt)
    assert excerpt.endswith("the end")
    for limit in (300, 1_000, 25_000):
        assert len(excerpt_text("\n".join(lines), limit=limit)) <= limit


def test_a_huge_error_block_stays_within_the_limit() -> None:
    text = "".join(f"E   assertion detail {i}\n" for i in range(100_000)) + "done\n"
    excerpt = excerpt_text(text, limit=5_000)
    assert len(excerpt) <= 5_000
    assert excerpt.startswith("E   assertion detail 0\n") and "E   assertion detail 99999" in excerpt


def test_no_error_falls_back_to_the_tail() -> None:
    text = "".join(f"{stamp(i)}building {i}\n" for i in range(5_000))
    excerpt = excerpt_text(text, limit=1_000)
    assert excerpt.startswith(NO_ERRORS + "\n[… ") and excerpt.endswith("building 4999")
    assert len(excerpt) <= 1_000 and "building 4000" not in excerpt
    assert excerpt_text("") == ""
    assert failing_command(text) is None


def test_failing_command_is_the_step_of_the_first_runner_error() -> None:
    log = job(
        step(
            "pip install -r requirements.txt", ["ERROR: pip's dependency resolver does not currently take into account"]
        ),
        step("pytest", ["1 failed, 3 passed"]),
    )
    assert failing_command(log) == "pytest"  # not the install step's harmless ERROR line
    plain = "\n".join(["##[group]Run make all", "##[endgroup]", "cc -c x.c", "x.c:3:5: error: expected ';'"])
    assert failing_command(plain) == "make all"


def test_long_lines_are_cut_and_never_held_whole() -> None:
    text = "x" * 3_000_000 + " error: at the end of a long line\nerror: short\n"
    excerpt = excerpt_text(text)
    first = excerpt.split("\n")[0]
    assert len(first) <= LINE_LIMIT + len(logs.CUT) and first.endswith(logs.CUT)
    assert excerpt.endswith("error: short")
    progress = "".join(f"\rDownloading {i % 100:3d}%" for i in range(200_000)) + "\rDone downloading\n"
    assert excerpt_text(progress) == f"{NO_ERRORS}\nDone downloading"


async def test_50_mb_log_streamed_in_bounded_memory() -> None:
    size = 50 * 1024 * 1024
    passing_block = "".join(stamp(i) + line + "\n" for i, line in enumerate(passing(0, 1_000))).encode()
    failure = "".join(stamp(0) + line + "\n" for line in ["FAILURES", *PYTEST_FAILURE]).encode()
    redraws = (("y" * 1_000 + "\r") * 64).encode()  # 64 KB of a progress bar that never ends its line

    async def chunks() -> AsyncIterator[bytes]:
        def raw() -> Iterator[bytes]:
            sent = 0
            while sent < size // 2:
                yield passing_block
                sent += len(passing_block)
            yield failure
            for _ in range(320):  # a 20 MB "line"
                yield redraws
            yield b"redrawn\n"
            while sent < size:
                yield passing_block
                sent += len(passing_block)
            yield (stamp(1) + "##[error]Process completed with exit code 1.\n").encode()

        for block in raw():
            for i in range(0, len(block), 64 * 1024):
                yield block[i : i + 64 * 1024]

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        excerpt = await excerpt_stream(chunks())
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, peak
    assert "E       AttributeError: 'NoneType' object has no attribute 'month'" in excerpt
    assert "    def test_parse_date():" in excerpt and "redrawn" in excerpt
    assert excerpt.endswith("error: Process completed with exit code 1.") and len(excerpt) <= 10_000


def test_the_look_out_misses_no_error_line() -> None:
    lines = [
        "FAILED tests/a.py::t - x",
        "tests/a.py::t FAILED",
        "FAIL src/x.test.js",
        "ERROR in ./src/a.js",
        "E       assert 1",
        "Traceback (most recent call last):",
        "ValueError: bad",
        "error[E0308]: mismatched types",
        "x.c:3:5: error: ';'",
        "src/a.ts(3,7): error TS2322: no",
        "bot/a.py:1:8: F401 unused",
        "  3:7  error  'x' unused  no-unused-vars",
        "npm ERR! code 1",
        "npm error code 1",
        "fatal: not a git repository",
        "panic: runtime error",
        "AssertionError",
        "exit status 2",
        "Found 3 errors in 1 file",
        "--- FAIL: TestAdd",
        "1 failed, 3 passed",
        "  2 failing",
        "would reformat a.py",
        "✖ 2 problems",
        "  ● sum › adds",
    ]
    for line in lines:
        assert is_error_line(line), line
        assert logs._HINT.search(line), line
    for line in ("tests/test_errors.py::test_error_message PASSED", "0 errors, 0 failed", "Success: no issues found"):
        assert not is_error_line(line), line
