"""The CI log excerpt (`bot.ci.logs.excerpt_stream`) on a 50 MB Actions job log.

Generates an Actions-shaped job log (BOM, a timestamp on every line, ANSI
colours, `##[group]` steps, ~500,000 lines of passing pytest output with a
failure and its traceback in the middle, a progress bar redrawn with `\\r`,
the runner's `##[error]` and clean-up) into a temporary file, then measures
in the same run, each in a fresh process:

- excerpt: `excerpt_stream` over the file read in 64 KB chunks;
- naive: read the whole file, `splitlines()`, keep the last 200 lines.

Time (wall and CPU, median of --runs) is measured without tracemalloc, which
slows Python down; memory in a separate process each: tracemalloc's peak, and
the RSS growth (VmHWM at the end minus VmRSS before reading, /proc/self/status).

    .venv/bin/python bench/logtrim.py [--mib 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 64 * 1024
MIDDLE_ERROR = "E       AttributeError: 'NoneType' object has no attribute 'month'"


def stamp(i: int) -> str:
    return f"2026-12-04T10:{i // 60 % 60:02d}:{i % 60:02d}.{i * 7919 % 10_000_000:07d}Z "


def make_log(path: Path, mib: int) -> int:
    """Write the log; returns its size in bytes."""

    def lines(texts: list[str], start: int = 0) -> bytes:
        return "".join(stamp(start + i) + t + "\n" for i, t in enumerate(texts)).encode()

    passing = [
        lines(
            [
                f"tests/test_mod{i % 40}.py::test_case_{b}_{i} \x1b[32mPASSED\x1b[0m{' ' * 16}[{i % 100:3d}%]"
                for i in range(1_000)
            ],
            b,
        )
        for b in range(8)
    ]
    head = lines(
        [
            "##[group]Run actions/checkout@v4",
            "with:",
            "  repository: acme/app",
            "##[endgroup]",
            "Syncing repository: acme/app",
            "##[group]Run pip install -e '.[test]'",
            "##[endgroup]",
            "Downloading aiohttp-3.10.5.tar.gz" + "".join(f"\r  {p}% ━━━━━━━━━━━━" for p in range(101)),
            "Successfully installed aiohttp-3.10.5",
            "##[group]Run pytest -v --instafail tests",
            "\x1b[36;1mpytest -v --instafail tests\x1b[0m",
            "shell: /usr/bin/bash -e {0}",
            "##[endgroup]",
        ]
    )
    failure = lines(
        [
            "tests/test_dates.py::test_parse_date \x1b[31mFAILED\x1b[0m   [ 50%]",
            "\x1b[31m\x1b[1m_______________ test_parse_date _______________\x1b[0m",
            "",
            "    def test_parse_date():",
            '        value = parse("2024-13-01")',
            ">       assert value.month == 1",
            f"\x1b[31m{MIDDLE_ERROR}\x1b[0m",
            "",
            "\x1b[31mtests/test_dates.py\x1b[0m:12: AttributeError",
        ]
    )
    end = lines(
        [
            "FAILED tests/test_dates.py::test_parse_date - AttributeError: 'NoneType' object has no attribute",
            "\x1b[31m========== 1 failed, 505999 passed in 612.20s (0:10:12) ==========\x1b[0m",
            "##[error]Process completed with exit code 1.",
            "Post job cleanup.",
            "Cleaning up orphan processes",
        ]
    )
    size, written, n = mib * 1024 * 1024, 0, 0
    with path.open("wb") as f:
        written += f.write(b"\xef\xbb\xbf" + head)
        while written < size // 2:
            written += f.write(passing[n % 8])
            n += 1
        written += f.write(failure)
        while written < size - len(end):
            written += f.write(passing[n % 8])
            n += 1
        written += f.write(end)
    return written


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def excerpt(path: Path) -> str:
    from bot.ci.logs import excerpt_stream

    return asyncio.run(excerpt_stream(file_chunks(path)))


def naive(path: Path) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-200:])


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(target: str, path: Path, memory: bool) -> dict[str, float | int | bool]:
    """One run of one target in this (fresh) process."""
    run = {"excerpt": excerpt, "naive": naive}[target]
    if target == "excerpt":
        import bot.ci.logs  # noqa: F401  (imports are not the excerpt's cost)
    rss_before = status_kib("VmRSS")
    if memory:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    out = run(path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    return {
        "wall": wall,
        "cpu": cpu,
        "peak": peak,
        "rss_growth_kib": status_kib("VmHWM") - rss_before,
        "chars": len(out),
        "found": MIDDLE_ERROR in out,
    }


def child(target: str, path: Path, memory: bool) -> dict[str, float | int | bool]:
    argv = [sys.executable, __file__, "--child", target, "--file", str(path)] + (["--memory"] if memory else [])
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=("excerpt", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.file, args.memory)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.log"
        size = make_log(path, args.mib)
        with path.open("rb") as f:
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(CHUNK), b""))
        print(
            f"log: {size / 2**20:.1f} MiB, {count:,} lines; "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; {args.runs} timed runs per target\n"
        )
        rows = {}
        for target in ("excerpt", "naive"):
            child(target, path, memory=False)  # a warm-up: the page cache, the .pyc files
            timed = [child(target, path, memory=False) for _ in range(args.runs)]
            rows[target] = (timed, child(target, path, memory=True))
    print(
        "| target | wall (median) | CPU (median) | MiB/s | tracemalloc peak | RSS growth | output "
        "| error in the middle kept |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for target, (timed, mem) in rows.items():
        wall = statistics.median(r["wall"] for r in timed)
        cpu = statistics.median(r["cpu"] for r in timed)
        print(
            f"| {target} | {wall:.2f} s | {cpu:.2f} s | {size / 2**20 / wall:,.0f} | {mem['peak'] / 2**20:.2f} MiB "
            f"| {mem['rss_growth_kib'] / 1024:.1f} MiB | {mem['chars']:,} chars | {'yes' if mem['found'] else 'no'} |"
        )
    ratio_t = statistics.median(r["wall"] for r in rows["naive"][0]) / statistics.median(
        r["wall"] for r in rows["excerpt"][0]
    )
    ratio_m = rows["naive"][1]["peak"] / max(rows["excerpt"][1]["peak"], 1)
    print(f"\nexcerpt vs naive: {ratio_t:.2f}x the speed, 1/{ratio_m:,.0f} of the peak traced memory")


if __name__ == "__main__":
    main()
