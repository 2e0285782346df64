"""Workspaces with real git against the twin's smart-HTTP repositories."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.workspace import CommitIdentity, GitError, Trailers, Workspace, Workspaces

BOT = CommitIdentity("compound[bot]", "12345+compound[bot]@users.noreply.github.com")
ALICE = CommitIdentity("alice", "1+alice@users.noreply.github.com")
TRAILERS = Trailers(model="claude-sonnet-4-5", backend="command", session="s-1", co_author=ALICE)
BRANCH = "compound/issue-7"
FILES = {"README.md": "# app\n", "src/app.py": "print('hi')\n", ".github/workflows/ci.yml": "on: push\n"}


def no_secrets(path: str) -> bool:
    return path.startswith("secrets/") or path.startswith(".github/workflows/")


def git(*args: str, cwd: Path | None = None) -> str:
    """git as a person (or the agent) runs it; stdout."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "agent",
        "GIT_AUTHOR_EMAIL": "agent@example.com",
        "GIT_COMMITTER_NAME": "agent",
        "GIT_COMMITTER_EMAIL": "agent@example.com",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def trailers_of(bare: Path, sha: str) -> list[str]:
    body = git(f"--git-dir={bare}", "log", "-1", "--format=%B", sha)
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"], input=body, capture_output=True, text=True, check=True
    )
    return parsed.stdout.splitlines()


EXPECTED_TRAILERS = [
    "Agent-Model: claude-sonnet-4-5",
    "Agent-Backend: command",
    "Agent-Session: s-1",
    "Co-authored-by: alice <1+alice@users.noreply.github.com>",
]


@dataclass
class Setup:
    workspaces: Workspaces
    token: str
    bare: Path
    data: Path
    twin: object
    iid: int

    async def open(self, session: str = "s-1", branch: str = BRANCH, **kw: str) -> Workspace:
        return await self.workspaces.open("octo-org/app", session, branch, self.token, **kw)

    def remote(self, *args: str) -> str:
        return git(f"--git-dir={self.bare}", *args)


@pytest.fixture
async def setup(twin) -> AsyncIterator[Setup]:
    iid = twin.add_installation(account="octo-org")
    repo = twin.add_repo("octo-org/app", installation_id=iid, default_branch="main", files=FILES)
    # Passable by anyone (as DATA_DIR=/data is in the image), so an agent run as AGENT_USER reaches its worktree.
    base = Path(tempfile.mkdtemp(prefix="compound-ws-"))
    base.chmod(0o711)
    data = base / "data"
    yield Setup(Workspaces(data, twin.git_url), twin.mint_token(iid), repo.bare_path, data, twin, iid)
    shutil.rmtree(base, ignore_errors=True)


async def commit(
    ws: Workspace, message: str = "Fix the greeting", forbidden: Callable[[str], bool] = no_secrets
) -> str | None:
    return await ws.commit(message, BOT, TRAILERS, forbidden)


# --- opening ---------------------------------------------------------------


async def test_new_session_starts_at_the_default_branch_head(setup: Setup) -> None:
    ws = await setup.open()
    assert ws.path == setup.data / "workspaces" / "s-1"
    assert (ws.path / "src/app.py").read_text() == "print('hi')\n"
    assert ws.base_sha == setup.remote("rev-parse", "main")
    assert git("branch", "--show-current", cwd=ws.path) == BRANCH
    assert (setup.data / "mirrors" / "octo-org" / "app.git" / "HEAD").exists()
    # Only the default branch and session branches are fetched, under refs/remotes.
    refs = git(f"--git-dir={ws.mirror}", "for-each-ref", "--format=%(refname)").splitlines()
    assert set(refs) == {"refs/remotes/origin/HEAD", f"refs/heads/{BRANCH}"}


async def test_mirror_fetches_only_default_and_session_branches(setup: Setup) -> None:
    setup.twin.commit("octo-org/app", "feature-x", {"x": "1\n"})
    setup.twin.commit("octo-org/app", "compound/issue-3", {"y": "1\n"})
    git(f"--git-dir={setup.bare}", "update-ref", "refs/pull/1/head", setup.remote("rev-parse", "main"))
    mirror = await setup.workspaces.sync_mirror("octo-org/app", setup.token)
    refs = git(f"--git-dir={mirror}", "for-each-ref", "--format=%(refname)").splitlines()
    assert sorted(refs) == ["refs/remotes/origin/HEAD", "refs/remotes/origin/compound/issue-3"]


async def test_mirror_is_fetched_not_recloned(setup: Setup) -> None:
    first = await setup.open("s-1")
    mirror = first.mirror
    marker = (mirror.stat().st_ino, (mirror / "objects").stat().st_ino, (mirror / "HEAD").stat().st_ino)
    await setup.workspaces.close(first)

    new_sha = setup.twin.commit("octo-org/app", "main", {"NEWS.md": "news\n"}, "Add news")
    second = await setup.open("s-2")
    assert second.base_sha == new_sha
    assert (second.path / "NEWS.md").read_text() == "news\n"
    assert second.mirror == mirror
    assert (mirror.stat().st_ino, (mirror / "objects").stat().st_ino, (mirror / "HEAD").stat().st_ino) == marker


