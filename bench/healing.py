"""CI round benchmark: failing suite completed → `ci_fix` agent started, and REST calls per round.

`compound serve` runs as a subprocess against the GitHub twin, as in the
end-to-end tests. Each sample puts a failing GitHub Actions job (with
annotations and a job log) on the PR's current head, delivers its
`check_run.completed` and `check_suite.completed` as GitHub does, and times
until the agent process has started; the agent then changes a file, so the
round pushes, and the REST calls from the suite's event to the round's last
check-run update are counted. In the same run, a peer: the same service
with the same agent on `/agent <instructions>` (a `command` round, which
reads no CI), so the ratio shows what reading the failure costs.

    .venv/bin/python bench/healing.py [--samples 10] [--log-mib 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.service_process import ServiceProcess, base_env  # noqa: E402
from tests.twin.server import GitHubTwin  # noqa: E402
from tests.twin_events import check_run_event, check_suite_completed, comment_created, issue_labeled  # noqa: E402

REPO = "bench-org/app"
SECRET = "bench-secret"
TS = "2026-12-04T10:00:00.1234567Z "


async def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met in time")
        await asyncio.sleep(0.005)


def job_log(path: Path, mib: float) -> Path:
    noise = "".join(f"{TS}tests/test_m.py::test_{i} PASSED [ 50%]\n" for i in range(1000))
    with path.open("w") as f:
        f.write(f"{TS}##[group]Run pytest -q\n")
        written = 0
        while written < mib * 2**20:
            written += f.write(noise)
        f.write(f"{TS}E       assert 41 == 42\n{TS}FAILED tests/test_feature.py::test_feature - assert 41 == 42\n")
        f.write(f"{TS}##[endgroup]\n{TS}##[error]Process completed with exit code 1.\n")
    return path


async def run(samples: int, log_mib: float) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="compound-bench-healing-"))
    twin = GitHubTwin(work / "twin")
    await twin.start()
    iid = twin.add_installation(account="bench-org")
    repo = twin.add_repo(REPO, installation_id=iid, files={"README.md": "bench\n", "app.py": "x = 0\n"})
    twin.set_permission(REPO, "alice", "write")
    log = job_log(work / "job.log", log_mib)
    # The agent notes in its worktree when it started (the sandbox lets it write
    # nothing else), and so changes a file: the round pushes, and the time is
    # read back from the pushed commit.
    command = 'date +%s.%N > "started-$AGENT_TASK_KIND.txt"'
    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATA_DIR=work / "data",
        LOG_LEVEL="warning",
        AGENT_BACKEND="command",
        AGENT_COMMAND=command,
        MAX_CI_ROUNDS=samples + 5,
    )
    service = ServiceProcess(work, env)
    await service.start()
    url = service.url + "/api/github/webhooks"

    def pull():
        return next(i for i in repo.issues.values() if i.pull is not None)

    async def started(kind: str, old_head: str) -> float:
        """When the agent of the round that moved the PR off `old_head` started."""
        await wait_for(lambda: pull().pull.head_sha != old_head, 60)
        shown = subprocess.run(
            ["git", "--git-dir", str(repo.bare_path), "show", f"{pull().pull.head_sha}:started-{kind}.txt"],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(shown.stdout)

    def own_runs() -> int:
        return sum(1 for r in repo.check_runs.values() if r.name == "Compound" and r.status == "completed")

    try:
        number = twin.add_issue(REPO, title="task", user="alice")
        status, _ = await twin.deliver(
            url, "issues", issue_labeled(twin, REPO, number, "agent", "alice", iid), secret=SECRET
        )
        assert status == 202
        await wait_for(lambda: any(i.pull for i in repo.issues.values()) and own_runs() == 1, 60)
        latencies, calls, kinds = [], [], Counter()
        peer, peer_calls = [], []
        for i in range(samples):
            # CI round
            pr = pull()
            head = pr.pull.head_sha
            done = own_runs()
            run = twin.add_check_run(
                REPO,
                head,
                "pytest",
                app="github-actions",
                conclusion="failure",
                output={"title": "1 failed", "summary": "Process completed with exit code 1."},
                annotations=[
                    {
                        "path": "app.py",
                        "start_line": 1,
                        "end_line": 1,
                        "annotation_level": "failure",
                        "message": "assert 41 == 42",
                    }
                ],
                log=log,
            )
            suite = repo.check_suites[run.suite_id]
            await twin.deliver(
                url,
                "check_run",
                check_run_event(twin, REPO, run.id, "completed", "github-actions[bot]", iid),
                secret=SECRET,
            )
            mark = len(twin.requests)
            sent = time.time()
            await twin.deliver(
                url,
                "check_suite",
                check_suite_completed(twin, REPO, suite.id, "github-actions[bot]", iid),
                secret=SECRET,
            )
            latencies.append(await started("ci_fix", head) - sent)
            await wait_for(lambda done=done: own_runs() >= done + 2, 60)  # the new head's run, the old one superseded
            await asyncio.sleep(0.3)
            round_calls = [r for r in twin.requests[mark:] if r.operation_id != "apps/create-installation-access-token"]
            calls.append(len(round_calls))
            kinds.update(r.operation_id for r in round_calls)
            # Peer: a follow-up round a person asks for, same service, same agent.
            done = own_runs()
            mark = len(twin.requests)
            head = pr.pull.head_sha
            payload = comment_created(twin, REPO, pr.number, f"/agent change it again ({i})", "alice", iid)
            sent = time.time()
            await twin.deliver(url, "issue_comment", payload, secret=SECRET)
            peer.append(await started("command", head) - sent)
            await wait_for(lambda done=done: own_runs() >= done + 2, 60)
            await asyncio.sleep(0.3)
            peer_calls.append(len(twin.requests) - mark)
        downloads = twin.log_downloads
        return {
            "samples": samples,
            "job_log_mib": log_mib,
            "suite_completed_to_ci_agent_started_ms": {
                "median": round(statistics.median(latencies) * 1000, 1),
                "min": round(min(latencies) * 1000, 1),
                "max": round(max(latencies) * 1000, 1),
            },
            "peer_command_to_agent_started_ms": {
                "median": round(statistics.median(peer) * 1000, 1),
                "min": round(min(peer) * 1000, 1),
                "max": round(max(peer) * 1000, 1),
            },
            "rest_calls_per_ci_round": statistics.median(calls),
            "rest_calls_per_command_round_peer": statistics.median(peer_calls),
            "ci_round_calls_by_operation": {k: v / samples for k, v in sorted(kinds.items())},
            "log_downloads_with_authorization": sum(1 for d in downloads if d["authorization"]),
            "violations": len(twin.violations),
        }
    finally:
        await service.stop()
        await twin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--log-mib", type=float, default=0.05)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.samples, args.log_mib)), indent=2))


if __name__ == "__main__":
    main()
