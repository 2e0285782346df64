"""Agent sessions end to end: `compound serve` as a subprocess, the twin as GitHub,
real git, the scripted agent through the `command` backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.service_process import ServiceProcess, base_env
from tests.twin_events import comment_created, issue_labeled

REPO = "octo-org/hello"
HOOK = "/api/github/webhooks"
AGENT = Path(__file__).parent / "agents" / "scripted_agent.py"


class World:
    """The twin with one installed repo, people, and a running Compound."""

    def __init__(self, tmp_path: Path, twin) -> None:
        self.tmp = tmp_path
        self.twin = twin
        self.iid = twin.add_installation(account="octo-org")
        self.repo = twin.add_repo(
            REPO, installation_id=self.iid, files={"README.md": "# hello\n", "app.py": "print('hi')\n"}
        )
        twin.set_permission(REPO, "alice", "write")
        twin.set_permission(REPO, "mallory", "read")
        self.plans = tmp_path / "plans"
        self.plans.mkdir()
        self.service: ServiceProcess | None = None

    def plan(self, kind: str, *steps: dict) -> None:
        (self.plans / f"{kind}.json").write_text(json.dumps({"steps": list(steps)}))

    def env(self, **env: object) -> dict[str, str]:
        values = {
            "APP_ID": self.twin.app_id,
            "PRIVATE_KEY": self.twin.private_key_pem,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GHE_HOST": self.twin.host,
            "GHE_PROTOCOL": "http",
            "DATA_DIR": self.tmp / "data",
            "AGENT_BACKEND": "command",
            # One plan per task kind, so a test scripts every round.
            "AGENT_COMMAND": f'{sys.executable} {AGENT} "{self.plans}/$AGENT_TASK_KIND.json"',
            "AGENT_MODEL": "test-model-1",
            # The scripted agent trades files with the test outside its worktree
            # (plans, records, pid files): no sandbox, unless a test asks for one
            # (tests/test_sandbox_e2e.py runs the service's default, auto).
            "AGENT_SANDBOX": "none",
            "LOG_LEVEL": "debug",
            # What an operator's environment might hold; the agent must see none of it.
            "GITHUB_TOKEN": "ghp_operatorTokenThatMustNotLeak0000000000",
            "ANTHROPIC_API_KEY": "sk-ant-test-key-for-the-agent-000000",
        }
        values.update(env)
        return base_env(**values)

    async def start(self, *args: str, **env: object) -> ServiceProcess:
        self.service = ServiceProcess(self.tmp, self.env(**env), args=args)
        await self.service.start()
        return self.service

    async def deliver(self, event: str, payload: dict) -> str:
        """POST a delivery as GitHub does; its delivery id."""
        assert self.service is not None
        delivery_id = str(uuid.uuid4())
        status, body = await self.twin.deliver(
            self.service.url + HOOK, event, payload, delivery_id=delivery_id, secret=WEBHOOK_SECRET
        )
        assert status == 202, body
        return delivery_id

    async def label(self, number: int, sender: str = "alice", label: str = "agent") -> str:
        return await self.deliver("issues", issue_labeled(self.twin, REPO, number, label, sender, self.iid))

    async def command(self, number: int, body: str, sender: str = "alice") -> str:
        return await self.deliver("issue_comment", comment_created(self.twin, REPO, number, body, sender, self.iid))

    def delivery_status(self, delivery_id: str) -> str | None:
        """The delivery's status in the service's store (SQLite under DATA_DIR), None before it is stored."""
        database = self.tmp / "data" / "compound.db"
        if not database.exists():
            return None
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("SELECT status FROM deliveries WHERE delivery_id = ?", (delivery_id,)).fetchone()
        return row[0] if row else None

    async def settled(self, *delivery_ids: str, timeout: float = 30.0) -> None:
        """Wait until the service has finished with every delivery: the positive
        signal a "nothing happened" assertion waits for instead of a sleep."""
        for delivery_id in delivery_ids:
            status = await self.until(
                lambda delivery_id=delivery_id: (s := self.delivery_status(delivery_id)) not in (None, "pending") and s,
                timeout=timeout,
                what=f"delivery {delivery_id} processed",
            )
            assert status == "processed", f"delivery {delivery_id} ended {status}"

    async def until(self, predicate, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.1)
        logs = self.service.logs()[-6000:] if self.service else ""
        raise AssertionError(f"timed out waiting for {what}\n--- service log tail ---\n{logs}")

    def pulls(self) -> list:
        return [i for i in self.repo.issues.values() if i.pull is not None]

    def bot_comments(self, number: int) -> list[str]:
        return [c.body for c in self.twin.comments(REPO, number) if c.user.endswith("[bot]")]

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.repo.bare_path), *args], capture_output=True, text=True, check=True
        ).stdout

    def trailers(self, sha: str) -> dict[str, str]:
        message = self.git("log", "-1", "--format=%B", sha)
        parsed = subprocess.run(
            ["git", "interpret-trailers", "--parse"], input=message, capture_output=True, text=True, check=True
        ).stdout
        return dict(line.split(": ", 1) for line in parsed.splitlines())

    def check_runs(self, sha: str | None = None) -> list:
        return [r for r in self.repo.check_runs.values() if sha is None or r.head_sha == sha]

    async def stop(self) -> None:
        if self.service is not None and self.service.proc is not None:
            await self.service.stop()


@pytest.fixture
async def world(tmp_path, twin):
    w = World(tmp_path, twin)
    try:
        yield w
    finally:
        await w.stop()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


WRITE_FEATURE = {"write": "feature.py", "content": "def feature():\n    return 42\n"}


async def test_label_to_pull_request_with_trailers_and_a_check_run(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", body="Please add `feature()`.", user="alice")
    world.plan("task", {"check_stdin": True}, WRITE_FEATURE, {"print": "Added feature() returning 42."})
    await world.start()
    calls_before = len(world.twin.requests)
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    await world.until(lambda: world.check_runs(pr.pull.head_sha), what="the check run")
    await world.until(lambda: any("opened #" in b for b in world.bot_comments(number)), what="the issue comment")
    calls = world.twin.requests[calls_before:]

    head = pr.pull.head_sha
    assert pr.pull.head_ref == f"compound/issue-{number}" and pr.pull.base_ref == "main"
    assert f"Closes #{number}" in pr.body
    assert "test-model-1" in pr.body and "Added feature() returning 42." in pr.body
    assert world.git("show", f"{head}:feature.py") == "def feature():\n    return 42\n"
    trailers = world.trailers(head)
    assert trailers["Agent-Model"] == "test-model-1"
    assert trailers["Agent-Backend"] == "command"
    assert trailers["Agent-Session"].startswith("s-")
    assert trailers["Co-authored-by"].startswith("alice <") and "alice@users.noreply" in trailers["Co-authored-by"]
    author = world.git("log", "-1", "--format=%an <%ae>|%cn", head).strip()
    bot = f"{world.twin.app_slug}[bot]"
    # The bot user's id in the address: GitHub links the commit to the App's account.
    bot_id = world.twin.state.users[bot]
    assert author == f"{bot} <{bot_id}+{bot}@users.noreply.github.com>|{bot}"
    (run,) = world.check_runs(head)
    assert (run.name, run.status, run.conclusion) == ("Compound", "completed", "success")
    assert [a["identifier"] for a in run.actions] == ["retry"]
    assert run.output["title"] == "Round 1 (task): 1 files changed" and "test-model-1" in run.output["summary"]
    assert "Duration" in run.output["summary"] and "Files changed" in run.output["summary"]
    issue = world.repo.issues[number]
    assert [r.content for r in issue.reactions] == ["eyes"]
    # GitHub API economy (docs/design.md §8): label to PR opened in at most 12 REST calls.
    upto_pr = []
    for call in calls:
        upto_pr.append(call)
        if call.operation_id == "pulls/create":
            break
    print(f"REST calls from label to PR opened: {len(upto_pr)}: {[c.operation_id for c in upto_pr]}")
    assert len(upto_pr) <= 12
    # Least privilege: the handler's token covers the installation; the round asks
    # for one token for its repository's API calls and one, contents:write only, to push.
    scopes = [(r.repositories, r.permissions) for r in world.twin.token_log]
    assert len(scopes) == 3 and (None, None) in scopes
    assert (["hello"], {"contents": "write"}) in scopes
    (round_scope,) = [p for r, p in scopes if r == ["hello"] and p != {"contents": "write"}]
    assert round_scope["pull_requests"] == "write" and round_scope["contents"] == "read"
    assert world.twin.push_scopes == [(REPO, frozenset({"hello"}), {"metadata": "read", "contents": "write"})]
    for call in calls:
        if call.operation_id in ("pulls/create", "checks/create", "issues/list-comments"):
            assert call.repositories == frozenset({"hello"}) and call.permissions["contents"] == "read", call


async def test_read_only_sender_is_refused_and_nothing_runs(world: World):
    number = world.twin.add_issue(REPO, title="Do it", user="mallory")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    await world.settled(await world.label(number, sender="mallory"))
    (refusal,) = world.bot_comments(number)
    assert "@mallory" in refusal and "write access" in refusal
    assert world.pulls() == []
    assert "compound/" not in world.git("branch", "--list")
    assert not world.repo.issues[number].reactions


async def test_agent_command_on_the_pr_adds_a_commit_on_the_same_branch(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", body="Please add feature().", user="alice")
    world.plan("task", WRITE_FEATURE)
    prompt_record = world.tmp / "command-prompt.json"
    world.plan(
        "command",
        {"record": str(prompt_record)},
        {"append": "feature.py", "content": "\n\ndef other():\n    return 7\n"},
        {"print": "Added other()."},
    )
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    first = pr.pull.head_sha
    await world.until(lambda: world.check_runs(first), what="first check run")
    await world.command(pr.number, "/agent please also add other() returning 7")
    await world.until(lambda: pr.pull.head_sha != first, what="a second commit")
    second = pr.pull.head_sha
    assert world.git("rev-parse", f"{second}~1").strip() == first
    prompt = json.loads(prompt_record.read_text())["stdin"]
    assert "please also add other() returning 7" in prompt
    assert "Please add feature" in prompt  # the issue is still part of the follow-up's prompt
    assert "def other()" in world.git("show", f"{second}:feature.py")
    trailers = world.trailers(second)
    assert trailers["Agent-Session"] == world.trailers(first)["Agent-Session"]
    assert trailers["Agent-Model"] == "test-model-1"
    await world.until(lambda: world.check_runs(second), what="second check run")
    (old_run,) = world.check_runs(first)[-1:]
    await world.until(
        lambda: world.check_runs(first)[-1].status == "completed" and len(world.check_runs(first)) == 2,
        what="the in-progress run on the old head completed",
    )
    assert [r.conclusion for r in world.check_runs(first)] == ["success", "neutral"]
    comment = world.twin.comments(REPO, pr.number)[0]
    assert [r.content for r in comment.reactions] == ["eyes"]


async def test_stop_ends_a_long_running_agent_within_seconds(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    pidfile = world.tmp / "grandchild.pid"
    world.plan("task", WRITE_FEATURE)
    world.plan("command", {"spawn": str(pidfile)}, {"print": "working…"}, {"hang": True})
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    head = pr.pull.head_sha
    await world.until(lambda: world.check_runs(head), what="the first round's check run")
    await world.command(pr.number, "/agent take your time")
    await world.until(pidfile.exists, what="the agent to start")
    await world.until(lambda: any(r.status == "in_progress" for r in world.check_runs(head)), what="in-progress run")
    # The in-progress run shows the agent's output live (throttled).
    await world.until(
        lambda: any("working" in (r.output.get("text") or "") for r in world.check_runs(head)),
        timeout=15,
        what="live output in the check run",
    )
    grandchild = int(pidfile.read_text())
    stopped_at = time.monotonic()
    await world.command(pr.number, "/agent stop")

    await world.until(lambda: not alive(grandchild), timeout=10, what="the agent's processes to end")
    assert time.monotonic() - stopped_at < 5.0
    await world.until(lambda: any(r.conclusion == "cancelled" for r in world.check_runs(head)), what="cancelled run")
    assert pr.pull.head_sha == head  # nothing pushed


@pytest.mark.parametrize(
    "case",
    ["hangs past AGENT_TIMEOUT", "exits non-zero", "changes nothing", "only touches forbidden paths"],
)
async def test_agent_failures_end_the_session_cleanly_with_a_comment(case, world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    env: dict[str, object] = {}
    if case == "hangs past AGENT_TIMEOUT":
        world.plan("task", {"print": "thinking"}, {"hang": True})
        env["AGENT_TIMEOUT"] = 2
        expected = "still running after"
    elif case == "exits non-zero":
        world.plan("task", {"print": "it broke: boom", "stderr": True}, {"exit": 3})
        expected = "exited with status 3"
    elif case == "changes nothing":
        world.plan("task", {"print": "Nothing needed changing."})
        expected = "without changing any file"
    else:
        world.twin.commit(REPO, "main", {".github/compound.yml": "forbidden_paths: ['secrets/**']\n"}, "config")
        world.plan("task", {"write": "secrets/key.txt", "content": "s3cr3t"})
        expected = "without changing any file"
    await world.start(**env)
    await world.label(number)
    comments = await world.until(
        lambda: [b for b in world.bot_comments(number) if expected in b],
        timeout=30,
        what=f"a comment saying {expected!r}",
    )
    assert comments
    if case == "exits non-zero":
        assert "it broke: boom" in comments[0]
    assert world.pulls() == []
    assert "compound/" not in world.git("branch", "--list")


async def test_the_agent_environment_holds_no_secret(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    dump = world.tmp / "agent-env.json"
    world.plan("task", {"dump_env": str(dump)}, WRITE_FEATURE)
    await world.start(DATABASE_URL=f"sqlite:///{world.tmp / 'compound.db'}")
    await world.label(number)
    await world.until(dump.exists, what="the agent to run")
    env = json.loads(dump.read_text())
    for name in ("PRIVATE_KEY", "WEBHOOK_SECRET", "DATABASE_URL", "GITHUB_TOKEN", "GH_TOKEN", "APP_ID", "SENTRY_DSN"):
        assert name not in env, name
    values = "\n".join(env.values())
    assert WEBHOOK_SECRET not in values
    assert world.twin.private_key_pem.splitlines()[1] not in values
    for token in world.twin.tokens.tokens:
        assert token not in values
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-test-key-for-the-agent-000000"
    assert env["AGENT_TASK_KIND"] == "task" and env["AGENT_MODEL"] == "test-model-1"
    assert env["AGENT_SESSION_ID"].startswith("s-")
    await world.until(world.pulls, what="a pull request")
    # Nor does the token reach git config or any file Compound keeps.
    for token in world.twin.tokens.tokens:
        for path in (world.tmp / "data").rglob("*"):
            if path.is_file() and path.stat().st_size < 5_000_000:
                assert token.encode() not in path.read_bytes(), path


async def _queue_report(store, numbers, workers) -> str:
    """What the queue and the workers were doing, for a test that timed out."""
    statuses: dict[str, int] = {}
    unfinished = []
    for n in numbers:
        session = await store.sessions.for_issue(REPO, n)
        for r in await store.sessions.rounds(session.id) if session else []:
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status != "done":
                unfinished.append(
                    f"  #{n} {session.id} session {session.status} runner {session.runner} "
                    f"error {(session.error or '')[:300]!r}; round {r.number} {r.kind} {r.status} "
                    f"attempts {r.attempts}"
                )
    tails = ["rounds not done:", *unfinished[:20]]
    for i, worker in enumerate(workers):
        lines = [line for line in worker.logs().splitlines() if '"level":"info"' not in line]
        tails.append(f"--- worker {i} (warnings and errors, last 20) ---\n" + "\n".join(lines[-20:]))
    return f"rounds by status: {statuses}\n" + "\n".join(tails)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_workers_on_postgresql_run_every_round_once_and_one_per_branch(world: World, database_url, store):
    """A web process stores deliveries; two `compound worker` processes share the queue."""
    log = world.tmp / "rounds.log"
    command = (
        f'echo "start $AGENT_SESSION_ID $(date +%s.%N)" >> {log}; sleep 0.2; '
        f'echo "$AGENT_TASK_KIND $(date +%s%N)" > "work-$AGENT_TASK_KIND.txt"; '
        f'echo "end $AGENT_SESSION_ID $(date +%s.%N)" >> {log}'
    )
    numbers = [world.twin.add_issue(REPO, title=f"Task {i}", user="alice") for i in range(40)]
    # Forty sessions of one installation: past its default share of the slots.
    values = world.env(
        DATABASE_URL=database_url, AGENT_COMMAND=command, LOG_LEVEL="info", MAX_SESSIONS_PER_INSTALLATION=8
    )
    web = await world.start("--no-workers", DATABASE_URL=database_url, AGENT_COMMAND=command, LOG_LEVEL="info")
    for number in numbers:
        await world.label(number)
    assert await store.deliveries.count("pending") == len(numbers)
    workers = [ServiceProcess(world.tmp, values, command="worker") for _ in range(2)]
    for worker in workers:
        await worker.start()
    try:
        async with asyncio.timeout(60):
            while await store.sessions.count() < len(numbers):
                await asyncio.sleep(0.1)
        # Ten sessions get a second round at once: it must wait for the first.
        sessions = [await store.sessions.for_issue(REPO, n) for n in numbers[:10]]
        for session in sessions:
            await store.sessions.add_round(session.id, kind="command", requested_by="alice", instructions="more")
        try:
            await world.until(lambda: len(world.pulls()) == len(numbers), timeout=120, what="40 pull requests")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{await _queue_report(store, numbers, workers)}") from None

        async def all_rounds_finished() -> bool:
            for n in numbers:
                session = await store.sessions.for_issue(REPO, n)
                if session is None or any(r.status != "done" for r in await store.sessions.rounds(session.id)):
                    return False
            return True

        try:
            async with asyncio.timeout(120):
                while not await all_rounds_finished():
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(
                f"timed out waiting for every round to finish\n{await _queue_report(store, numbers, workers)}"
            ) from None
    finally:
        for worker in workers:
            await worker.stop()
        await web.stop()
    starts: dict[str, list[tuple[float, float]]] = {}
    open_at: dict[str, float] = {}
    for line in log.read_text().splitlines():
        what, session_id, at = line.split()
        if what == "start":
            assert session_id not in open_at, f"two rounds of {session_id} at once"
            open_at[session_id] = float(at)
        else:
            starts.setdefault(session_id, []).append((open_at.pop(session_id), float(at)))
    assert sum(len(v) for v in starts.values()) == 50  # every round ran exactly once
    assert sorted(len(v) for v in starts.values()) == [1] * 30 + [2] * 10
    # Both workers did some of the work.
    assert all("round.started" in w.logs() for w in workers)


async def test_check_run_output_stays_within_limits_and_redacted(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    leaked = "ghs_" + "L" * 36
    transcript = world.tmp / "transcript.txt"
    transcript.write_text(
        "".join(f"step {i}: working through a long task\n" for i in range(20_000)) + f"token {leaked}\n"
    )
    world.plan("task", {"print_file": str(transcript)}, WRITE_FEATURE, {"print": "Done."})
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    (run,) = await world.until(lambda: world.check_runs(pr.pull.head_sha), what="the check run")
    text = run.output["text"]
    assert 1000 < len(text) <= 65_535
    assert leaked not in text and "[REDACTED]" in text
    assert leaked not in pr.body


async def test_a_worker_that_dies_mid_round_leaves_it_to_the_next(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    started = world.tmp / "first-attempt.pid"
    world.plan("task", {"spawn": str(started)}, {"hang": True})
    await world.start(DELIVERY_LEASE_SECONDS=2)
    await world.label(number)
    await world.until(started.exists, what="the first attempt")
    agents = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).endswith(f"{world.plans}/task.json")]
    assert len(agents) == 1
    await world.service.kill()  # kill -9 mid-round: the session's lease lapses
    world.plan("task", WRITE_FEATURE)
    await world.start(DELIVERY_LEASE_SECONDS=2)
    # The dead process's agent (and what it spawned) does not run on, spending
    # tokens, until its timeout: the next Compound process on the machine ends it.
    await world.until(lambda: not alive(int(agents[0].name)), timeout=5, what="the orphaned agent killed")
    await world.until(lambda: not alive(int(started.read_text())), timeout=5, what="its child killed")
    pr = (await world.until(world.pulls, timeout=30, what="the round taken over"))[0]
    assert world.git("show", f"{pr.pull.head_sha}:feature.py").startswith("def feature")
    assert len([p for p in world.pulls()]) == 1


async def test_closing_the_pr_ends_the_session_with_its_outcome(world: World, tmp_path):
    from tests.twin import shapes
    from tests.webhook_examples import example

    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    await world.until(lambda: world.check_runs(pr.pull.head_sha), what="the check run")
    pr.pull.merged = True
    pr.state = "closed"
    payload = example("pull_request", "closed")
    payload["number"] = pr.number
    payload["pull_request"]["number"] = pr.number
    payload["pull_request"]["merged"] = True
    payload["repository"] = shapes.repository(world.twin, world.repo) | {"has_discussions": False}
    payload["installation"] = {"id": world.iid, "node_id": "x"}
    await world.deliver("pull_request", payload)
    events = tmp_path / "data" / "events.jsonl"
    await world.until(lambda: events.exists() and '"session.closed"' in events.read_text(), what="the session closed")
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    closed = [e for e in lines if e["type"] == "session.closed"]
    assert closed[0]["outcome"] == "merged" and closed[0]["pr"] == pr.number
    kinds = [e["type"] for e in lines]
    assert kinds[:5] == ["session.created", "round.started", "round.prompt", "agent.started", "agent.finished"]
    assert "round.pushed" in kinds
    assert all(e["session"] == closed[0]["session"] and e["repo"] == REPO for e in lines)


CLAUDE_BIN = Path(__file__).parent / "claude_stub" / "node_modules" / ".bin"


@pytest.mark.timeout(300)  # many CI rounds, or the real CLI: minutes on a loaded machine
@pytest.mark.skipif(
    not (CLAUDE_BIN / "claude").exists() and not os.environ.get("CI"),
    reason="Claude Code not installed: npm ci --prefix tests/claude_stub (make test does it)",
)
async def test_label_to_pr_with_the_real_claude_code_cli(world: World, aiohttp_server):
    """The claude-code backend end to end: the real CLI, offline, against a scripted Messages API."""
    from tests.claude_stub.server import MODEL, ScriptedMessagesAPI

    api = ScriptedMessagesAPI(
        [
            {
                "text": "I'll add the function.",
                "tool_use": {
                    "name": "Bash",
                    "input": {
                        "command": "printf 'def feature():\\n    return 42\\n' > feature.py",
                        "description": "Write feature.py",
                    },
                },
            },
            {"text": "Added feature() in feature.py."},
        ]
    )
    server = await aiohttp_server(api.app())
    number = world.twin.add_issue(REPO, title="Add a feature", body="Add feature() returning 42.", user="alice")
    home = world.tmp / "home"
    home.mkdir()
    await world.start(
        AGENT_BACKEND="claude-code",
        AGENT_MODEL=MODEL,
        PATH=f"{CLAUDE_BIN}:{os.environ['PATH']}",
        HOME=home,
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{server.port}",
        ANTHROPIC_API_KEY="test",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1,
        DISABLE_TELEMETRY=1,
        IS_SANDBOX=1,  # Claude Code refuses bypassPermissions as root outside a sandbox
        AGENT_ENV_PASSTHROUGH="DISABLE_TELEMETRY,IS_SANDBOX",
    )
    await world.label(number)
    pr = (await world.until(world.pulls, timeout=90, what="a pull request from Claude Code"))[0]
    head = pr.pull.head_sha
    assert world.git("show", f"{head}:feature.py") == "def feature():\n    return 42\n"
    trailers = world.trailers(head)
    assert trailers["Agent-Backend"] == "claude-code" and trailers["Agent-Model"] == MODEL
    assert "Added feature() in feature.py." in pr.body
    (run,) = await world.until(lambda: world.check_runs(head), what="the check run")
    assert "in /" in run.output["summary"] and "$" in run.output["summary"]  # tokens and cost reported
    prompt = json.dumps(api.requests[-1])
    assert "Add feature() returning 42." in prompt  # the issue reached the model through the prompt


async def test_github_errors_during_a_round_are_retried(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    # One 502 is absorbed by the client's own retries.
    world.twin.fail_next("POST", r"/pulls$", status=502)
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request despite a 502"))[0]
    assert world.twin.calls("pulls/create")[0].status == 502
    assert pr.pull is not None and pr.pull.head_ref == f"compound/issue-{number}"


async def test_a_failed_bot_user_look_up_does_not_hold_up_the_commit(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    world.twin.fail_next("GET", r"^/users/", status=404, times=100)
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request without the bot's id"))[0]
    bot = f"{world.twin.app_slug}[bot]"
    assert world.git("log", "-1", "--format=%ae", pr.pull.head_sha).strip() == f"{bot}@users.noreply.github.com"
    assert "could not look up the bot user" in world.service.logs()


async def test_a_round_that_keeps_crashing_gives_up_with_a_comment(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    # GitHub refuses to open the PR for longer than every retry: the round is
    # tried again a few times, then the session fails with a comment.
    world.twin.fail_next("POST", r"/pulls$", status=503, times=100)
    await world.label(number)
    comment = await world.until(
        lambda: [b for b in world.bot_comments(number) if "gave up on round 1" in b], timeout=90, what="giving up"
    )
    assert "after 3 tries" in comment[0]
    assert world.pulls() == []
