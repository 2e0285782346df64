"""`/agent` subcommands, the check run's buttons, config errors and bots, end to end."""

from __future__ import annotations

import time

from tests.test_sessions_e2e import REPO, WRITE_FEATURE, World, alive, world  # noqa: F401 (fixture)
from tests.twin_events import check_run_action, push_event


async def opened(world: World, number: int):
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    await world.until(lambda: world.check_runs(pr.pull.head_sha), what="the check run")
    return pr


async def test_help_and_status(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    await world.command(number, "/agent help")
    await world.until(lambda: any("/agent stop" in b for b in world.bot_comments(number)), what="help")
    await world.command(number, "/agent status")
    await world.until(lambda: any("no session here yet" in b for b in world.bot_comments(number)), what="status")
    await world.label(number)
    pr = await opened(world, number)
    await world.command(pr.number, "/agent status")
    status = await world.until(
        lambda: [b for b in world.bot_comments(pr.number) if b.startswith("Session `s-")], what="status on the PR"
    )
    assert "**awaiting**" in status[0] and "round 1 (task): done" in status[0]


async def test_stop_button_and_retry_button(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    pidfile = world.tmp / "agent.pid"
    world.plan("task", WRITE_FEATURE)
    world.plan("command", {"spawn": str(pidfile)}, {"hang": True})
    await world.start()
    await world.label(number)
    pr = await opened(world, number)
    head = pr.pull.head_sha
    await world.command(pr.number, "/agent keep going")
    run = await world.until(
        lambda: next((r for r in world.check_runs(head) if r.status == "in_progress"), None), what="in-progress run"
    )
    assert [a["identifier"] for a in run.actions] == ["stop"]
    await world.until(pidfile.exists, what="the agent")
    pressed = time.monotonic()
    await world.deliver("check_run", check_run_action(world.twin, REPO, run.id, "stop", "alice", world.iid))
    await world.until(lambda: run.conclusion == "cancelled", timeout=10, what="the run cancelled")
    assert time.monotonic() - pressed < 5
    await world.until(lambda: not alive(int(pidfile.read_text())), timeout=5, what="the agent's processes gone")
    assert time.monotonic() - pressed < 5
    # Retry from the cancelled run: the round runs again (and hangs again; stop it by command).
    pidfile.unlink()
    await world.deliver("check_run", check_run_action(world.twin, REPO, run.id, None, "alice", world.iid))
    await world.until(pidfile.exists, what="the retried round")
    (again,) = [r for r in world.check_runs(head) if r.status == "in_progress"]
    assert "Trigger: a re-run in the Checks tab by @alice, retrying round 2" in again.output["summary"]
    await world.command(pr.number, "/agent stop")
    await world.until(
        lambda: sum(r.conclusion == "cancelled" for r in world.check_runs(head)) == 2, what="second cancel"
    )


async def test_retry_after_a_failure_and_model_switch(world: World):
    world.twin.commit(
        REPO, "main", {".github/compound.yml": "models: {fast: fast-model-2, big: big-model-9}\n"}, "config"
    )
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", {"exit": 1})
    await world.start()
    await world.label(number)
    await world.until(lambda: any("exited with status 1" in b for b in world.bot_comments(number)), what="failure")
    await world.command(number, "/agent model fast")
    await world.until(lambda: any("fast-model-2" in b for b in world.bot_comments(number)), what="model reply")
    await world.command(number, "/agent model huge")
    await world.until(
        lambda: any("unknown model alias 'huge'" in b for b in world.bot_comments(number)), what="unknown"
    )
    world.plan("task", WRITE_FEATURE)
    await world.command(number, "/agent retry")
    pr = await opened(world, number)
    assert world.trailers(pr.pull.head_sha)["Agent-Model"] == "fast-model-2"


async def test_model_label_picks_the_model(world: World):
    world.twin.commit(REPO, "main", {".github/compound.yml": "models: {big: big-model-9}\n"}, "config")
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    await world.label(number, label="agent:big")
    pr = await opened(world, number)
    assert world.trailers(pr.pull.head_sha)["Agent-Model"] == "big-model-9"


async def test_invalid_config_is_reported_and_defaults_apply(world: World):
    world.twin.commit(REPO, "main", {".github/compound.yml": "max_ci_rounds: -1\nunknown_key: 3\n"}, "bad config")
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    await world.label(number)
    await opened(world, number)
    (report,) = [b for b in world.bot_comments(number) if "is not valid" in b]
    assert "max_ci_rounds" in report and "unknown_key" in report
    # Every later trigger reads the config again, but the thread is told once.
    await world.command(number, "/agent status")
    await world.until(lambda: any(b.startswith("Session `s-") for b in world.bot_comments(number)), what="status")
    assert len([b for b in world.bot_comments(number) if "is not valid" in b]) == 1
    # A different mistake is news, and so is another thread.
    world.twin.commit(REPO, "main", {".github/compound.yml": "max_ci_rounds: -2\n"}, "still bad")
    await world.command(number, "/agent help")
    await world.until(lambda: any("/agent stop" in b for b in world.bot_comments(number)), what="help")
    assert len([b for b in world.bot_comments(number) if "is not valid" in b]) == 2
    other = world.twin.add_issue(REPO, title="Another", user="alice")
    await world.command(other, "/agent help")
    await world.until(lambda: any("is not valid" in b for b in world.bot_comments(other)), what="the report elsewhere")


async def test_bots_do_not_start_work_unless_allowed(world: World):
    world.twin.add_installation(account="other")
    number = world.twin.add_issue(REPO, title="Bump deps", user="alice")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    await world.settled(await world.label(number, sender="renovate[bot]"))
    assert world.bot_comments(number) == [] and world.pulls() == []
    after = world.twin.commit(REPO, "main", {".github/compound.yml": "allowed_bots: ['renovate[bot]']\n"}, "allow")
    # GitHub sends the push; it drops the config Compound kept from the first label.
    await world.settled(
        await world.deliver("push", push_event(world.twin, REPO, "refs/heads/main", None, after, "alice", world.iid))
    )
    await world.label(number, sender="renovate[bot]", label="agent")
    await opened(world, number)


async def test_agent_on_a_pr_that_is_not_compounds(world: World):
    world.twin.commit(REPO, "feature", {"x.txt": "x\n"}, "a human's branch")
    number = world.twin.add_pull(REPO, title="Human PR", head="feature", base="main", user="alice")
    await world.start()
    await world.command(number, "/agent fix this")
    await world.until(lambda: any("not one of Compound's" in b for b in world.bot_comments(number)), what="reply")