async def test_concurrent_opens_share_one_mirror(setup: Setup) -> None:
    opened = await asyncio.gather(*(setup.open(f"s-{i}", f"compound/issue-{i}") for i in range(4)))
    assert {ws.mirror for ws in opened} == {setup.data / "mirrors" / "octo-org" / "app.git"}
    assert sorted(p.name for p in (setup.data / "mirrors" / "octo-org").iterdir() if p.suffix != ".lock") == ["app.git"]
    for ws in opened:
        assert (ws.path / "README.md").exists()


async def test_two_processes_share_one_mirror(setup: Setup) -> None:
    # Two Workspaces on one DATA_DIR stand for two worker processes: no shared
    # asyncio lock, only git's own locks and the mirror's atomic creation.
    other = Workspaces(setup.data, setup.twin.git_url)
    first, second = await asyncio.gather(
        setup.workspaces.sync_mirror("octo-org/app", setup.token),
        other.sync_mirror("octo-org/app", setup.token),
    )
    assert first == second and [p.name for p in first.parent.iterdir() if p.suffix != ".lock"] == ["app.git"]
    for round_ in range(3):
        sha = setup.twin.commit("octo-org/app", "main", {"n.txt": f"{round_}\n"})
        await asyncio.gather(*(w.sync_mirror("octo-org/app", setup.token) for w in (setup.workspaces, other) * 2))
        assert git(f"--git-dir={first}", "rev-parse", "refs/remotes/origin/HEAD") == sha


