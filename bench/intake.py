"""Webhook intake benchmark (docs/design.md §8): Compound against a minimal Probot app.

Signed ~12 KB `issues.labeled` deliveries are POSTed by wrk at a running
`compound serve` (durable store included: SQLite, then PostgreSQL) and, in the
same run and alternating with it, at a minimal Probot 14 app that stores
nothing, so that the ratio holds on a noisy machine. Per run: deliveries/s,
p50/p99 latency, server CPU µs per delivery; for Compound also a check that
every 2xx delivery is in the `deliveries` table and was processed.

`compound-github-down` is `compound serve` on SQLite as a configured App whose
GitHub (Enterprise) host is a loopback port where nothing listens: the
installation is known (its `installation.created` is delivered first), so
every `issues.labeled` handler calls GitHub and fails, and the circuit breaker
holds the deliveries. Besides the wrk runs, every Compound target takes an
open-loop run at a steady rate (`--open-rate`), and at the end the GitHub twin
(tests/twin) starts on that port: the benchmark times how long the held and
stored deliveries take to be processed.

    .venv/bin/python bench/intake.py                 # 3 rounds of 10 s each
    .venv/bin/python bench/intake.py --rounds 1 --duration 5 --targets compound-sqlite
    .venv/bin/python bench/intake.py --targets compound-sqlite,compound-github-down,probot

Needs wrk (`apt-get install -y wrk`), node with `npm ci` done in bench/probot,
and for compound-postgres a PostgreSQL server reachable at --pg-admin-url in
which the benchmark may create (and then drops) a database. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.twin.server import GitHubTwin

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PROBOT_DIR = BENCH / "probot"
WEBHOOK_PATH = "/api/github/webhooks"
SECRET = "bench-webhook-secret"
TARGETS = ("compound-sqlite", "probot", "compound-postgres", "compound-github-down")
COMPOUND_TARGETS = ("compound-sqlite", "compound-postgres", "compound-github-down")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# docs/design.md §8: the floor, and Probot's figure on the machine it was set on.
FLOOR_PER_S = 4_000
FLOOR_P99_MS = 25.0
PROBOT_REFERENCE = 5_600
# "Intake never waits on processing, even while GitHub is down" and "an outage
# never parks a delivery as failed" (docs/design.md §4), read as: ≥ 80 % of the
# normal pace with GitHub down, p99 < 1 s at the open-loop rate, none failed.
DOWN_RATIO_FLOOR = 0.8
OPEN_P99_MS = 1_000.0


def fail(message: str) -> None:
    print(f"bench/intake.py: {message}", file=sys.stderr)
    sys.exit(2)


# -- the payload -----------------------------------------------------------------


sys.path.insert(0, str(ROOT))
from tests.twin.auth import app_private_key_pem  # noqa: E402
from tests.webhook_examples import example  # noqa: E402


def write_payload(path: Path, installation_id: int = 1) -> str:
    """The `issues.labeled` example with an installation, serialised once; its signature."""
    payload = example("issues", "labeled")
    payload["installation"] = {"id": installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    body = json.dumps(payload, separators=(",", ":")).encode()
    path.write_bytes(body)
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(signature: str, delivery_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": signature,
    }


# -- servers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str | None]  # None: unset it
    cwd: Path
    log: Path
    port: int = field(default_factory=free_port)
    sqlite_path: Path | None = None
    pg_url: str | None = None
    # The App's GitHub does not answer: deliveries are processed only once it
    # does (`recover`), not within a run.
    github_down: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def stores(self) -> bool:
        return self.sqlite_path is not None or self.pg_url is not None

    def start(self, cpus: str | None) -> None:
        env = {**os.environ, **self.env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        env = {k: v for k, v in env.items() if v is not None}
        argv = (["taskset", "-c", cpus] if cpus else []) + self.argv
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=self.cwd, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.2)
        fail(f"{self.name} did not listen on port {self.port} within 60 s; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """utime + stime of the server (all its threads) and of its waited-for children."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / CLK_TCK

    def query(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of a read-only query on the server's store."""
        if self.sqlite_path is not None:
            with sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=30) as db:
                return db.execute(query).fetchall()
        assert self.pg_url is not None
        return asyncio.run(_pg_fetch(self.pg_url, query))

    def count(self) -> tuple[int, int]:
        """(rows in `deliveries`, rows not yet processed)."""
        # (A delivery whose handlers fail stays pending while it is retried.)
        total, pending = self.query("SELECT count(*), count(*) FILTER (WHERE status <> 'processed') FROM deliveries")[0]
        return total, pending

    def statuses(self) -> dict[str, int]:
        """Rows in `deliveries` by status (pending, processed, skipped, failed)."""
        return dict(self.query("SELECT status, count(*) FROM deliveries GROUP BY status"))


