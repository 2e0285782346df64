"""`AGENT_SANDBOX=user` as users run it: `compound serve` as root, the agent as AGENT_USER, the twin, real git.

No namespaces here: file modes are all that keeps the agent out, so the hostile
agent tries everything a root service leaves lying around: other processes'
environments, the App's key file, `.env`, the database, another repository's
mirror and another session's worktree, the operator's HOME, the service's
log. It reaches none of it, its own `git commit` still works and becomes part
of the PR, and the next session on the repository works.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import WEBHOOK_SECRET, agent_user_name
from tests.test_sandbox import HOSTILE, IN_CI, PYTHON
from tests.test_sessions_e2e import REPO, World
from tests.test_workspace import open_to_others

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not IN_CI, reason="user mode needs the service to run as root")


@pytest.fixture
async def world(twin) -> AsyncIterator[World]:
    # Passable by anyone, as DATA_DIR=/data is in the image: the agent must reach its worktree.
    base = Path(tempfile.mkdtemp(prefix="compound-user-e2e-"))
    base.chmod(0o711)
    w = World(base, twin)
    try:
        yield w
    finally:
        await w.stop()
        shutil.rmtree(base, ignore_errors=True)


def lying_around(world: World) -> dict[str, Path]:
    """What a host running `make serve` as root holds, written as an operator leaves it (umask 022)."""
    data = world.tmp / "data"
    files = {
        ".env": (world.tmp / ".env", f"WEBHOOK_SECRET={WEBHOOK_SECRET}\n"),
        "key": (world.tmp / "app.private-key.pem", world.twin.private_key_pem),
        "other mirror": (data / "mirrors" / "octo-org" / "other.git" / "config", "[core]\n\tbare = true\n"),
        "other worktree": (data / "workspaces" / "s-other" / "notes.txt", "SECRET-OTHER-SESSION\n"),
        "operator ssh key": (world.tmp / "home" / ".ssh" / "id_ed25519", "SECRET-SSH-IDENTITY\n"),
    }
    for path, text in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (world.tmp / "home").chmod(0o700)  # as root's HOME is
    return {name: path for name, (path, _) in files.items()}


async def test_a_hostile_agent_run_as_agent_user_reaches_nothing_and_its_commit_becomes_a_pr(world: World):
    data = world.tmp / "data"
    files = lying_around(world)
    victim = world.tmp / "victim"  # where a link in its git dir would have Compound's git write
    victim.write_text("untouched\n")
    secrets = [world.twin.private_key_pem.splitlines()[1], WEBHOOK_SECRET, "ghp_operatorTokenThatMustNotLeak"]
    user = agent_user_name()
    await world.start(
        AGENT_SANDBOX="user",
        AGENT_USER=user,
        AGENT_COMMAND=shlex.join([PYTHON, str(HOSTILE)]),
        PRIVATE_KEY=None,
        PRIVATE_KEY_PATH=files["key"],
        HOME=world.tmp / "home",
    )
    health = await world.service.get_json("/healthz")
    assert health["sandbox"]["mode"] == "user", health
    log = world.service.log_path
    targets = {
        "read": [
            *(str(p) for p in files.values()),
            str(data / "compound.db"),
            str(data / "events.jsonl"),
            str(log),
        ],
        "list": [str(data), str(data / "mirrors"), str(data / "workspaces"), str(world.tmp)],
        "write": [str(data / "planted"), str(world.tmp / "planted")],
        "secrets": secrets,
        "commit": True,
        "symlink": {"{gitdir}/logs/HEAD": str(victim)},
        "git": True,
        "pwned": str(world.tmp / "pwned"),
    }
    number = world.twin.add_issue(
        REPO, title="Add a feature", body="Add feature().\n\nHOSTILE-TARGETS: " + json.dumps(targets), user="alice"
    )
    await world.label(number)
    pr = (await world.until(world.pulls, timeout=60, what="the hostile agent's pull request"))[0]
    head = pr.pull.head_sha
    report = json.loads(world.git("show", f"{head}:hostile-report.json"))
    assert report["uid"] == pwd.getpwnam(user).pw_uid
    assert report["read"] == {} and report["listed"] == {} and report["wrote"] == []
    assert report["secrets_seen"] == []  # no other process's /proc/<pid>/environ
    assert not (world.tmp / "pwned").exists() and not (data / "planted").exists()
    assert len(report["traps"]) == 1 and victim.read_text() == "untouched\n"
    # Its own git worked in its worktree, and its commit is in the pull request.
    assert report["commit"]
    subjects = world.git("log", "--format=%s", f"main..{head}").splitlines()
    assert "Add feature(), says the agent" in subjects
    assert world.git("show", f"{head}:feature.py") == "def feature():\n    return 42\n"
    (run,) = await world.until(lambda: world.check_runs(head), what="the check run")
    assert f"user (runs as {user}" in run.output["summary"]
    # The next session on the same repository works, and the mirror is closed to the agent again.
    second = world.twin.add_issue(REPO, title="Another", body="Add feature() again.", user="alice")
    await world.label(second)
    await world.until(lambda: len(world.pulls()) == 2, timeout=60, what="the next session's pull request")
    assert open_to_others(data / "mirrors" / "octo-org" / "hello.git") == []