class _WorktreeChanges:
    """Which worktree-changing git commands run at this moment, across Workspaces."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.met: list[tuple[str, ...]] = []

    def watch(self, workspaces: Workspaces) -> None:
        inner = workspaces.git
        changes = self

        class Watched:
            def __getattr__(self, name: str):
                return getattr(inner, name)

            async def __call__(self, *args, **kwargs):
                what = " ".join(args[:2])
                if what not in ("worktree add", "worktree remove", "worktree prune"):
                    return await inner(*args, **kwargs)
                if changes.running:
                    changes.met.append((what, *changes.running))
                changes.running.append(what)
                try:
                    return await inner(*args, **kwargs)
                finally:
                    changes.running.remove(what)

        workspaces.git = Watched()


async def test_two_processes_never_change_worktrees_of_one_mirror_at_once(setup: Setup) -> None:
    """`worktree prune` beside `worktree add` deletes the entry being made.

    Prune removes an entry whose files are not written yet, which is how a
    worktree being added looks for a moment; the adding git then dies with
    "could not open … for writing" (it broke the two-worker e2e test now and
    then). Two Workspaces on one DATA_DIR stand for two processes.
    """
    await setup.workspaces.sync_mirror("octo-org/app", setup.token)
    processes = (setup.workspaces, Workspaces(setup.data, setup.twin.git_url))
    changes = _WorktreeChanges()
    for workspaces in processes:
        changes.watch(workspaces)

    async def session(workspaces: Workspaces, n: int) -> None:
        for _ in range(2):
            ws = await workspaces.open("octo-org/app", f"s-{n}", f"compound/issue-{n}", setup.token)
            assert (ws.path / "README.md").exists()
            await workspaces.close(ws)

    await asyncio.gather(*(session(processes[n % 2], n) for n in range(8)))
    assert changes.met == []
    assert not list((setup.data / "mirrors" / "octo-org" / "app.git" / "worktrees").glob("*"))


# --- committing --------------------------------------------------------------


async def test_commit_carries_trailers_and_the_bot_identity(setup: Setup) -> None:
    ws = await setup.open()
    (ws.path / "src/app.py").write_text("print('hello')\n")
    sha = await commit(ws)
    assert sha is not None
    assert git("rev-parse", "HEAD", cwd=ws.path) == sha
    assert git("log", "-1", "--format=%an|%ae|%cn|%ce|%s", sha, cwd=ws.path) == (
        f"{BOT.name}|{BOT.email}|{BOT.name}|{BOT.email}|Fix the greeting"
    )
    assert git("rev-parse", f"{sha}^", cwd=ws.path) == ws.base_sha
    assert trailers_of(ws.mirror, sha) == EXPECTED_TRAILERS
    assert git("status", "--porcelain", cwd=ws.path) == ""


async def test_trailer_values_cannot_forge_more_trailers(setup: Setup) -> None:
    ws = await setup.open()
    (ws.path / "a.txt").write_text("a\n")
    odd = Trailers(model="m\nSigned-off-by: mallory <m@x>", backend="command", session="s-1", co_author=None)
    sha = await ws.commit("Change", BOT, odd, no_secrets)
    assert sha is not None
    assert trailers_of(ws.mirror, sha) == [
        "Agent-Model: m Signed-off-by: mallory <m@x>",
        "Agent-Backend: command",
        "Agent-Session: s-1",
    ]


async def test_nothing_to_commit_is_none(setup: Setup) -> None:
    ws = await setup.open()
    assert await commit(ws) is None
    assert git("rev-parse", "HEAD", cwd=ws.path) == ws.base_sha


async def test_only_forbidden_changes_is_none(setup: Setup) -> None:
    ws = await setup.open()
    (ws.path / "secrets").mkdir()
    (ws.path / "secrets/key.txt").write_text("hunter2\n")
    git("add", "-A", cwd=ws.path)
    git("commit", "-qm", "Add key", cwd=ws.path)
    (ws.path / ".github/workflows/ci.yml").write_text("on: never\n")
    assert await commit(ws) is None
    assert git("rev-parse", f"refs/heads/{BRANCH}", cwd=ws.path) == ws.base_sha
    assert not (ws.path / "secrets/key.txt").exists()
    assert (ws.path / ".github/workflows/ci.yml").read_text() == "on: push\n"


async def test_agent_commits_get_trailers_and_keep_their_messages(setup: Setup) -> None:
    ws = await setup.open()
    for name, msg in (("a.py", "Add a"), ("b.py", "Add b")):
        (ws.path / name).write_text(f"{name}\n")
        git("add", name, cwd=ws.path)
        git("commit", "-qm", msg, "-m", "Co-authored-by: Claude <noreply@anthropic.com>", cwd=ws.path)
    (ws.path / "c.py").write_text("c\n")  # left uncommitted
    sha = await commit(ws, "Finish the change")
    assert sha is not None
    log = git("log", "--format=%s|%an|%cn", f"{ws.base_sha}..{sha}", cwd=ws.path).splitlines()
    assert log == [f"{s}|{BOT.name}|{BOT.name}" for s in ("Finish the change", "Add b", "Add a")]
    for rev in git("rev-list", f"{ws.base_sha}..{sha}", cwd=ws.path).split():
        parsed = trailers_of(ws.mirror, rev)
        assert parsed[-4:] == EXPECTED_TRAILERS
    # The agent's own trailer stays beside ours.
    assert "Co-authored-by: Claude <noreply@anthropic.com>" in trailers_of(ws.mirror, f"{sha}~1")


async def test_agent_commits_on_another_branch_are_taken(setup: Setup) -> None:
    ws = await setup.open()
    git("checkout", "-qb", "scratch", cwd=ws.path)
    (ws.path / "a.py").write_text("a\n")
    git("add", "a.py", cwd=ws.path)
    git("commit", "-qm", "Add a", cwd=ws.path)
    sha = await commit(ws)
    assert sha is not None
    assert git("branch", "--show-current", cwd=ws.path) == BRANCH
    assert git("log", "--format=%s", f"{ws.base_sha}..{BRANCH}", cwd=ws.path).splitlines() == ["Add a"]


async def test_forbidden_paths_are_never_pushed(setup: Setup) -> None:
    ws = await setup.open()
    secret = "ghp_notreallyasecretbutlooksit\n"
    (ws.path / "secrets").mkdir()
    # The agent commits a forbidden file along with real work, edits it again,
    # then makes a commit that touches only forbidden paths.
    (ws.path / "secrets/token.txt").write_text(secret)
    (ws.path / "a.py").write_text("a\n")
    git("add", "-A", cwd=ws.path)
    git("commit", "-qm", "Add a and a token", cwd=ws.path)
    (ws.path / "secrets/token.txt").write_text(secret + "more\n")
    (ws.path / "b.py").write_text("b\n")
    git("add", "-A", cwd=ws.path)
    git("commit", "-qm", "Add b", cwd=ws.path)
    (ws.path / ".github/workflows/ci.yml").write_text("on: pwned\n")
    git("commit", "-qam", "Only forbidden", cwd=ws.path)
    # ...and leaves more forbidden edits uncommitted, next to a real one.
    (ws.path / "secrets/other.txt").write_text("other\n")
    (ws.path / ".github/workflows/ci.yml").write_text("on: pwned again\n")
    (ws.path / "src/app.py").unlink()
    (ws.path / ".github/workflows/new.yml").write_text("on: new\n")

    sha = await commit(ws)
    assert sha is not None
    pushed = await ws.push(setup.token)
    assert pushed == sha == setup.remote("rev-parse", BRANCH)

    subjects = setup.remote("log", "--format=%s", f"main..{BRANCH}").splitlines()
    assert subjects == ["Fix the greeting", "Add b", "Add a and a token"]
    for rev in setup.remote("rev-list", f"main..{BRANCH}").split():
        files = set(setup.remote("ls-tree", "-r", "--name-only", rev).splitlines())
        assert not any(f.startswith("secrets/") for f in files)
        assert ".github/workflows/new.yml" not in files
        assert setup.remote("show", f"{rev}:.github/workflows/ci.yml") == "on: push"
    assert setup.remote("ls-tree", "-r", "--name-only", BRANCH).splitlines() == [
        ".github/workflows/ci.yml",
        "README.md",
        "a.py",
        "b.py",
    ]
    # Not even as an unreferenced object.
    for content in (secret, secret + "more\n", "other\n", "on: pwned\n", "on: new\n"):
        blob = subprocess.run(
            ["git", "hash-object", "--stdin"], input=content, capture_output=True, text=True
        ).stdout.strip()
        assert subprocess.run(["git", f"--git-dir={setup.bare}", "cat-file", "-e", blob]).returncode != 0
    # The worktree matches what was committed.
    assert not (ws.path / "secrets/other.txt").exists()
    assert not (ws.path / ".github/workflows/new.yml").exists()
    assert (ws.path / ".github/workflows/ci.yml").read_text() == "on: push\n"


async def test_changed_files_and_diffstat(setup: Setup) -> None:
    ws = await setup.open()
    (ws.path / "README.md").write_text("# app\n\nMore.\n")
    (ws.path / "src/app.py").unlink()
    (ws.path / "logo.png").write_bytes(b"\x89PNG\0\1\2")
    await commit(ws)
    assert sorted(await ws.changed_files()) == ["README.md", "logo.png", "src/app.py"]
    assert await ws.diffstat() == (3, 2, 1)


# --- pushing ---------------------------------------------------------------


async def test_push_lands_on_the_twin_and_fires_on_push(setup: Setup) -> None:
    seen: list[tuple[str, str, str]] = []

    async def record(repo: str, ref: str, sha: str) -> None:
        seen.append((repo, ref, sha))

    setup.twin.on_push(record)
    ws = await setup.open()
    (ws.path / "a.py").write_text("a\n")
    sha = await commit(ws)
    assert sha is not None
    assert await ws.push(setup.token) == sha
    assert setup.remote("rev-parse", BRANCH) == sha
    assert seen == [("octo-org/app", f"refs/heads/{BRANCH}", sha)]
    assert trailers_of(setup.bare, sha) == EXPECTED_TRAILERS


async def test_follow_up_round_continues_the_remote_branch(setup: Setup) -> None:
    first = await setup.open("s-1")
    (first.path / "a.py").write_text("a\n")
    one = await commit(first)
    await first.push(setup.token)
    await setup.workspaces.close(first)

    second = await setup.open("s-2", start_from=BRANCH)
    assert second.base_sha == one
    assert (second.path / "a.py").read_text() == "a\n"
    (second.path / "a.py").write_text("a2\n")
    two = await commit(second, "Address review")
    assert await second.push(setup.token) == two
    assert setup.remote("rev-list", f"main..{BRANCH}").split() == [two, one]
    assert setup.remote("rev-parse", f"{two}^") == one
    assert trailers_of(setup.bare, two) == EXPECTED_TRAILERS


async def test_follow_up_on_a_branch_outside_compound(setup: Setup) -> None:
    sha = setup.twin.commit("octo-org/app", "feature-x", {"x.txt": "x\n"}, "Human work")
    ws = await setup.open(branch="feature-x", start_from="feature-x")
    assert ws.base_sha == ws.remote_sha == sha
    (ws.path / "x.txt").write_text("x2\n")
    head = await commit(ws)
    assert await ws.push(setup.token) == head == setup.remote("rev-parse", "feature-x")
    assert setup.remote("log", "-1", "--format=%s", "feature-x") == "Fix the greeting"


async def test_new_session_replaces_a_leftover_remote_branch(setup: Setup) -> None:
    old = setup.twin.commit("octo-org/app", BRANCH, {"old.txt": "old\n"}, "Earlier attempt")
    ws = await setup.open()
    assert ws.base_sha == setup.remote("rev-parse", "main") and ws.remote_sha == old
    (ws.path / "new.txt").write_text("new\n")
    sha = await commit(ws)
    assert await ws.push(setup.token) == sha
    assert setup.remote("rev-parse", BRANCH) == sha


async def test_push_refuses_to_overwrite_a_branch_that_moved(setup: Setup) -> None:
    ws = await setup.open("s-1", start_from="main")
    setup.twin.commit("octo-org/app", BRANCH, {"human.txt": "mine\n"}, "A human pushes meanwhile")
    (ws.path / "a.py").write_text("a\n")
    await commit(ws)
    with pytest.raises(GitError) as caught:
        await ws.push(setup.token)
    assert "rejected" in str(caught.value)
    assert setup.remote("log", "-1", "--format=%s", BRANCH) == "A human pushes meanwhile"


# --- the token ---------------------------------------------------------------


async def test_token_is_never_written_anywhere(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    argvs: list[tuple[str, ...]] = []
    envs: list[dict[str, str]] = []
    real = asyncio.create_subprocess_exec

    async def spy(*args: str, **kwargs: object):  # type: ignore[no-untyped-def]
        argvs.append(tuple(map(str, args)))
        envs.append(dict(kwargs.get("env") or {}))  # type: ignore[call-overload]
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    ws = await setup.open()
    (ws.path / "a.py").write_text("a\n")
    await commit(ws)
    await ws.push(setup.token)
    second = await setup.open("s-2", "compound/issue-8", start_from=BRANCH)

    header = base64.b64encode(f"x-access-token:{setup.token}".encode())
    for argv in argvs:
        assert not any(setup.token in a or header.decode() in a for a in argv)
    ours = [e for e in envs if "GIT_LITERAL_PATHSPECS" in e]  # the twin runs git too
    carrying = [e for e in ours if "GIT_CONFIG_VALUE_0" in e]
    assert carrying and all(e["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {header.decode()}" for e in carrying)
    assert len(carrying) < len(ours)  # only fetch and push carry it
    talking = {"fetch", "push", "ls-remote"}
    for argv, env in zip(argvs, envs, strict=True):
        if "GIT_CONFIG_VALUE_0" in env and "GIT_LITERAL_PATHSPECS" in env:
            subcommand = next(a for a in argv[1:] if not a.startswith("-") and "=" not in a)
            assert subcommand in talking, argv
    assert all(e["GIT_TERMINAL_PROMPT"] == "0" and e["HOME"].startswith(str(setup.data)) for e in ours)

    for config in (ws.mirror / "config", second.path / ".git"):
        assert setup.token not in config.read_text()
    for path in setup.data.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert setup.token.encode() not in data and header not in data, path


async def test_auth_failure_message_holds_no_token(setup: Setup) -> None:
    bad = "ghs_" + "A1b2C3d4" * 5
    with pytest.raises(GitError) as caught:
        await setup.workspaces.sync_mirror("octo-org/app", bad)
    message = str(caught.value)
    assert caught.value.returncode != 0 and message.startswith("git fetch")
    assert bad not in message and base64.b64encode(f"x-access-token:{bad}".encode()).decode() not in message
    assert not (setup.data / "mirrors" / "octo-org" / "app.git").exists()


async def test_repo_config_written_by_the_agent_cannot_redirect_the_token(setup: Setup) -> None:
    ws = await setup.open()
    evil = (
        '[url "http://127.0.0.1:9/"]\n\tinsteadOf = http://\n'
        "[http]\n\tproxy = http://127.0.0.1:9\n"
        "[core]\n\thooksPath = /tmp/evil\n"
    )
    with open(ws.mirror / "config", "a") as config:
        config.write(evil)
    (ws.path / "a.py").write_text("a\n")
    sha = await commit(ws)
    assert await ws.push(setup.token) == sha
    assert "insteadOf" not in (ws.mirror / "config").read_text()


async def test_a_git_command_that_hangs_is_killed(setup: Setup) -> None:
    slow = Workspaces(setup.data, setup.twin.git_url, git_timeout=0.001)
    with pytest.raises(GitError) as caught:
        await slow.sync_mirror("octo-org/app", setup.token)
    assert "timed out" in str(caught.value)


# --- cleaning up -------------------------------------------------------------


async def test_close_removes_the_worktree(setup: Setup) -> None:
    ws = await setup.open()
    await setup.workspaces.close(ws)
    assert not ws.path.exists()
    assert str(ws.path) not in git(f"--git-dir={ws.mirror}", "worktree", "list")
    assert git(f"--git-dir={ws.mirror}", "branch", "--list", BRANCH) == ""
    await setup.workspaces.close(ws)  # twice is fine


async def test_stale_worktree_of_the_same_session_is_cleaned_up(setup: Setup) -> None:
    ws = await setup.open()
    (ws.path / "junk.txt").write_text("left by a crashed run\n")
    git("add", "-A", cwd=ws.path)
    git("commit", "-qm", "half done", cwd=ws.path)
    # A restart: a new Workspaces, the same session id again.
    again = await Workspaces(setup.data, setup.twin.git_url).open("octo-org/app", "s-1", BRANCH, setup.token)
    assert again.path == ws.path and not (again.path / "junk.txt").exists()
    assert again.base_sha == setup.remote("rev-parse", "main")
    assert git("rev-parse", "HEAD", cwd=again.path) == again.base_sha
    assert git(f"--git-dir={again.mirror}", "worktree", "list").count(str(again.path)) == 1


async def test_stale_directory_that_is_no_worktree_is_cleaned_up(setup: Setup) -> None:
    stale = setup.data / "workspaces" / "s-1"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "file").write_text("x\n")
    ws = await setup.open()
    assert not (ws.path / "sub").exists() and (ws.path / "README.md").exists()


async def test_a_dead_session_holding_the_branch_is_evicted(setup: Setup) -> None:
    dead = await setup.open("s-dead")
    ws = await setup.open("s-new")
    assert not dead.path.exists()
    assert git("branch", "--show-current", cwd=ws.path) == BRANCH


async def test_bad_names_are_refused(setup: Setup) -> None:
    for repo, session, branch in (
        ("../etc", "s", BRANCH),
        ("octo-org/app", "../x", BRANCH),
        ("octo-org/app", "s", "-f"),
        ("octo-org/app", "s", "a..b"),
    ):
        with pytest.raises(ValueError):
            await setup.workspaces.open(repo, session, branch, setup.token)


# --- git metadata the agent planted ----------------------------------------


async def run_hostile_agent(setup: Setup, ws: Workspace, mode: str, targets: dict) -> dict:
    """tests/agents/hostile_agent.py in `ws`, sandboxed by `mode` as a round runs it; its report."""
    from bot.agents import AgentRequest, AgentRunner, get_backend
    from bot.agents.lending import harden_data_dir
    from bot.agents.sandbox import probe
    from tests.conftest import agent_user_name
    from tests.test_sandbox import HOSTILE, PYTHON, needs

    needs(mode)
    sandbox = probe(mode, paths=str(HOSTILE.parent), user_name=agent_user_name())
    assert sandbox.mode == mode, sandbox.detail
    if mode == "user":
        harden_data_dir(setup.data)  # what the service does at start in user mode
    await ws.hand_to_agent()
    result = await AgentRunner(sandbox=sandbox).run(
        get_backend("command", command=f"{PYTHON} {HOSTILE}"),
        AgentRequest(
            workspace=ws.path,
            prompt="HOSTILE-TARGETS: " + json.dumps(targets) + "\n",
            session_id=ws.session_id,
            task_kind="task",
            git_common_dir=ws.mirror,
            git_dir=ws.git_dir,
            settle=ws.settle_index,
        ),
    )
    assert result.exit_code == 0, result.log_tail
    report: dict = json.loads(result.log_tail.splitlines()[-1])
    report["log"] = result.log_tail
    return report


@pytest.mark.parametrize("mode", ["none", "bwrap", "user"])
async def test_git_metadata_the_agent_plants_never_runs_in_compounds_git(
    setup: Setup, tmp_path: Path, mode: str
) -> None:
    """commondir, config, config.worktree, hooks, attributes and `.git` rewritten by a hostile agent.

    Under `none` the agent writes all of it, so this is Compound's git holding
    on its own; under bwrap and user the same. Whatever it planted, the filter
    program never runs, and its ordinary change is committed and pushed.
    """
    ws = await setup.open()
    pwned = tmp_path / "pwned"
    planted = (await run_hostile_agent(setup, ws, mode, {"git": True, "pwned": str(pwned)}))["planted"]
    if mode == "none":  # the agent really did rewrite Compound's metadata
        assert any(p.endswith("commondir") for p in planted) and ".git" in planted
    # The control: a plain `git add`, trusting what the agent left, runs its filter.
    git("add", "--all", cwd=ws.path)
    assert pwned.exists(), "the planted filter did not fire in plain git: this test would prove nothing"
    pwned.unlink()
    sha = await commit(ws)
    head = await ws.push(setup.token)
    assert sha == head and not pwned.exists()
    assert setup.remote("show", f"{sha}:feature.py") == "def feature():\n    return 42"
    # The next round on this mirror works as before.
    assert await setup.workspaces.close(ws) is None
    again = await setup.open(session="s-2", branch="compound/issue-8")
    (again.path / "b.py").write_text("b\n")
    assert await commit(again) is not None and not pwned.exists()


@pytest.mark.parametrize("mode", ["none", "bwrap", "user"])
async def test_links_the_agent_plants_in_its_git_dir_never_take_compounds_git_elsewhere(
    setup: Setup, tmp_path: Path, mode: str
) -> None:
    """The worktree's git dir is the agent's to write in every mode (its own git needs it). A symlinked
    `logs/HEAD` would have Compound's git append its reflog wherever the link points, as root under a
    root service; a fifo for `ORIG_HEAD` or the index would hang it. Compound removes them first."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    ws = await setup.open()
    traps = {
        "symlink": {str(ws.git_dir / "logs" / "HEAD"): str(victim), str(ws.git_dir / "ORIG_HEAD"): str(victim)},
        "fifo": [str(ws.git_dir / "index")],
    }
    report = await run_hostile_agent(setup, ws, mode, traps)
    assert len(report["traps"]) == 3, report["log"]
    sha = await asyncio.wait_for(commit(ws), 60)
    assert sha is not None and await ws.push(setup.token) == sha
    assert victim.read_text() == "untouched\n"
    assert setup.remote("show", f"{sha}:feature.py") == "def feature():\n    return 42"
    assert git(f"--git-dir={ws.mirror}", "show", f"{sha}:README.md") == "# app"


