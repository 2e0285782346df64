"""Self-healing PRs end to end: `compound serve` as a subprocess, the twin as GitHub
(its simulated CI runs the repo's checks on every push), real git, the scripted agent."""

from __future__ import annotations

import asyncio

from tests.test_sessions_e2e import REPO, WRITE_FEATURE, World, world  # noqa: F401

LABEL = "agent:needs-human"


def escalations(world: World, number: int) -> list[str]:
    return [b for b in world.bot_comments(number) if "<!-- compound:escalation" in b]


async def test_an_agent_failing_every_attempt_escalates_without_a_pr(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    attempts = world.tmp / "attempts"
    world.plan("task", {"append": str(attempts), "content": "x"}, {"print": "it broke: boom", "stderr": True}, {"exit": 3})
    await world.start()
    await world.label(number)
    (comment,) = await world.until(lambda: escalations(world, number), what="the escalation comment")
    await asyncio.sleep(1.0)
    assert attempts.read_text() == "xx"  # AGENT_ATTEMPTS=2: tried twice
    assert "exited with status 3" in comment and "on each of 2 tries" in comment and "it broke: boom" in comment
    assert len(world.bot_comments(number)) == 1  # the escalation says why; no second failure comment
    assert LABEL in world.repo.issues[number].labels
    assert world.repo.label(LABEL) is not None and world.repo.label(LABEL).color == "d93f0b"
    assert world.pulls() == []
    assert "compound/" not in world.git("branch", "--list")
