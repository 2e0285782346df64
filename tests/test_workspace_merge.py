"""Merging the base into a session branch (rebase rounds), with real git and the twin."""

from __future__ import annotations

from pathlib import Path

from tests.test_workspace import BOT, BRANCH, EXPECTED_TRAILERS, TRAILERS, Setup, git, no_secrets, setup, trailers_of  # noqa: F401

BASE = "refs/remotes/origin/main"


async def branch_and_base(setup: Setup, ours: dict, theirs: dict) -> None:
    setup.twin.commit("octo-org/app", BRANCH, ours, "the PR's change")
    setup.twin.commit("octo-org/app", "main", theirs, "main moved")


async def test_a_clean_merge_is_committed_with_both_parents_and_trailers(setup: Setup):
    await branch_and_base(setup, {"src/app.py": "print('hello')\n"}, {"README.md": "# app, v2\n"})
    ws = await setup.open(start_from=BRANCH, also=("main",))
    base = await ws.resolve(BASE)
    assert base == setup.remote("rev-parse", "main")
    assert await ws.merge(base, BOT) == []
    head = await ws.commit_merge("Merge main", BOT, TRAILERS, no_secrets, base)
    await ws.push(setup.token)
    assert setup.remote("rev-parse", BRANCH) == head
    assert setup.remote("log", "-1", "--format=%P", head).split() == [ws.base_sha, base]
    assert setup.remote("show", f"{head}:README.md") == "# app, v2"
    assert setup.remote("show", f"{head}:src/app.py") == "print('hello')"
    assert trailers_of(setup.bare, head) == EXPECTED_TRAILERS


async def test_conflicts_are_named_and_markers_found_until_resolved(setup: Setup):
    await branch_and_base(setup, {"src/app.py": "print('ours')\n"}, {"src/app.py": "print('theirs')\n"})
    ws = await setup.open(start_from=BRANCH, also=("main",))
    base = await ws.resolve(BASE)
    assert await ws.merge(base, BOT) == ["src/app.py"]
    text = (ws.path / "src/app.py").read_text()
    assert "<<<<<<<" in text and ">>>>>>>" in text
    assert await ws.markers_left(["src/app.py"]) == ["src/app.py"]
    # The agent resolves it, keeping both.
    (ws.path / "src/app.py").write_text("print('ours')\nprint('theirs')\n")
    assert await ws.markers_left(["src/app.py"]) == []
    head = await ws.commit_merge("Merge main", BOT, TRAILERS, no_secrets, base)
    assert git(f"--git-dir={ws.mirror}", "show", f"{head}:src/app.py") == "print('ours')\nprint('theirs')"
    assert git(f"--git-dir={ws.mirror}", "log", "-1", "--format=%P", head).split() == [ws.base_sha, base]


async def test_a_marker_lookalike_is_not_a_marker_and_paths_stay_inside(setup: Setup, tmp_path: Path):
    await branch_and_base(setup, {"src/app.py": "print('ours')\n"}, {"src/app.py": "print('theirs')\n"})
    ws = await setup.open(start_from=BRANCH, also=("main",))
    await ws.merge(await ws.resolve(BASE), BOT)
    (ws.path / "src/app.py").write_text("x = '<<<<<<<'\n# ======== heading\n<<<<<<<<< not git's\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("<<<<<<< HEAD\n")
    (ws.path / "link.txt").symlink_to(outside)
    assert await ws.markers_left(["src/app.py", "link.txt", "gone.txt"]) == []


async def test_the_merge_never_changes_forbidden_paths_against_the_base(setup: Setup):
    await branch_and_base(
        setup,
        {"src/app.py": "print('ours')\n"},
        {"src/app.py": "print('theirs')\n", ".github/workflows/ci.yml": "on: [push, pull_request]\n"},
    )
    ws = await setup.open(start_from=BRANCH, also=("main",))
    base = await ws.resolve(BASE)
    await ws.merge(base, BOT)
    # While resolving, the agent also "fixes" CI by editing the workflow.
    (ws.path / "src/app.py").write_text("print('both')\n")
    (ws.path / ".github/workflows/ci.yml").write_text("on: []\n")
    (ws.path / "secrets").mkdir()
    (ws.path / "secrets/key").write_text("s3cr3t\n")
    head = await ws.commit_merge("Merge main", BOT, TRAILERS, no_secrets, base)
    show = lambda path: git(f"--git-dir={ws.mirror}", "show", f"{head}:{path}")  # noqa: E731
    assert show(".github/workflows/ci.yml") == "on: [push, pull_request]"
    names = git(f"--git-dir={ws.mirror}", "ls-tree", "-r", "--name-only", head).splitlines()
    assert "secrets/key" not in names


async def test_a_merge_git_refuses_without_conflicts_is_a_git_error_with_its_reason(setup: Setup):
    from bot.workspace.git import GitError

    await branch_and_base(setup, {"src/app.py": "print('ours')\n"}, {"README.md": "# app, v2\n"})
    ws = await setup.open(start_from=BRANCH, also=("main",))
    (ws.path / "README.md").write_text("an edit nobody committed\n")  # git will not overwrite it
    try:
        await ws.merge(await ws.resolve(BASE), BOT)
    except GitError as exc:
        assert exc.returncode != 0 and "overwritten by merge" in exc.stderr
    else:
        raise AssertionError("the merge should have been refused")