async def run_agent(ws: Workspace, mode: str, command: str, settle: bool = True, timeout: float = 60) -> None:
    """A plain agent `command` in `ws`, sandboxed by `mode` as a round runs it (the index settled once lent)."""
    from bot.agents import AgentRequest, AgentRunner, get_backend
    from bot.agents.sandbox import probe
    from tests.conftest import agent_user_name

    sandbox = probe(mode.removesuffix("-own-uid"), user_name=agent_user_name())
    assert sandbox.mode == mode.removesuffix("-own-uid"), sandbox.detail
    if mode.endswith("-own-uid"):  # as under a service not run as root: the agent is its uid outside
        sandbox = dataclasses.replace(sandbox, user=None)
    request = AgentRequest(
        workspace=ws.path,
        prompt="x",
        session_id=ws.session_id,
        task_kind="task",
        git_common_dir=ws.mirror,
        git_dir=ws.git_dir,
        settle=ws.settle_index if settle else None,
    )
    result = await asyncio.wait_for(
        AgentRunner(sandbox=sandbox).run(get_backend("command", command=command), request), timeout
    )
    assert result.exit_code == 0, result.log_tail


MODULES = 150
CHANGE_ONE = (
    "echo 'VALUE = -1' > module_7.py && git add -A && "
    "git -c user.name=agent -c user.email=agent@example.com commit -q -m 'Change one module'"
)


