"""The learning loop, measured: first-try success with learning on and off, same seeds.

A repository with three path areas (`api/`, `web/`, `cli/`) whose CI runs two
GitHub Actions checks the agent is never told about: `style` (every file under
an area starts with `# style: <area>`, checked by `python3 tools/style.py`)
and `tests` (every `VALUE_<n>` is `<n>`, checked by `python3 tools/tests.py`).
`compound serve` (SQLite, the `command` backend running bench/sim_agent.py)
against the GitHub twin, whose CI runs both on every push; N issues (`Add mod
<n> under <area>/`) are labelled four at a time; each PR is merged once its CI
is green (or closed if Compound escalates). Run twice, with LEARNING=on and
LEARNING=off, with the same seeds (the agent's luck depends on the issue
number only).

The simulated agent gets the style right when a lesson names the `style`
command (else by chance, 30 %, whatever the variant) and the value right with
a probability that depends on the prompt variant alone (`default` 60 %,
`concise` 90 %): lessons and variants each matter, independently. Learning on
should find the `style` lessons (one per area) and keep them, retire the
`tests` lessons (the agent ignores them: they cannot help), and converge on
the `concise` variant.

    .venv/bin/python bench/learning.py [--sessions 300] [--batch 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.service_process import ServiceProcess, base_env  # noqa: E402
from tests.twin.server import GitHubTwin  # noqa: E402
from tests.twin_events import issue_labeled, pull_request_event  # noqa: E402

REPO = "sim-org/app"
SECRET = "bench-secret"
AREAS = ("api", "web", "cli")
STYLE = (
    "import pathlib, sys\n"
    "bad = []\n"
    "for area in ('api', 'web', 'cli'):\n"
    "    for p in sorted(pathlib.Path(area).glob('*.py')):\n"
    "        if not p.read_text().startswith(f'# style: {area}'):\n"
    "            bad.append(p)\n"
    "            print(f'{p}:1:1: S100 missing the area header `# style: {area}`')\n"
    "print(f'Found {len(bad)} errors.' if bad else 'All checks passed!')\n"
    "sys.exit(1 if bad else 0)\n"
)
TESTS = (
    "import pathlib, re, sys\n"
    "failed = []\n"
    "for area in ('api', 'web', 'cli'):\n"
    "    for p in sorted(pathlib.Path(area).glob('mod_*.py')):\n"
    "        n = int(p.stem.split('_')[1])\n"
    "        m = re.search(r'^VALUE_\\d+ = (-?\\d+)$', p.read_text(), re.M)\n"
    "        got = int(m.group(1)) if m else None\n"
    "        if got != n:\n"
    "            failed.append(p)\n"
    "            print(f'FAILED tests/test_mods.py::test_value[{p}] - assert {got} == {n}')\n"
    "            print(f'E   assert {got} == {n}')\n"
    "print(f'{len(failed)} failed' if failed else 'all passed')\n"
    "sys.exit(1 if failed else 0)\n"
)
CHECKS = [
    {"name": "style", "command": "python3 tools/style.py", "app": "github-actions"},
    {"name": "tests", "command": "python3 tools/tests.py", "app": "github-actions"},
]


async def run(mode: str, sessions: int, batch: int, work: Path) -> dict[str, object]:
    twin = GitHubTwin(work / f"twin-{mode}")
    await twin.start()
    iid = twin.add_installation(account="sim-org")
    files = {"README.md": "sim\n", "tools/style.py": STYLE, "tools/tests.py": TESTS}
    files.update({f"{a}/__init__.py": f"# style: {a}\n" for a in AREAS})
    repo = twin.add_repo(REPO, installation_id=iid, files=files)
    twin.set_permission(REPO, "alice", "write")
    data = work / f"data-{mode}"
    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATA_DIR=data,
        LOG_LEVEL="warning",
        AGENT_BACKEND="command",
        AGENT_COMMAND=f"{sys.executable} {ROOT / 'bench' / 'sim_agent.py'}",
        AGENT_SANDBOX="none",
        AGENT_MODEL="sim-model",
        LEARNING=mode,
        CI_QUIET_SECONDS="0",
        SIM_SEED="1",
        AGENT_ENV_PASSTHROUGH="SIM_SEED",
        MAX_CONCURRENT_SESSIONS=str(batch),
    )
    service = ServiceProcess(work, env)
    await service.start()
    hook = service.url + "/api/github/webhooks"
    twin.ci.configure(REPO, checks=CHECKS, deliver_to=hook, secret=SECRET, installation_id=iid, delay=0.05)
    started = time.monotonic()
    try:
        for first in range(1, sessions + 1, batch):
            numbers = []
            for n in range(first, min(first + batch, sessions + 1)):
                area = AREAS[n % len(AREAS)]
                numbers.append(
                    twin.add_issue(
                        REPO, title=f"Add mod {n} under {area}/", body=f"SIM area={area} n={n}", user="alice"
                    )
                )
            for number in numbers:
                status, _ = await twin.deliver(
                    hook, "issues", issue_labeled(twin, REPO, number, "agent", "alice", iid), secret=SECRET
                )
                assert status == 202
            await asyncio.gather(*(_resolve(twin, repo, hook, iid, number, service) for number in numbers))
        await _settle(data, sessions)
    finally:
        runtime = time.monotonic() - started
        await service.stop()
        await twin.stop()
    return _figures(data, runtime)


def _pull_for(repo, number: int):
    return next((p for p in repo.issues.values() if p.pull and p.pull.head_ref == f"compound/issue-{number}"), None)


async def _resolve(twin, repo, hook: str, iid: int, number: int, service) -> None:
    """Merge the issue's PR once its CI is green and stays so; close it if Compound gives up."""
    deadline = time.monotonic() + 180
    green_since = None
    while time.monotonic() < deadline:
        pull = _pull_for(repo, number)
        if pull is not None:
            if "agent:needs-human" in pull.labels:
                await _close(twin, repo, hook, iid, pull, merged=False)
                return
            results = twin.ci.results.get(pull.pull.head_sha) or []
            done = len(results) == len(CHECKS)
            if done and all(c == "success" for _, c in results):
                green_since = green_since or time.monotonic()
                if time.monotonic() - green_since > 1.0:
                    await _close(twin, repo, hook, iid, pull, merged=True)
                    return
            else:
                green_since = None
        await asyncio.sleep(0.1)
    raise TimeoutError(f"issue #{number} never settled:\n{service.logs()[-3000:]}")