async def _pg_fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(query)
    finally:
        await conn.close()
    return [tuple(row) for row in rows]


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def compound_server(
    name: str, workdir: Path, src: Path, pg_url: str | None, github: tuple[GitHubTwin, int] | None = None
) -> Server:
    """`compound serve`; with `github` (a twin, a loopback port), as the twin's App
    calling GitHub at that port, as the tests run it (tests/test_e2e_intake.py)."""
    data_dir = workdir / name
    # No APP_ID: setup mode, which still verifies and stores deliveries.
    env: dict[str, str | None] = {
        "WEBHOOK_SECRET": SECRET,
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "warning",
        "DATABASE_URL": pg_url,
        "APP_ID": None,
        "PRIVATE_KEY": None,
        "PRIVATE_KEY_PATH": None,
        "GHE_HOST": None,
        # The code under test: this checkout, or another one (say a clean
        # worktree of a commit) run with this checkout's virtualenv.
        "PYTHONPATH": str(src),
    }
    if github is not None:
        twin, port = github
        env |= {
            "APP_ID": str(twin.app_id),
            "PRIVATE_KEY": twin.private_key_pem,
            "GHE_HOST": f"127.0.0.1:{port}",
            "GHE_PROTOCOL": "http",
        }
    return Server(
        name=name,
        argv=[str(ROOT / ".venv" / "bin" / "python"), "-m", "bot", "serve"],
        env=env,
        cwd=workdir,
        log=workdir / f"{name}.log",
        sqlite_path=None if pg_url else data_dir / "compound.db",
        pg_url=pg_url,
        github_down=github is not None,
    )


def probot_server(workdir: Path) -> Server:
    # A throwaway key: Probot 14 refuses to start without one, and never uses it here.
    pem = app_private_key_pem()
    return Server(
        name="probot",
        argv=[
            "node",
            str(PROBOT_DIR / "node_modules" / "probot" / "bin" / "probot.js"),
            "run",
            str(PROBOT_DIR / "app.js"),
        ],
        env={
            "WEBHOOK_SECRET": SECRET,
            "APP_ID": "1",
            "PRIVATE_KEY": pem,
            "LOG_LEVEL": "warn",
            "NODE_ENV": "production",
        },
        cwd=PROBOT_DIR,
        log=workdir / "probot.log",
    )


def github_twin(workdir: Path) -> tuple[GitHubTwin, dict[str, Any]]:
    """GitHub for compound-github-down, not started, and the `installation.created`
    it sent: the App installed on the example's repository (tests/test_e2e_intake.py's
    `installed`, from the webhook example)."""
    from tests.twin.server import GitHubTwin

    created = example("installation", "created")
    account = created["installation"]["account"]
    twin = GitHubTwin(workdir / "twin", validate_responses=False)
    created["installation"]["id"] = twin.add_installation(account=account["login"], account_type=account["type"])
    for repo in created["repositories"]:
        twin.add_repo(repo["full_name"], installation_id=created["installation"]["id"])
    return twin, created


def install(server: Server, twin: GitHubTwin, created: dict[str, Any]) -> None:
    """Deliver `installation.created`, so that the installation is known (bot/skips.py) and
    the service's handlers call GitHub for its deliveries instead of skipping them."""
    installation_id = int(created["installation"]["id"])
    status, text = asyncio.run(
        twin.deliver(f"http://127.0.0.1:{server.port}{WEBHOOK_PATH}", "installation", created, secret=SECRET)
    )
    if status != 202:
        fail(f"{server.name} answered {status} to installation.created: {text}")
    deadline = time.monotonic() + 30
    while not server.query(f"SELECT id FROM installations WHERE id = {installation_id}"):
        if time.monotonic() > deadline:
            fail(f"{server.name} did not record installation {installation_id} within 30 s; see {server.log}")
        time.sleep(0.1)