async def open_with_modules(setup: Setup, mode: str) -> Workspace:
    """A worktree of MODULES files, committed by Compound a moment ago (so each is racily clean)."""
    from bot.agents.lending import harden_data_dir
    from tests.test_sandbox import needs

    needs(mode.removesuffix("-own-uid"))
    if mode == "user":
        harden_data_dir(setup.data)
    ws = await setup.open()
    for i in range(MODULES):
        (ws.path / f"module_{i}.py").write_text(f"VALUE = {i}\n")
    assert await commit(ws, "Add the modules") is not None
    await ws.hand_to_agent()
    return ws


async def handed_back_one_module(ws: Workspace) -> list[Path]:
    """What the agent's git wrote beside its index for CHANGE_ONE; then its commit, taken in and checked."""
    written = [p for p in ws.agent_objects.rglob("*") if p.is_file()]
    sha = await commit(ws)
    assert sha is not None
    assert git(f"--git-dir={ws.mirror}", "show", f"{sha}:module_7.py") == "VALUE = -1"
    assert git(f"--git-dir={ws.mirror}", "show", f"{sha}:module_8.py") == "VALUE = 8"
    return written


@pytest.mark.parametrize(
    ("mode", "settle"),
    [("bwrap", True), ("bwrap", False), ("user", True), ("user", False), ("bwrap-own-uid", True)],
    ids=["bwrap", "bwrap-control", "user", "user-control", "bwrap-own-uid"],
)
async def test_an_agent_that_changes_one_file_hands_back_only_that_change(
    setup: Setup, mode: str, settle: bool
) -> None:
    """Lending the worktree changes every file's owner and ctime, and Compound's own commit a moment
    before left every file racily clean: unsettled, the agent's `git add -A` hashes the whole checkout
    again and, the mirror read-only to it, writes every blob again for Compound to pack back. Under
    bubblewrap run by a service that is not root nothing is lent, but the mirror is as read-only, and
    the agent sees every owner through its user namespace (its git goes by mtime and size alone)."""
    ws = await open_with_modules(setup, mode)
    await run_agent(ws, mode, CHANGE_ONE, settle=settle)
    written = await handed_back_one_module(ws)
    if settle:
        assert len(written) == 3, written  # the blob, the root tree, the commit
    else:  # the control: what lending costs a round unsettled
        assert len(written) > MODULES


