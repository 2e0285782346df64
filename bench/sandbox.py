"""Sandbox benchmarks: start-up cost per agent run, and label → agent started with the sandbox on.

1. The runner alone (`AgentRunner.run` of an agent that exits at once, in a
   2,000-file worktree), each mode in turn, interleaved so load hits all alike:
   `none` (the peer), `bwrap`, `bwrap` with an allow-list (the egress proxy and
   bridge), and `user` when run as root. The figure is the whole run as a
   round sees it: sandbox set-up, lending the worktree, the agent, tear-down.
2. `compound serve` against the GitHub twin, as users run it, with
   `AGENT_SANDBOX=none` and `auto` in one run: label delivered → the agent's
   first instruction, timed by the agent itself (it writes the time into its
   worktree, and the file reaches the PR).
3. The hand-back: an agent that commits a change to --changed files (of
   --files) with its own git, then `Workspace.commit` as the round runs it,
   and under `bwrap` the index settled once the worktree is lent (before the
   agent starts), timed apart. Under `bwrap` the agent's git writes its
   objects beside its index (the mirror is read-only to it) and Compound
   packs them into the mirror, verified; under `none` (the peer) they are in
   the mirror already; "bwrap, unsettled" is `bwrap` as it ran before the
   index was settled.

    .venv/bin/python bench/sandbox.py [--runs 40] [--samples 8] [--changed 200] [--files 2000]
        [--parts runner,label,hand-back]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.agents import AgentRequest, AgentRunner, get_backend  # noqa: E402
from bot.agents.sandbox import probe  # noqa: E402
from bot.workspace import Workspaces  # noqa: E402
from bot.workspace.worktree import CommitIdentity, Trailers  # noqa: E402
from tests.service_process import ServiceProcess, base_env  # noqa: E402
from tests.twin.server import GitHubTwin  # noqa: E402
from tests.twin_events import issue_labeled  # noqa: E402

REPO = "bench-org/app"
SECRET = "bench-secret"


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 1),
        "runs": len(ordered),
    }


async def runner_costs(runs: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="compound-bench-sandbox-"))
    workspace = work / "ws"
    for i in range(2000):
        path = workspace / f"src/pkg_{i % 40}/module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n")
    modes = {"none": probe("none"), "bwrap": probe("bwrap"), "bwrap+allow": probe("bwrap", allow="api.anthropic.com")}
    if os.geteuid() == 0:
        modes["user"] = probe("user", bwrap="/nonexistent")
    modes = {name: sandbox for name, sandbox in modes.items() if sandbox.usable}
    backend = get_backend("command", command="true")
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(runs):
        for name, sandbox in modes.items():
            request = AgentRequest(workspace=workspace, prompt="x", session_id="s-bench", task_kind="task")
            started = time.perf_counter()
            result = await AgentRunner(sandbox=sandbox).run(backend, request)
            times[name].append(time.perf_counter() - started)
            assert result.exit_code == 0, (name, result.log_tail)
    base = statistics.median(times["none"])
    return {
        name: {**stats(values), "over_none_ms": round((statistics.median(values) - base) * 1000, 1)}
        for name, values in times.items()
    } | {"root": os.geteuid() == 0, "worktree_files": 2000}


async def label_to_agent(samples: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="compound-bench-sandbox-e2e-"))
    twin = GitHubTwin(work / "twin")
    await twin.start()
    iid = twin.add_installation(account="bench-org")
    files = {f"src/module_{i}.py": f"VALUE = {i}\n" for i in range(200)}
    repo = twin.add_repo(REPO, installation_id=iid, files={"README.md": "bench\n", **files})
    twin.set_permission(REPO, "alice", "write")
    results: dict[str, object] = {}
    try:
        for mode in ("none", "auto", "none", "auto"):  # twice each, interleaved
            env = base_env(
                APP_ID=twin.app_id,
                PRIVATE_KEY=twin.private_key_pem,
                WEBHOOK_SECRET=SECRET,
                GHE_HOST=twin.host,
                GHE_PROTOCOL="http",
                DATA_DIR=work / f"data-{mode}",
                LOG_LEVEL="warning",
                AGENT_BACKEND="command",
                AGENT_COMMAND="date +%s.%N > started.txt",
                AGENT_SANDBOX=mode,
            )
            service = ServiceProcess(work, env)
            await service.start()
            try:
                health = await service.get_json("/healthz")
                latencies = []
                for i in range(samples + 1):  # the first warms the mirror and the token
                    number = twin.add_issue(REPO, title=f"{mode} {i}", user="alice")
                    payload = issue_labeled(twin, REPO, number, "agent", "alice", iid)
                    sent = time.time()
                    status, _ = await twin.deliver(
                        service.url + "/api/github/webhooks", "issues", payload, secret=SECRET
                    )
                    assert status == 202
                    deadline = time.monotonic() + 60
                    while not [p for p in repo.issues.values() if p.pull and p.title.endswith(f"#{number}")] and not [
                        p for p in repo.issues.values() if p.pull and p.pull.head_ref == f"compound/issue-{number}"
                    ]:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"no PR for #{number} ({mode}):\n{service.logs()[-3000:]}")
                        await asyncio.sleep(0.01)
                    pull = next(
                        p for p in repo.issues.values() if p.pull and p.pull.head_ref == f"compound/issue-{number}"
                    )
                    started = subprocess.run(
                        ["git", "--git-dir", str(repo.bare_path), "show", f"{pull.pull.head_sha}:started.txt"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    if i:
                        latencies.append(float(started) - sent)
                entry = results.setdefault(f"{mode} ({health['sandbox']['mode']})", [])
                assert isinstance(entry, list)
                entry.extend(latencies)
            finally:
                await service.stop()
    finally:
        await twin.stop()
    return {name: stats(values) for name, values in results.items() if isinstance(values, list)}


async def hand_back(runs: int, changed: int, size: int = 2000) -> dict[str, object]:
    """Commit after an agent that committed `changed` files itself: the objects' way into the mirror."""
    work = Path(tempfile.mkdtemp(prefix="compound-bench-handback-"))
    twin = GitHubTwin(work / "twin", validate_responses=False)
    await twin.start()
    try:
        iid = twin.add_installation(account="bench-org")
        files = {f"src/pkg_{i % 100}/module_{i}.py": f"VALUE = {i}\n" for i in range(size)}
        twin.add_repo(REPO, installation_id=iid, files={"README.md": "bench\n", **files})
        token = twin.mint_token(iid)
        workspaces = Workspaces(work / "data", twin.git_url)
        # "bwrap, unsettled": as rounds ran before the index was settled (the peer for that change).
        modes = {"none": probe("none"), "bwrap": probe("bwrap"), "bwrap, unsettled": probe("bwrap")}
        agent = (
            f'for i in $(seq 0 {changed - 1}); do echo "VALUE = $$-$i" > src/pkg_$((i % 100))/module_$i.py; done; '
            "git add -A && git -c user.name=agent -c user.email=agent@example.com commit -q -m 'agent change'"
        )
        backend = get_backend("command", command=agent)
        identity = CommitIdentity("compound[bot]", "1+compound[bot]@users.noreply.github.com")
        times: dict[str, list[float]] = {name: [] for name in modes}
        objects: dict[str, list[int]] = {name: [] for name in modes}
        settling: dict[str, list[float]] = {name: [] for name in modes}
        n = 0
        for _ in range(runs):
            for name, sandbox in modes.items():
                n += 1
                ws = await workspaces.open(REPO, f"s-hand-{n}", f"compound/issue-{n}", token)

                async def settle(ws=ws, name=name) -> None:  # as a round settles the lent worktree's index
                    began = time.perf_counter()
                    await ws.settle_index()
                    settling[name].append(time.perf_counter() - began)

                request = AgentRequest(
                    workspace=ws.path,
                    prompt="x",
                    session_id=f"s-hand-{n}",
                    task_kind="task",
                    git_common_dir=ws.mirror,
                    git_dir=ws.git_dir,
                    settle=None if name.endswith("unsettled") else settle,
                )
                await ws.hand_to_agent()
                result = await AgentRunner(sandbox=sandbox).run(backend, request)
                assert result.exit_code == 0, (name, result.log_tail)
                loose = sum(1 for p in ws.agent_objects.rglob("*") if p.is_file()) if ws.agent_objects.exists() else 0
                objects[name].append(loose)
                started = time.perf_counter()
                trailers = Trailers(model="bench", backend="command", session=f"s-hand-{n}")
                head = await ws.commit("bench", identity, trailers, lambda path: False)
                times[name].append(time.perf_counter() - started)
                assert head is not None, name
                await workspaces.close(ws)
        base = statistics.median(times["none"])
        return {
            name: {
                **stats(values),
                "over_none_ms": round((statistics.median(values) - base) * 1000, 1),
                "agent_objects_handed_back": statistics.median(objects[name]),
                # Paid before the agent starts, where the worktree is lent (none lends nothing).
                "settle_ms": stats(settling[name]) if settling[name] else None,
            }
            for name, values in times.items()
        } | {"changed_files": changed, "worktree_files": size + 1}
    finally:
        await twin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--changed", type=int, default=200, help="files the hand-back agent changes")
    parser.add_argument("--files", type=int, default=2000, help="files in the hand-back's repository (and README.md)")
    parser.add_argument("--parts", default="runner,label,hand-back", help="which of the three to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    out: dict[str, object] = {}
    if "runner" in parts:
        out["runner"] = asyncio.run(runner_costs(args.runs))
    if "label" in parts:
        out["label_to_agent_started"] = asyncio.run(label_to_agent(args.samples))
    if "hand-back" in parts:
        out["hand_back"] = asyncio.run(hand_back(max(5, args.runs // 4), args.changed, args.files))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
