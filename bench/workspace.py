"""Session workspace from a warm mirror vs a fresh clone (docs/design.md §8, issue 3).

Generates a repository of 50,000 commits with `git fast-import` (a generated
stream: seconds, not minutes), serves it through the GitHub twin's smart HTTP
with installation-token auth, and measures:

- the one-off creation of the repo's bare mirror (`Workspaces.sync_mirror`);
- opening a session workspace from the warm mirror (`Workspaces.open`: a fetch
  plus `git worktree add`), median of --runs, and its disk use;
- a fresh `git clone` of the same repo over the same HTTP, median of
  --clone-runs, and its disk use.

    .venv/bin/python bench/workspace.py
    .venv/bin/python bench/workspace.py --commits 5000 --runs 5 --clone-runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.workspace import Workspaces  # noqa: E402
from bot.workspace.git import Git  # noqa: E402
from tests.twin.server import GitHubTwin  # noqa: E402

REPO = "bench-org/big"
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def fast_import_stream(commits: int, files: int) -> bytes:
    """A history of ``commits`` commits on main: the first adds ``files`` files, each later one edits one."""
    out: list[bytes] = []
    when = 1_700_000_000

    def blob(path: str, version: int) -> None:
        body = (f"# {path}, version {version}\n" + "".join(f"line {n} of {path}\n" for n in range(20))).encode()
        out.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(body), body))

    def header(n: int, message: str) -> None:
        msg = message.encode()
        out.append(
            b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n"
            % (when + n * 60, len(msg), msg)
        )

    header(0, "Initial import")
    for f in range(files):
        blob(f"src/pkg{f % 50}/mod{f}.py", 0)
    for n in range(1, commits):
        f = (n * 7919) % files
        header(n, f"Change {n}: touch mod{f}")
        blob(f"src/pkg{f % 50}/mod{f}.py", n)
    out.append(b"done\n")
    return b"".join(out)


def generate(bare: Path, commits: int, files: int) -> float:
    started = time.perf_counter()
    shutil.rmtree(bare, ignore_errors=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True, env=env)
    subprocess.run(
        ["git", f"--git-dir={bare}", "fast-import", "--quiet", "--done"],
        input=fast_import_stream(commits, files),
        check=True,
        env=env,
    )
    return time.perf_counter() - started


def disk_use(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (what `du` reports)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in [*names, "."]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


async def bench(args: argparse.Namespace) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="compound-bench-ws-"))
    twin = GitHubTwin(root / "twin", validate_responses=False)
    await twin.start()
    try:
        iid = twin.add_installation(account="bench-org")
        repo = twin.add_repo(REPO, installation_id=iid, default_branch="main")
        generated = generate(repo.bare_path, args.commits, args.files)
        count = subprocess.run(
            ["git", f"--git-dir={repo.bare_path}", "rev-list", "--count", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        token = twin.mint_token(iid)
        workspaces = Workspaces(root / "data", twin.git_url)

        started = time.perf_counter()
        mirror = await workspaces.sync_mirror(REPO, token)
        cold = time.perf_counter() - started

        opens, closes, worktree_disk = [], [], []
        for i in range(args.runs):
            started = time.perf_counter()
            ws = await workspaces.open(REPO, f"s-bench-{i}", f"compound/issue-{i}", token)
            opens.append(time.perf_counter() - started)
            worktree_disk.append(disk_use(ws.path) + disk_use(mirror / "worktrees" / ws.path.name))
            started = time.perf_counter()
            await workspaces.close(ws)
            closes.append(time.perf_counter() - started)

        # A fresh clone over the same HTTP, token passed the same way.
        git = Git(root / "clone-home", timeout=3600)
        clones, clone_disk = [], []
        for i in range(args.clone_runs):
            target = root / "clones" / str(i)
            started = time.perf_counter()
            await git("clone", "--quiet", f"{twin.git_url}/{REPO}.git", str(target), token=token)
            clones.append(time.perf_counter() - started)
            clone_disk.append(disk_use(target))
            shutil.rmtree(target)

        return {
            "commits": int(count),
            "files": args.files,
            "generate_s": generated,
            "remote_repo_bytes": disk_use(repo.bare_path),
            "mirror_create_s": cold,
            "mirror_bytes": disk_use(mirror),
            "open_warm_s": opens,
            "close_s": closes,
            "worktree_bytes": statistics.median(worktree_disk),
            "clone_s": clones,
            "clone_bytes": statistics.median(clone_disk),
            "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        }
    finally:
        await twin.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(r: dict[str, object]) -> None:
    opens, clones, closes = r["open_warm_s"], r["clone_s"], r["close_s"]
    assert isinstance(opens, list) and isinstance(clones, list) and isinstance(closes, list)
    open_med, clone_med = statistics.median(opens), statistics.median(clones)
    print(
        f"repo: {r['commits']:,} commits, {r['files']:,} files (generated in {r['generate_s']:.1f} s, "
        f"{mib(r['remote_repo_bytes'])} on the twin)  ·  {r['git']}  ·  {r['machine']}"
    )  # type: ignore[arg-type]
    print()
    print(f"| {'what':<44} | {'time (median)':>16} | {'disk':>12} |")
    print(f"| {'-' * 44} | {'-' * 16}:| {'-' * 12}:|")
    print(
        f"| {'mirror created (once per repo)':<44} | {r['mirror_create_s']:>14.2f} s | {mib(r['mirror_bytes']):>12} |"
    )  # type: ignore[arg-type]
    print(
        f"| {f'session workspace from warm mirror (n={len(opens)})':<44} | {open_med * 1000:>13.0f} ms | "
        f"{mib(r['worktree_bytes']):>12} |"
    )  # type: ignore[arg-type]
    print(
        f"| {f'fresh git clone (n={len(clones)})':<44} | {clone_med * 1000:>13.0f} ms | {mib(r['clone_bytes']):>12} |"
    )  # type: ignore[arg-type]
    print(f"| {f'workspace close (n={len(closes)})':<44} | {statistics.median(closes) * 1000:>13.0f} ms | {'':>12} |")
    print()
    print(
        f"warm-mirror open is {clone_med / open_med:.1f}x faster than a clone "
        f"(open min/max {min(opens) * 1000:.0f}/{max(opens) * 1000:.0f} ms; "
        f"clone min/max {min(clones) * 1000:.0f}/{max(clones) * 1000:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=2_000, help="files in the tree")
    parser.add_argument("--runs", type=int, default=10, help="workspace opens from the warm mirror")
    parser.add_argument("--clone-runs", type=int, default=3, help="fresh clones")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
