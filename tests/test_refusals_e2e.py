"""Every way to start or control work, tried by someone who may not: `/agent`
comments of a read-only user, the Stop and Retry buttons pressed by one, and a
check run named "Compound" that another App made. Each waits for the service
to finish the delivery (World.settled), then checks that nothing moved."""

from __future__ import annotations

import pytest

from tests.test_sessions_e2e import REPO, WRITE_FEATURE, World, alive, world  # noqa: F401 (fixture)
from tests.twin_events import check_run_action


def sessions_in_store(world: World) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{world.tmp / 'data' / 'compound.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM sessions").fetchone()[0]


@pytest.mark.parametrize(
    "body", ["/agent", "/agent add a feature() please", "/agent retry", "/agent fix-ci", "/agent stop"]
)
async def test_agent_comments_of_a_read_only_user_start_nothing(world: World, body: str):
    number = world.twin.add_issue(REPO, title="Do it", user="mallory")
    world.plan("task", WRITE_FEATURE)
    await world.start()
    await world.settled(await world.command(number, body, sender="mallory"))
    assert sessions_in_store(world) == 0
    assert world.pulls() == [] and "compound/" not in world.git("branch", "--list")
    comments = world.bot_comments(number)
    assert len(comments) == 1 and "@mallory" in comments[0] and "write access" in comments[0], comments


async def running_round(world: World):
    """A session whose second round hangs: (pr, its in-progress run, the agent's pid file)."""
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    pidfile = world.tmp / "agent.pid"
    world.plan("task", WRITE_FEATURE)
    world.plan("command", {"spawn": str(pidfile)}, {"hang": True})
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    head = pr.pull.head_sha
    await world.until(lambda: world.check_runs(head), what="the first check run")
    await world.command(pr.number, "/agent keep going")
    run = await world.until(
        lambda: next((r for r in world.check_runs(head) if r.status == "in_progress"), None), what="in-progress run"
    )
    await world.until(pidfile.exists, what="the agent")
    return pr, run, pidfile


async def test_stop_and_retry_buttons_pressed_by_a_read_only_user_do_nothing(world: World):
    pr, run, pidfile = await running_round(world)
    head = pr.pull.head_sha
    (done,) = [r for r in world.check_runs(head) if r.status == "completed"]
    pressed = [
        await world.deliver("check_run", check_run_action(world.twin, REPO, run.id, "stop", "mallory", world.iid)),
        await world.deliver("check_run", check_run_action(world.twin, REPO, done.id, "retry", "mallory", world.iid)),
        await world.deliver("check_run", check_run_action(world.twin, REPO, done.id, None, "mallory", world.iid)),
    ]
    await world.settled(*pressed)
    assert run.status == "in_progress" and alive(int(pidfile.read_text()))
    assert len(world.check_runs(head)) == 2  # no retried round
    # The same button pressed by a maintainer works: the refusal was about the person.
    await world.deliver("check_run", check_run_action(world.twin, REPO, run.id, "stop", "alice", world.iid))
    await world.until(lambda: run.conclusion == "cancelled", what="the run cancelled by alice")


async def test_a_compound_check_run_of_another_app_controls_nothing(world: World):
    pr, run, pidfile = await running_round(world)
    head = pr.pull.head_sha
    session_id = run.external_id
    assert session_id.startswith("s-")
    # Another App names its run "Compound" and even copies the session id.
    impostor = world.twin.add_check_run(REPO, head, "Compound", app="ci-app", conclusion="neutral")
    impostor.external_id = session_id
    pressed = [
        await world.deliver("check_run", check_run_action(world.twin, REPO, impostor.id, "stop", "alice", world.iid)),
        await world.deliver("check_run", check_run_action(world.twin, REPO, impostor.id, None, "alice", world.iid)),
    ]
    await world.settled(*pressed)
    assert run.status == "in_progress" and alive(int(pidfile.read_text()))
    assert len([r for r in world.check_runs(head) if r.name == "Compound" and r.id != impostor.id]) == 2
    await world.command(pr.number, "/agent stop")
    await world.until(lambda: run.conclusion == "cancelled", what="the run cancelled by command")