async def _close(twin, repo, hook: str, iid: int, pull, merged: bool) -> None:
    pull.pull.merged = merged
    status, _ = await twin.deliver(
        hook, "pull_request", pull_request_event(twin, REPO, pull.number, "closed", "alice", iid), secret=SECRET
    )
    assert status == 202


async def _settle(data: Path, sessions: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sqlite3.connect(data / "compound.db") as conn:
            if conn.execute("SELECT count(*) FROM outcomes").fetchone()[0] >= sessions:
                return
        await asyncio.sleep(0.2)
    raise TimeoutError("outcomes missing")


def _figures(data: Path, runtime: float) -> dict[str, object]:
    with sqlite3.connect(data / "compound.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT o.*, s.issue_number AS n FROM outcomes o JOIN sessions s ON s.id = o.session_id "
            "ORDER BY s.issue_number"
        ).fetchall()
        lessons = [
            dict(r) for r in conn.execute("SELECT id, status, area, text, reason, evidence FROM lessons ORDER BY id")
        ]
    last = rows[-100:]
    variants: dict[str, int] = {}
    for r in last:
        variants[r["prompt_variant"]] = variants.get(r["prompt_variant"], 0) + 1
    # Each variant's first-try record, over all sessions and over those that carried a lesson
    # (where the style is right, so what is left is the variant's own effect).
    by_variant: dict[str, dict[str, int]] = {}
    for r in rows:
        v = by_variant.setdefault(
            r["prompt_variant"], {"sessions": 0, "first_try": 0, "with_lessons": 0, "with_lessons_first_try": 0}
        )
        v["sessions"] += 1
        v["first_try"] += r["first_try"]
        if json.loads(r["lessons"] or "[]"):
            v["with_lessons"] += 1
            v["with_lessons_first_try"] += r["first_try"]
    curve = [
        round(sum(r["first_try"] for r in rows[i : i + 50]) / len(rows[i : i + 50]), 2) for i in range(0, len(rows), 50)
    ]
    return {
        "sessions": len(rows),
        "first_try_all": round(sum(r["first_try"] for r in rows) / len(rows), 3),
        "first_try_last_100": round(sum(r["first_try"] for r in last) / len(last), 3),
        "curve_per_50": curve,
        "outcomes": {k: sum(1 for r in rows if r["outcome"] == k) for k in ("merged", "closed", "escalated", "failed")},
        "ci_rounds": sum(r["ci_rounds"] for r in rows),
        "variants_last_100": variants,
        "by_variant": by_variant,
        "lessons": [
            {
                "id": x["id"],
                "status": x["status"],
                "area": x["area"],
                "evidence": len(json.loads(x["evidence"])),
                "text": x["text"][:90],
                "reason": x["reason"],
            }
            for x in lessons
        ],
        "runtime_s": round(runtime, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--modes", default="on,off")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="compound-bench-learning-"))
    out = {}
    for mode in args.modes.split(","):
        out[f"learning {mode}"] = asyncio.run(run(mode, args.sessions, args.batch, work))
        print(json.dumps({f"learning {mode}": out[f"learning {mode}"]}), file=sys.stderr, flush=True)
    on, off = out.get("learning on"), out.get("learning off")
    if on and off:
        out["on_minus_off_last_100_points"] = round(100 * (on["first_try_last_100"] - off["first_try_last_100"]), 1)
    print(json.dumps(out, indent=2))
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