@pytest.mark.parametrize("mode", ["bwrap", "user"])
async def test_the_index_settled_for_a_second_try_is_not_the_first_tries_trap(
    setup: Setup, tmp_path: Path, mode: str
) -> None:
    """A round's second try is lent the worktree its first try left, and Compound's git settles the
    index in a git dir that agent wrote. Its `index`, planted as a link to a fifo (which under `user`
    it can make in /tmp), would hang Compound's git until its timeout; the link goes first. (A fifo
    planted as the index itself goes with the take-back.)"""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    ws = await open_with_modules(setup, mode)
    report = await run_hostile_agent(setup, ws, mode, {"symlink": {str(ws.git_dir / "index"): str(fifo)}})
    assert len(report["traps"]) == 1, report["log"]
    await run_agent(ws, mode, CHANGE_ONE, timeout=20)  # the second try, settled well within its time
    written = await handed_back_one_module(ws)
    assert len(written) > MODULES  # the planted index is gone, so every module is new to the agent's git


def open_to_others(mirror: Path) -> list[str]:
    """Entries of a mirror (other than its worktrees' git dirs) that anyone but their owner may read or pass."""
    found = []
    for top, dirs, files in os.walk(mirror):
        if Path(top) == mirror / "worktrees":
            dirs[:] = []
        found += [p for p in [top, *(os.path.join(top, f) for f in files)] if os.lstat(p).st_mode & 0o077]
    return found


