"""The sandbox as users run it: `compound serve` with its default (`auto`), the twin, real git.

A hostile agent works a labelled issue: it reaches none of the service's
secrets, yet its ordinary change becomes a PR, the check run says what
isolated it, and the next session on the same repository works. Claude Code's
real CLI runs in the same sandbox, with the service as root, and succeeds
without being told it is in a sandbox.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.test_sandbox import HOSTILE, IN_CI, PYTHON
from tests.test_sessions_e2e import CLAUDE_BIN, REPO, World, world  # noqa: F401

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/bwrap") and not IN_CI, reason="bubblewrap not installed (CI installs it)"
)


def sandboxed(**env: object) -> dict[str, object]:
    """The service's default sandbox; only the agents' own files added read-only."""
    return {"AGENT_SANDBOX": "auto", "AGENT_SANDBOX_PATHS": str(HOSTILE.parent), **env}


async def test_a_hostile_agent_in_the_default_sandbox_reaches_nothing_and_still_opens_its_pr(world: World):
    data = world.tmp / "data"
    (world.tmp / ".env").write_text(f"WEBHOOK_SECRET={WEBHOOK_SECRET}\n")  # `make serve` keeps one here
    secrets = [world.twin.private_key_pem.splitlines()[1], WEBHOOK_SECRET, "ghp_operatorTokenThatMustNotLeak"]
    targets = {
        "read": [
            str(data / "compound.db"),
            str(data / "events.jsonl"),
            str(world.tmp / ".env"),
            str(world.plans / "task.json"),
            *(str(p) for p in world.tmp.glob("compound-*.log")),
        ],
        "list": [str(data), str(data / "mirrors"), str(data / "workspaces"), str(world.tmp)],
        "write": [str(data / "planted"), str(world.tmp / "planted")],
        "secrets": secrets,
        "git": True,
        "pwned": str(world.tmp / "pwned"),
    }
    body = "Add feature() returning 42.\n\nHOSTILE-TARGETS: " + json.dumps(targets)
    number = world.twin.add_issue(REPO, title="Add a feature", body=body, user="alice")
    await world.start(**sandboxed(AGENT_COMMAND=shlex.join([PYTHON, str(HOSTILE)])))
    health = await world.service.get_json("/healthz")
    assert health["sandbox"]["mode"] == "bwrap"
    await world.label(number)
    pr = (await world.until(world.pulls, timeout=60, what="the hostile agent's pull request"))[0]
    head = pr.pull.head_sha
    assert world.git("show", f"{head}:feature.py") == "def feature():\n    return 42\n"
    report = json.loads(world.git("show", f"{head}:hostile-report.json"))
    assert report["read"] == {} and report["wrote"] == [] and report["secrets_seen"] == []
    # Listing shows only the way to what it was given: its worktree and the mirror its `.git` names.
    given = [Path(report["cwd"]), data / "mirrors" / "octo-org" / "hello.git"]
    assert given[0].parent == data / "workspaces"
    on_the_way = {str(p) for g in given for p in g.parents} | {str(g) for g in given}
    for directory, entries in report["listed"].items():
        assert all(f"{directory}/{e}" in on_the_way for e in entries), (directory, entries)
    assert not (world.tmp / "pwned").exists() and not (data / "planted").exists()
    (run,) = await world.until(lambda: world.check_runs(head), what="the check run")
    assert "bwrap" in run.output["summary"]
    # The repository's mirror still serves the next session.
    second = world.twin.add_issue(REPO, title="Another", body="Add feature() again.", user="alice")
    await world.label(second)
    await world.until(lambda: len(world.pulls()) == 2, timeout=60, what="the next session's pull request")
    assert not (world.tmp / "pwned").exists()


@pytest.mark.skipif(
    not (CLAUDE_BIN / "claude").exists() and not IN_CI,
    reason="Claude Code not installed: npm ci --prefix tests/claude_stub (make test does it)",
)
async def test_claude_code_in_the_sandbox_works_under_a_root_service(world: World, aiohttp_server):
    """No IS_SANDBOX pretence: the agent is not root inside, so bypassPermissions is allowed."""
    from tests.claude_stub.server import MODEL, ScriptedMessagesAPI

    api = ScriptedMessagesAPI(
        [
            {
                "text": "I'll add the function.",
                "tool_use": {
                    "name": "Bash",
                    "input": {
                        "command": "id -u > uid.txt; printf 'def feature():\\n    return 42\\n' > feature.py",
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
        **sandboxed(
            AGENT_SANDBOX_PATHS=str(CLAUDE_BIN.parent),
            AGENT_BACKEND="claude-code",
            AGENT_MODEL=MODEL,
            PATH=f"{CLAUDE_BIN}:{os.environ['PATH']}",
            HOME=home,
            ANTHROPIC_BASE_URL=f"http://127.0.0.1:{server.port}",
            ANTHROPIC_API_KEY="test",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1,
            DISABLE_TELEMETRY=1,
            AGENT_ENV_PASSTHROUGH="DISABLE_TELEMETRY",
        )
    )
    await world.label(number)
    pr = (await world.until(world.pulls, timeout=90, what="a pull request from Claude Code in the sandbox"))[0]
    head = pr.pull.head_sha
    assert world.git("show", f"{head}:feature.py") == "def feature():\n    return 42\n"
    assert world.git("show", f"{head}:uid.txt").strip() != "0"
    assert "Added feature() in feature.py." in pr.body


async def test_agent_sandbox_none_is_said_at_start_and_in_every_check_run(world: World):
    from tests.test_sessions_e2e import WRITE_FEATURE

    number = world.twin.add_issue(REPO, title="Add a feature", body="Add feature().", user="alice")
    world.plan("task", WRITE_FEATURE, {"print": "Added feature()."})
    await world.start(AGENT_SANDBOX="none")
    assert "AGENT_SANDBOX=none: agents run UNISOLATED" in world.service.logs()
    assert (await world.service.get_json("/healthz"))["sandbox"]["mode"] == "none"
    await world.label(number)
    pr = (await world.until(world.pulls, timeout=60, what="the pull request"))[0]
    (run,) = await world.until(lambda: world.check_runs(pr.pull.head_sha), what="the check run")
    assert "none — the agent runs unisolated" in run.output["summary"]


async def test_with_no_sandbox_that_works_no_agent_starts_and_the_issue_is_told_how_to_fix_it(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", body="Add feature().", user="alice")
    started = world.tmp / "agent-started"
    world.plan("task", {"write": str(started), "content": "x"})
    # `user` cannot cut the network: with AGENT_NETWORK=off no sandbox qualifies (root or not).
    await world.start(AGENT_SANDBOX="user", AGENT_NETWORK="off")
    health = await world.service.get_json("/healthz")
    assert health["sandbox"]["mode"] == "unavailable" and "To fix:" in health["sandbox"]["detail"]
    await world.label(number)
    # A first round has no head to put a check run on: the escalation comment says it.
    await world.until(lambda: world.bot_comments(number)[1:], timeout=60, what="the escalation")
    (comment,) = [c for c in world.bot_comments(number) if "<!-- compound:escalation" in c]
    assert "agents cannot start: no sandbox" in comment and "apt-get install bubblewrap" in comment
    assert "AGENT_SANDBOX=user: user: cannot cut or limit the network" in comment
    assert not started.exists() and world.pulls() == []
