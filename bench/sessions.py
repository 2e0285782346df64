"""Session benchmarks (docs/design.md §8): label → agent started, REST calls, memory at 50 sessions.

Runs `compound serve` as a subprocess against the GitHub twin (tests/twin), as
the end-to-end tests do, with a shell agent through the `command` backend.

    .venv/bin/python bench/sessions.py [--samples 10] [--concurrent 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.service_process import ServiceProcess, base_env  # noqa: E402
from tests.twin.server import GitHubTwin  # noqa: E402
from tests.twin_events import issue_labeled  # noqa: E402

REPO = "bench-org/app"
SECRET = "bench-secret"


def written(markers: Path) -> list[Path]:
    """Marker files the agents have finished writing."""
    return [p for p in markers.iterdir() if p.stat().st_size > 0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met in time")
        await asyncio.sleep(0.005)


async def run(samples: int, concurrent: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="compound-bench-sessions-"))
    twin = GitHubTwin(work / "twin")
    await twin.start()
    iid = twin.add_installation(account="bench-org")
    files = {f"src/module_{i}.py": f"VALUE = {i}\n" for i in range(200)}
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "bench\n", **files})
    twin.set_permission(REPO, "alice", "write")
    markers = work / "markers"
    markers.mkdir()
    # The agent notes when it started, then (for the memory run) sleeps.
    command = f'date +%s.%N > "{markers}/$AGENT_SESSION_ID"; sleep "${{BENCH_SLEEP:-0}}"'
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
        MAX_CONCURRENT_SESSIONS=concurrent,
        AGENT_ENV_PASSTHROUGH="BENCH_SLEEP",
    )
    results: dict[str, object] = {}
    service = ServiceProcess(work, env)
    await service.start()
    try:
        url = service.url + "/api/github/webhooks"

        async def label(number: int) -> float:
            payload = issue_labeled(twin, REPO, number, "agent", "alice", iid)
            sent = time.time()
            status, _ = await twin.deliver(url, "issues", payload, secret=SECRET)
            assert status == 202
            return sent

        # Warm the mirror (and the token) with one session first.
        warm = twin.add_issue(REPO, title="warm-up", user="alice")
        await label(warm)
        await wait_for(lambda: len(written(markers)) == 1, 60)
        latencies = []
        calls = []
        for i in range(samples):
            number = twin.add_issue(REPO, title=f"task {i}", user="alice")
            count = len(written(markers))
            mark = len(twin.requests)
            sent = await label(number)
            await wait_for(lambda count=count: len(written(markers)) == count + 1, 60)
            newest = max(written(markers), key=lambda p: p.stat().st_mtime)
            latencies.append(float(newest.read_text()) - sent)
            calls.append(len(twin.requests) - mark)
            await asyncio.sleep(0.3)  # let the session end (no change → it fails cleanly)
        results["label_to_agent_started_ms"] = {
            "median": round(statistics.median(latencies) * 1000, 1),
            "min": round(min(latencies) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
            "samples": samples,
        }
        results["rest_calls_label_to_agent_started"] = statistics.median(calls)
    finally:
        await service.stop()

    # Memory: `concurrent` sessions whose agents sleep, all at once.
    env["BENCH_SLEEP"] = "60"
    service = ServiceProcess(work, env)
    await service.start()
    try:
        assert service.proc is not None
        idle = rss_mib(service.proc.pid)
        start = len(written(markers))
        numbers = [twin.add_issue(REPO, title=f"sleepy {i}", user="alice") for i in range(concurrent)]
        await asyncio.gather(*(label_in(twin, service, n, iid) for n in numbers))
        await wait_for(lambda: len(written(markers)) >= start + concurrent, 180)
        await asyncio.sleep(2)
        results["memory_mib"] = {
            "idle": round(idle, 1),
            f"with_{concurrent}_sessions": round(rss_mib(service.proc.pid), 1),
        }
    finally:
        await service.stop()
        await twin.stop()
    return results


async def label_in(twin: GitHubTwin, service: ServiceProcess, number: int, iid: int) -> None:
    payload = issue_labeled(twin, REPO, number, "agent", "alice", iid)
    status, _ = await twin.deliver(service.url + "/api/github/webhooks", "issues", payload, secret=SECRET)
    assert status == 202


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args()
    results = asyncio.run(run(args.samples, args.concurrent))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
