"""The CI log excerpt on a 50 MB GitHub Actions job log: time and peak memory.

A peer runs in the same process on the same file: the naive way (read the
whole log, split it into lines, keep the last 200), so the ratio is honest.

    .venv/bin/python bench/logtrim.py [--mib 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.ci.logs import excerpt_stream  # noqa: E402

TS = "2026-12-04T10:00:00.1234567Z "
CHUNK = 64 * 1024


def make_log(path: Path, mib: int) -> None:
    """Passing test lines, one failure in the middle, clean-up at the end."""
    line = f"{TS}tests/test_module.py::test_case_with_a_long_name PASSED                [ 42%]\n"
    block = line * 2000
    size = mib * 1024 * 1024
    with path.open("w") as f:
        f.write(f"{TS}##[group]Run pytest -q\n")
        written = 0
        while written < size // 2:
            written += f.write(block)
        f.write(f"{TS}E       assert 41 == 42\n{TS}FAILED tests/test_feature.py::test_feature - assert 41 == 42\n")
        while written < size:
            written += f.write(block)
        f.write(f"{TS}##[endgroup]\n{TS}##[error]Process completed with exit code 1.\n")


async def file_chunks(path: Path):
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def naive(path: Path) -> str:
    return "\n".join(path.read_text().splitlines()[-200:])


def measure(fn) -> tuple[float, float, object]:
    """Wall time of one run, then peak traced memory of another (tracemalloc slows Python down)."""
    started = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.log"
        make_log(path, args.mib)
        rows = {"excerpt (bot/ci/logs.py)": [], "naive: read all, last 200 lines": []}
        found = {}
        for _ in range(args.runs):
            for name, fn in (
                ("excerpt (bot/ci/logs.py)", lambda: asyncio.run(excerpt_stream(file_chunks(path)))),
                ("naive: read all, last 200 lines", lambda: naive(path)),
            ):
                elapsed, peak, out = measure(fn)
                rows[name].append((elapsed, peak))
                found[name] = "assert 41 == 42" in str(out)
        print(f"log: {path.stat().st_size / 2**20:.1f} MiB, {args.runs} runs each, medians; "
              f"max RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        print("| reader | time | peak traced memory | finds the error |")
        print("| --- | --- | --- | --- |")
        for name, values in rows.items():
            t = statistics.median(v[0] for v in values)
            m = statistics.median(v[1] for v in values)
            print(f"| {name} | {t:.2f} s | {m:.1f} MiB | {'yes' if found[name] else 'no'} |")


if __name__ == "__main__":
    main()