@pytest.mark.parametrize("mode", ["none", "bwrap", "user"])
async def test_an_agent_cannot_touch_the_mirror_another_session_shares(setup: Setup, mode: str) -> None:
    """Sessions of one repository share its mirror. A hostile agent in one of them tries to plant
    config, attributes, hooks, alternates and objects there, and to move the other session's branch
    and worktree: under bwrap and user every write fails, its own `git commit` still works, and
    Compound takes that commit in. Under `none` the same writes land, so the test sees what the
    sandbox stops."""
    other = await setup.open("s-2", "compound/issue-9")
    (other.path / "other.py").write_text("other\n")
    other_head = await commit(other)
    ws = await setup.open()
    mirror = ws.mirror
    targets = [
        mirror / "config",
        mirror / "info" / "attributes",
        mirror / "hooks" / "pre-commit",
        mirror / "objects" / "info" / "alternates",
        mirror / "objects" / "planted",
        mirror / "refs" / "heads" / "compound" / "issue-9",
        mirror / "packed-refs",
        other.git_dir / "HEAD",
        other.git_dir / "commondir",
        other.path / "other.py",
    ]
    before = {t: t.read_bytes() if t.exists() else None for t in targets}
    report = await run_hostile_agent(setup, ws, mode, {"write": [str(t) for t in targets], "commit": True})
    if mode == "none":  # unsandboxed, it reaches all of it: what the sandbox must stop
        assert sorted(report["wrote"]) == sorted(str(t) for t in targets)
        return
    assert report["wrote"] == []
    assert {t: t.read_bytes() if t.exists() else None for t in targets} == before
    if mode == "user":  # lent for the run only: the mirror closed again, the git dir the service's
        assert open_to_others(mirror) == [] and os.stat(ws.git_dir).st_uid == os.geteuid()
    # Its own git works: the commit is its worktree's, its objects outside the mirror until Compound takes them.
    own = report["commit"]
    assert own and (ws.agent_objects / own[:2] / own[2:]).is_file(), report["log"]
    assert not (mirror / "objects" / own[:2] / own[2:]).exists()
    sha = await commit(ws)
    assert sha is not None and not ws.agent_objects.exists()
    # The agent's commit, then Compound's for what it wrote afterwards (its report).
    subjects = git(f"--git-dir={mirror}", "log", "--format=%s", f"{ws.base_sha}..{sha}").splitlines()
    assert subjects == ["Fix the greeting", "Add feature(), says the agent"]
    assert git(f"--git-dir={mirror}", "show", f"{sha}:feature.py") == "def feature():\n    return 42"
    assert git(f"--git-dir={mirror}", "rev-parse", "refs/heads/compound/issue-9") == other_head
    assert git("branch", "--show-current", cwd=ws.path) == BRANCH  # the branch is checked out again
    assert await ws.push(setup.token) == sha
    assert setup.remote("log", "-1", "--format=%s", f"{sha}^") == "Add feature(), says the agent"
    await setup.workspaces.close(ws)  # its git dir gone: the mirror still holds every object
    git(f"--git-dir={mirror}", "fsck", "--connectivity-only", "--no-dangling")