def preflight(server: Server, body: bytes, signature: str) -> None:
    """One signed delivery must be answered 2xx, one with a wrong signature not."""
    for sig, want_ok in ((signature, True), ("sha256=" + "0" * 64, False)):
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}{WEBHOOK_PATH}",
            data=body,
            method="POST",
            headers=delivery_headers(sig, f"preflight-{uuid.uuid4()}"),
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        if (200 <= status < 300) != want_ok:
            fail(
                f"{server.name} answered {status} to a {'signed' if want_ok else 'badly signed'} "
                f"delivery; see {server.log}"
            )


# -- one wrk run -------------------------------------------------------------------------


def run_wrk(
    server: Server,
    args: argparse.Namespace,
    body_path: Path,
    signature: str,
    duration: float,
    workdir: Path,
    run_id: str,
) -> dict[str, Any]:
    out = workdir / f"{run_id}.json"
    argv = (["taskset", "-c", args.wrk_cpus] if args.wrk_cpus else []) + [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{int(duration)}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "intake.lua"),
        f"http://127.0.0.1:{server.port}{WEBHOOK_PATH}",
    ]
    env = {
        **os.environ,
        "BENCH_BODY": str(body_path),
        "BENCH_SIGNATURE": signature,
        "BENCH_RUN": run_id,
        "BENCH_PATH": WEBHOOK_PATH,
        "BENCH_OUT": str(out),
        "BENCH_IDS": args.ids,
    }
    rows_before = server.count()[0] if server.stores else 0
    cpu_before = server.cpu_seconds()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        fail(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result: dict[str, Any] = json.loads(out.read_text())
    ok = sum(n for code, n in result["statuses"].items() if 200 <= int(code) < 300)
    deliveries_per_s = ok / (result["duration_us"] / 1e6)
    drain_seconds = 0.0
    if server.stores:
        # Count the work of processing too: CPU is read once every stored delivery
        # has gone through the handlers (the dispatcher may lag the 202s a little).
        # With GitHub down they wait for it (`recover`): CPU is the run's alone.
        started = time.monotonic()
        while True:
            total, pending = server.count()
            if server.github_down or pending == 0 or time.monotonic() - started > 30:
                break
            time.sleep(0.05)
        drain_seconds = time.monotonic() - started
        rows = total - rows_before
    else:
        rows = pending = None
    cpu = server.cpu_seconds() - cpu_before
    return {
        "target": server.name,
        "run_id": run_id,
        "deliveries_per_s": round(deliveries_per_s, 1),
        "p50_ms": result["latency_us"]["p50"] / 1000,
        "p99_ms": result["latency_us"]["p99"] / 1000,
        "max_ms": result["latency_us"]["max"] / 1000,
        "cpu_us_per_delivery": round(cpu * 1e6 / ok, 1) if ok else None,
        "ok": ok,
        "non_2xx": result["requests"] - ok,
        "socket_errors": result["errors"],
        "statuses": result["statuses"],
        "sent": result["sent"],
        "rows": rows,
        "unprocessed_after_drain": pending,
        "drain_seconds": round(drain_seconds, 2),
        # Nothing lost: every 2xx is a stored row. A few more rows than 2xx are
        # the requests still in flight when wrk stopped (stored, answer unread).
        "nothing_lost": None if rows is None else (ok <= rows <= ok + args.connections and result["requests"] == ok),
        "all_processed": None if rows is None or server.github_down else pending == 0,
    }


# -- one open-loop run -----------------------------------------------------------------------


def run_open_loop(server: Server, args: argparse.Namespace, body: bytes, signature: str) -> dict[str, Any]:
    """Deliveries at a steady `--open-rate` for `--duration` seconds, each sent at its
    time whether or not the earlier ones were answered (wrk keeps a fixed number in
    flight instead). Latency runs from the time a delivery was due, so a stall of
    the server (or of this generator) counts in full."""
    rows_before = server.count()[0]
    cpu_before = server.cpu_seconds()
    sent, latencies, statuses, errors, lag = asyncio.run(
        _open_loop(f"http://127.0.0.1:{server.port}{WEBHOOK_PATH}", body, signature, args.open_rate, args.duration)
    )
    rows = server.count()[0] - rows_before
    cpu = server.cpu_seconds() - cpu_before
    ok = sum(n for code, n in statuses.items() if 200 <= code < 300)
    latencies.sort()

    def at(q: float) -> float:
        return round(latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000, 2)

    failed = sent - ok
    return {
        "target": server.name,
        "rate_per_s": args.open_rate,
        "sent": sent,
        "ok": ok,
        "failed": failed,
        "non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "errors": errors,
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
        "generator_max_lag_ms": round(lag * 1000, 2),
        "cpu_us_per_delivery": round(cpu * 1e6 / ok, 1) if ok else None,
        "rows": rows,
        # Every 2xx is a stored row; a request that errored may have been stored too.
        "nothing_lost": ok <= rows <= ok + errors and failed == 0,
        "p99_met": at(0.99) < OPEN_P99_MS,
    }


async def _open_loop(
    url: str, body: bytes, signature: str, rate: float, duration: float
) -> tuple[int, list[float], collections.Counter[int], int, float]:
    import aiohttp

    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors = 0
    lag = 0.0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def deliver(due: float) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=body, headers=delivery_headers(signature, str(uuid.uuid4()))) as r:
                    await r.read()
                    statuses[r.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            latencies.append(loop.time() - due)

        count = int(rate * duration)
        start = loop.time() + 0.1
        tasks = []
        for i in range(count):
            due = start + i / rate
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            lag = max(lag, loop.time() - due)
            tasks.append(asyncio.create_task(deliver(due)))
        await asyncio.gather(*tasks)
    return count, latencies, statuses, errors, lag


# -- recovery: GitHub answers again ----------------------------------------------------------


def recover(server: Server, twin: GitHubTwin, port: int, timeout: float) -> dict[str, Any]:
    """Start the twin on the port the service calls, and time until every stored delivery
    is processed: the breaker's next probe finds GitHub answering and closes it."""
    from tests.twin.validation import load_spec

    load_spec()  # the twin's one-off cost (its OpenAPI description), not GitHub's recovery
    return asyncio.run(_recover(server, twin, port, timeout))


async def _recover(server: Server, twin: GitHubTwin, port: int, timeout: float) -> dict[str, Any]:
    before = await asyncio.to_thread(server.statuses)
    openings = breaker_openings(server.log)
    started_wall = datetime.now(UTC)
    started = time.monotonic()
    await twin.start(port)
    first_progress = None
    samples = []
    try:
        while True:
            counts = await asyncio.to_thread(server.statuses)
            elapsed = time.monotonic() - started
            done = counts.get("processed", 0) + counts.get("skipped", 0)
            samples.append((round(elapsed, 2), done))
            if first_progress is None and done > before.get("processed", 0) + before.get("skipped", 0):
                first_progress = elapsed
            if counts.get("pending", 0) == 0 or elapsed > timeout:
                break
            await asyncio.sleep(0.5)
    finally:
        await twin.stop()
    drained = counts.get("pending", 0) == 0

    def since(at: datetime) -> float:
        return round((at - started_wall).total_seconds(), 2)

    return {
        "target": server.name,
        "stored": sum(counts.values()),
        "pending_at_start": before.get("pending", 0),
        "processed": counts.get("processed", 0),
        "skipped": counts.get("skipped", 0),
        "failed": counts.get("failed", 0),
        "pending": counts.get("pending", 0),
        "first_progress_s": None if first_progress is None else round(first_progress, 2),
        "drain_s": round(time.monotonic() - started, 2) if drained else None,
        # When the breaker's last "not calling it for Ns" said its next probe would go.
        "probe_due_s": since(openings[-1][0] + timedelta(seconds=openings[-1][1])) if openings else None,
        # Each opening: when (seconds from GitHub's return, so negative), and for how long.
        "breaker_openings": [(since(at), seconds) for at, seconds in openings],
        "github_requests": len(twin.requests),
        "github_token_requests": sum(twin.token_requests.values()),
        "github_spec_violations": len(twin.violations),
        "progress": samples[:: max(len(samples) // 60, 1)],
        "all_processed": drained and counts.get("failed", 0) == 0,
    }


def breaker_openings(log: Path) -> list[tuple[datetime, float]]:
    """When the breaker opened and for how long (logged: "not calling it for Ns")."""
    openings = []
    for line in log.read_text(errors="replace").splitlines():
        if "not calling it for" not in line or not line.startswith("{"):
            continue
        entry = json.loads(line)
        seconds = float(entry["msg"].rsplit("not calling it for ", 1)[1].split("s", 1)[0])
        openings.append((datetime.fromisoformat(entry["ts"]), seconds))
    return openings


# -- the whole benchmark ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    probot = json.loads((PROBOT_DIR / "node_modules" / "probot" / "package.json").read_text())
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "node": node,
        "probot": probot["version"],
        "wrk": (wrk.stdout or wrk.stderr).split("\n")[0].strip(),
        "kernel": platform.release(),
    }


def describe(src: Path) -> str:
    """The commit under test, marked when the tree has changes outside bench/."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", ".", ":!bench"], cwd=src, capture_output=True, text=True
    ).stdout.strip()
    return f"{commit}{'+dirty' if dirty else ''}"


def same_round(run: dict[str, Any], runs: list[dict[str, Any]], target: str) -> float | None:
    """The mean deliveries/s of `target`'s runs in `run`'s round."""
    peers = [p["deliveries_per_s"] for p in runs if p["target"] == target and p["round"] == run["round"]]
    return statistics.mean(peers) if peers else None


def summarise(
    runs: list[dict[str, Any]], targets: list[str], recovery: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for target in targets:
        mine = [r for r in runs if r["target"] == target]
        if not mine:
            continue
        summary[target] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("deliveries_per_s", "p50_ms", "p99_ms", "cpu_us_per_delivery")
        }
        summary[target]["runs"] = len(mine)
        if target != "probot":
            summary[target]["nothing_lost"] = all(r["nothing_lost"] for r in mine)
            summary[target]["all_processed"] = all(r["all_processed"] for r in mine)
            # Paired: each run against the Probot run(s) of the same round.
            ratios = []
            p99s_at_reference = []
            for r in mine:
                if (peer := same_round(r, runs, "probot")) is not None:
                    ratios.append(r["deliveries_per_s"] / peer)
                    # At a fixed number of connections latency goes as 1/throughput
                    # (Little's law): the p99 on a machine where Probot takes 5,600/s.
                    p99s_at_reference.append(r["p99_ms"] * peer / PROBOT_REFERENCE)
            summary[target]["ratio_to_probot"] = round(statistics.median(ratios), 3) if ratios else None
            summary[target]["ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)] if ratios else None
            # docs/design.md §8 sets the floor where Probot takes ≈ 5,600/s; machines
            # differ from day to day, the ratio much less: the floor read on
            # the design's machine.
            if ratios:
                at_reference = statistics.median(ratios) * PROBOT_REFERENCE
                p99_at_reference = statistics.median(p99s_at_reference)
                summary[target]["at_probot_reference"] = round(at_reference)
                summary[target]["p99_ms_at_probot_reference"] = round(p99_at_reference, 2)
                summary[target]["floor_met"] = bool(
                    at_reference >= FLOOR_PER_S and p99_at_reference <= FLOOR_P99_MS and summary[target]["nothing_lost"]
                )
        if target == "compound-github-down":
            # Against its normal self, paired the same way: compound-sqlite (the same
            # store, no App, so nothing waits on GitHub).
            normal = [r["deliveries_per_s"] / peer for r in mine if (peer := same_round(r, runs, "compound-sqlite"))]
            if normal:
                summary[target]["ratio_to_normal"] = round(statistics.median(normal), 3)
                summary[target]["ratio_to_normal_range"] = [round(min(normal), 3), round(max(normal), 3)]
                summary[target]["down_floor_met"] = statistics.median(normal) >= DOWN_RATIO_FLOOR
            # Its deliveries are processed once GitHub answers again, not within a run.
            summary[target]["all_processed"] = None if recovery is None else recovery["all_processed"]
    return summary


def print_table(
    summary: dict[str, dict[str, Any]], open_runs: list[dict[str, Any]], recovery: dict[str, Any] | None
) -> None:
    print(
        f"\n{'target':<20}{'deliv/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs/d':>10}"
        f"{'ratio':>8}{'range':>12}{'at 5,600':>10}{'p99 there':>11}  nothing lost  all processed"
    )
    for target, s in summary.items():
        ratio = s.get("ratio_to_probot")
        spread = s.get("ratio_range")
        at_reference = s.get("at_probot_reference")
        p99_there = s.get("p99_ms_at_probot_reference")
        lost = s.get("nothing_lost")
        print(
            f"{target:<20}{s['deliveries_per_s']:>10.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
            f"{s['cpu_us_per_delivery']:>10.0f}{'' if ratio is None else f'{ratio:.2f}':>8}"
            f"{'' if spread is None else f'{spread[0]:.2f}–{spread[1]:.2f}':>12}"
            f"{'' if at_reference is None else at_reference:>10}"
            f"{'' if p99_there is None else f'{p99_there:.2f}':>11}  "
            f"{'-' if lost is None else ('yes' if lost else 'NO'):<14}"
            f"{'-' if lost is None else ('yes' if s['all_processed'] else 'NO')}"
        )
    verdicts = {t: s["floor_met"] for t, s in summary.items() if "floor_met" in s}
    if verdicts:
        print(
            f"\nfloor (≥ {FLOOR_PER_S:,}/s and p99 ≤ {FLOOR_P99_MS:g} ms where Probot takes {PROBOT_REFERENCE:,}/s, "
            "nothing lost): " + ", ".join(f"{t} {'met' if ok else 'NOT met'}" for t, ok in verdicts.items())
        )
    if (down := summary.get("compound-github-down", {})).get("ratio_to_normal") is not None:
        low, high = down["ratio_to_normal_range"]
        print(
            f"GitHub down against compound-sqlite: {down['ratio_to_normal']:.2f} ({low:.2f}–{high:.2f}); "
            f"≥ {DOWN_RATIO_FLOOR:.0%} {'met' if down['down_floor_met'] else 'NOT met'}"
        )
    if open_runs:
        print(
            f"\n{'open loop':<20}{'rate/s':>8}{'sent':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'failed':>8}"
            "  nothing lost"
        )
        for r in open_runs:
            print(
                f"{r['target']:<20}{r['rate_per_s']:>8g}{r['sent']:>8}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                f"{r['max_ms']:>9.2f}{r['failed']:>8}  {'yes' if r['nothing_lost'] else 'NO'}"
                f"{'' if r['p99_met'] else f'  p99 NOT under {OPEN_P99_MS:g} ms'}"
            )
    if recovery is not None:
        print(
            f"\nrecovery ({recovery['target']}): {recovery['stored']} stored, {recovery['pending_at_start']} "
            f"pending when GitHub came back; first processed after {recovery['first_progress_s']} s "
            f"(breaker's next probe was due at {recovery['probe_due_s']} s), all after {recovery['drain_s']} s; "
            f"processed {recovery['processed']}, skipped {recovery['skipped']}, failed {recovery['failed']}, "
            f"pending {recovery['pending']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per target")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--targets", default=",".join(TARGETS[:3]), help=f"comma-separated, from {', '.join(TARGETS)}")
    parser.add_argument(
        "--open-rate",
        type=float,
        default=200,
        help="deliveries/s of the open-loop run each Compound target takes after the rounds (0: none)",
    )
    parser.add_argument(
        "--recovery-timeout",
        type=float,
        default=600,
        help="compound-github-down: seconds to wait, once GitHub answers, for every delivery to be processed",
    )
    parser.add_argument("--server-cpus", help="taskset CPU list for the servers, e.g. 0")
    parser.add_argument("--wrk-cpus", help="taskset CPU list for wrk, e.g. 1")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to CREATE and DROP the benchmark's database",
    )
    parser.add_argument(
        "--src", type=Path, default=ROOT, help="the Compound source tree to run (default: this checkout)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--ids",
        choices=("guid", "sequential"),
        default="guid",
        help="delivery ids: GUIDs scattered like GitHub's (default), or <run>-<thread>-<n> "
        "(sorted close together; what runs before 2026-11-26 used)",
    )
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/intake-*.json)")
    args = parser.parse_args()

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(targets) - set(TARGETS):
        fail(f"unknown targets: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        fail("wrk is not installed: apt-get install -y wrk (see bench/README.md)")
    if "probot" in targets and not (PROBOT_DIR / "node_modules" / "probot").is_dir():
        fail("Probot is not installed: (cd bench/probot && npm ci) (see bench/README.md)")
    if not (ROOT / ".venv" / "bin" / "compound").exists():
        fail("no .venv/bin/compound: install Compound into .venv first")

    src = args.src.resolve()
    if not (src / "bot" / "__main__.py").exists():
        fail(f"--src {src}: not a Compound source tree")
    workdir = Path(tempfile.mkdtemp(prefix="compound-bench-"))
    twin = None
    if "compound-github-down" in targets:
        # GitHub's port, where nothing listens until the recovery starts the twin there.
        twin, created = github_twin(workdir)
        github_port = free_port()
    body_path = workdir / "issues.labeled.json"
    # Every target gets the same payload; its installation is the twin's.
    signature = write_payload(body_path, created["installation"]["id"] if twin else 1)
    body = body_path.read_bytes()
    pg_db = f"compound_bench_{os.getpid()}"
    servers: dict[str, Server] = {}
    started_at = datetime.now(UTC)
    runs: list[dict[str, Any]] = []
    open_runs: list[dict[str, Any]] = []
    recovery = None
    try:
        if "compound-sqlite" in targets:
            servers["compound-sqlite"] = compound_server("compound-sqlite", workdir, src, None)
        if "probot" in targets:
            servers["probot"] = probot_server(workdir)
        if "compound-postgres" in targets:
            asyncio.run(_pg_admin(args.pg_admin_url, f'CREATE DATABASE "{pg_db}"'))
            base = args.pg_admin_url.rsplit("/", 1)[0]
            servers["compound-postgres"] = compound_server("compound-postgres", workdir, src, f"{base}/{pg_db}")
        if twin is not None:
            servers["compound-github-down"] = compound_server(
                "compound-github-down", workdir, src, None, (twin, github_port)
            )
        for server in servers.values():
            server.start(args.server_cpus)
            if server.github_down:
                assert twin is not None
                install(server, twin, created)
            preflight(server, body, signature)
            print(f"{server.name}: pid {server.proc.pid}, port {server.port}", flush=True)

        # Alternate so that every Compound run has a Probot run beside it.
        order = []
        for target in COMPOUND_TARGETS:
            if target in servers:
                order.append(target)
                if "probot" in servers:
                    order.append("probot")
        if not order:
            order = ["probot"]
        for target in dict.fromkeys(order):
            run_wrk(servers[target], args, body_path, signature, args.warmup, workdir, f"warmup-{target}")
        for rnd in range(1, args.rounds + 1):
            for i, target in enumerate(order):
                run = run_wrk(
                    servers[target], args, body_path, signature, args.duration, workdir, f"r{rnd}-{i}-{target}"
                )
                run["round"] = rnd
                runs.append(run)
                print(
                    f"round {rnd} {target:<18} {run['deliveries_per_s']:>8.0f}/s  "
                    f"p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms  "
                    f"CPU {run['cpu_us_per_delivery']} µs/delivery"
                    + (
                        ""
                        if run["nothing_lost"] is None
                        else f"  rows {run['rows']} for {run['ok']} 2xx"
                        f"{'' if run['nothing_lost'] else '  LOST OR FAILED'}"
                        f"{'  NOT ALL PROCESSED' if run['all_processed'] is False else ''}"
                        + (f"  {run['unprocessed_after_drain']} pending" if servers[target].github_down else "")
                    ),
                    flush=True,
                )
        for target in COMPOUND_TARGETS:
            if target in servers and args.open_rate > 0:
                open_run = run_open_loop(servers[target], args, body, signature)
                open_runs.append(open_run)
                print(
                    f"open loop {target:<18} {open_run['sent']} at {args.open_rate:g}/s  "
                    f"p50 {open_run['p50_ms']:.2f} ms  p99 {open_run['p99_ms']:.2f} ms  "
                    f"max {open_run['max_ms']:.2f} ms  failed {open_run['failed']}  rows {open_run['rows']}",
                    flush=True,
                )
        if twin is not None:
            print(f"recovery: the GitHub twin starts on port {github_port}", flush=True)
            recovery = recover(servers["compound-github-down"], twin, github_port, args.recovery_timeout)
    finally:
        for server in servers.values():
            server.stop()
        if "compound-postgres" in servers:
            asyncio.run(_pg_admin(args.pg_admin_url, f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = summarise(runs, targets, recovery)
    print_table(summary, open_runs, recovery)
    result = {
        "date": started_at.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "machine": machine(),
        "src": str(src),
        "commit": describe(src),
        "summary": summary,
        "runs": runs,
        "open_loop": open_runs,
        "recovery": recovery,
    }
    out = args.out or BENCH / "results" / f"intake-{started_at:%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nresults: {out}")
    bad = [t for t, s in summary.items() if s.get("nothing_lost") is False or s.get("all_processed") is False]
    bad += [r["target"] for r in open_runs if not r["nothing_lost"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