async def test_an_object_the_agent_named_falsely_is_stored_under_its_true_name(setup: Setup) -> None:
    """The agent's objects come in through a pack the mirror indexes itself: a loose object filed
    under another object's name cannot later stand in for that object in another session."""
    import hashlib
    import zlib

    ws = await setup.open()
    await ws.hand_to_agent()
    content = b"blob 6\0decoy\n"
    true_name = hashlib.sha1(content).hexdigest()
    false_name = hashlib.sha1(b"blob 6\0other\n").hexdigest()  # what another session will write
    target = ws.agent_objects / false_name[:2] / false_name[2:]
    target.parent.mkdir(parents=True)
    target.write_bytes(zlib.compress(content))
    (ws.path / "a.py").write_text("a\n")
    assert await commit(ws) is not None
    mirror = f"--git-dir={ws.mirror}"
    assert git(mirror, "cat-file", "-p", true_name) == "decoy"
    missing = subprocess.run(["git", mirror, "cat-file", "-e", false_name], capture_output=True)
    assert missing.returncode != 0


async def test_the_mirror_stays_open_to_the_agent_while_another_of_its_worktrees_is_lent(setup: Setup) -> None:
    """Two runs on one repository overlap: the first to end must not close the mirror on the other.

    Under a root service bubblewrap lends too, and its runs overlap (`user`
    mode's take turns: tests/test_sandbox.py).
    """
    from bot.agents.lending import harden_data_dir
    from bot.agents.sandbox import probe
    from tests.conftest import agent_user_name
    from tests.test_sandbox import needs

    needs("bwrap")
    needs("user")  # the service as root, so bubblewrap lends the worktree to AGENT_USER
    sandbox = probe("bwrap", user_name=agent_user_name())
    assert sandbox.mode == "bwrap" and sandbox.user is not None, sandbox.detail
    harden_data_dir(setup.data)
    first, second = await setup.open("s-1"), await setup.open("s-2", "compound/issue-9")
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        async with sandbox.lent(first.path, Path(one), first.mirror, first.git_dir):
            async with sandbox.lent(second.path, Path(two), second.mirror, second.git_dir):
                assert str(first.mirror / "config") in open_to_others(first.mirror)
            assert str(first.mirror / "config") in open_to_others(first.mirror)  # the first run still reads it
            assert os.stat(second.git_dir).st_uid == os.geteuid()
        assert open_to_others(first.mirror) == []
    assert {os.stat(p).st_uid for p in (first.path, first.git_dir, first.path / "README.md")} == {os.geteuid()}


@pytest.mark.parametrize("turn", ["free", "taken by a run under way"])
async def test_at_start_user_mode_takes_back_what_a_service_that_died_left_lent(setup: Setup, turn: str) -> None:
    """A kill -9 mid-run leaves the worktree the agent's and the mirror open to its group: reclaimed at start.

    Unless a run is under way on the host (another worker holds the turn):
    then what is lent is that run's, and nothing is touched.
    """
    import fcntl

    from bot.agents import lending
    from bot.agents.sandbox import USER_LOCK_DIR, probe
    from tests.conftest import agent_user_name
    from tests.test_sandbox import needs

    needs("user")
    sandbox = probe("user", bwrap="/nonexistent/bwrap", user_name=agent_user_name())
    assert sandbox.mode == "user" and sandbox.user is not None, sandbox.detail
    user = sandbox.user
    ws = await setup.open("s-crashed")
    # What the lending had done when the service died.
    lending.lend(ws.path, user.uid, user.gid)
    lending.lend(ws.git_dir, user.uid, user.gid)
    lending.open_mirror(ws.mirror, user.gid, traverse=True)
    holder = os.open(USER_LOCK_DIR / f"agent-{user.uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if turn != "free":
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        reclaimed = sandbox.reclaim(setup.data)
    finally:
        os.close(holder)
    owners = {os.stat(p).st_uid for p in (ws.path, ws.git_dir, ws.path / "README.md")}
    if turn == "free":
        assert sorted(reclaimed) == sorted([ws.path, ws.git_dir])
        assert owners == {os.geteuid()}
        assert open_to_others(ws.mirror) == []
        assert stat.S_IMODE(os.stat(ws.path).st_mode) & 0o077 == 0
    else:
        assert reclaimed == []
        assert owners == {user.uid}  # the run under way keeps its worktree…
        assert str(ws.mirror / "config") in open_to_others(ws.mirror)  # …and its mirror
