"""The rules of self-healing (issue 8) end to end: which CI conclusions start a
round, whose limit wins, what happens after it, which reviews and bots count.
`compound serve` as a subprocess, the twin as GitHub, real git, the scripted agent;
the story and the rest are in tests/test_healing_e2e.py."""

from __future__ import annotations

import json

import pytest

from tests.test_healing_e2e import (
    LABEL,
    base_moves,
    escalated_by_ci_that_always_fails,
    escalations,
    events_of,
    pr_whose_review_round_would_write,
    rounds_of,
    stored_pr,
)
from tests.test_sessions_e2e import REPO, WRITE_FEATURE, World, world  # noqa: F401
from tests.twin_events import check_run_event, check_suite_completed, review_submitted
from tests.twin_events_checks import workflow_run_completed
from tests.waits import quiescent

FIX = {"write": "feature.py", "content": "def feature():\n    return 42\n"}


async def pr_with_a_ci_round_planned(world: World, record=None, **env: object):
    """The session's PR once its first round is done, with a CI round planned that
    pushes `feature.py` (recording its prompt in `record`)."""
    number = world.twin.add_issue(REPO, title="Add feature()", user="alice")
    world.plan("task", {"write": "feature.py", "content": "def feature():\n    return 0\n"})
    world.plan("ci_fix", *([{"record": str(record)}] if record else []), FIX)
    await world.start(CI_QUIET_SECONDS=0, **env)
    await world.label(number)
    pr = await stored_pr(world)
    # Only once the round has stored the PR's head does CI on it concern the session.
    await world.until(lambda: events_of(world, "round.pushed"), what="the first round to finish")
    return pr


async def deliver_suite(world: World, suite_id: int, sender: str) -> list[str]:
    """`check_suite.completed` for the suite, and `workflow_run.completed` for an Actions one."""
    ids = [await world.deliver("check_suite", check_suite_completed(world.twin, REPO, suite_id, sender, world.iid))]
    for run in [r for r in world.repo.workflow_runs.values() if r.suite_id == suite_id]:
        ids.append(
            await world.deliver("workflow_run", workflow_run_completed(world.twin, REPO, run.id, "alice", world.iid))
        )
    return ids


# -- which conclusions are failures -------------------------------------------------------


@pytest.mark.parametrize(
    ("conclusion", "category"), [("failure", "test"), ("timed_out", "timeout"), ("startup_failure", "other")]
)
async def test_a_failing_conclusion_starts_a_ci_round(world: World, conclusion: str, category: str):
    record = world.tmp / "ci-prompt.json"
    pr = await pr_with_a_ci_round_planned(world, record)
    head = pr.pull.head_sha
    if conclusion == "startup_failure":
        # The workflow could not start (an invalid workflow file): GitHub says so on
        # the suite and its workflow run only; there is no job, so no check run.
        suite = world.twin.add_check_suite(REPO, head, app="github-actions", conclusion=conclusion)
        ids = await deliver_suite(world, suite.id, "github-actions[bot]")
    else:
        run = world.twin.add_check_run(
            REPO, head, "pytest", conclusion=conclusion, output={"title": "1 failed", "summary": "FAILED test_x"}
        )
        ids = [
            await world.deliver(
                "check_run", check_run_event(world.twin, REPO, run.id, "completed", "ci-app[bot]", world.iid)
            ),
            *await deliver_suite(world, run.suite_id, "ci-app[bot]"),
        ]
    await world.settled(*ids)
    await world.until(lambda: pr.pull.head_sha != head, timeout=30, what="the CI round's push")
    await quiescent(world)
    (started,) = rounds_of(world, "ci_fix")
    assert [c["conclusion"] for c in started["trigger"]["checks"]] == [conclusion]
    assert started["categories"] == [category]
    prompt = json.loads(record.read_text())["stdin"]
    assert f"conclusion: {conclusion}" in prompt
    if conclusion == "startup_failure":
        assert "GitHub Actions (check suite)" in prompt and "could not start" in prompt


async def test_conclusions_that_are_not_failures_start_no_round(world: World):
    pr = await pr_with_a_ci_round_planned(world)
    head = pr.pull.head_sha
    ids = []
    # An Actions workflow waiting for a maintainer's approval (a fork's PR): no job ran.
    suite = world.twin.add_check_suite(REPO, head, app="github-actions", conclusion="action_required")
    ids += await deliver_suite(world, suite.id, "github-actions[bot]")
    for conclusion in ("action_required", "neutral", "skipped", "cancelled", "success"):
        app = f"ci-{conclusion.replace('_', '-')}"  # one App (so one suite) each
        run = world.twin.add_check_run(REPO, head, "check", app=app, conclusion=conclusion)
        ids.append(
            await world.deliver(
                "check_run", check_run_event(world.twin, REPO, run.id, "completed", f"{app}[bot]", world.iid)
            )
        )
        ids += await deliver_suite(world, run.suite_id, f"{app}[bot]")
    await world.settled(*ids)
    await quiescent(world)
    assert [e for e in events_of(world, "round.queued") if e.get("kind") == "ci_fix"] == []
    assert rounds_of(world, "ci_fix") == [] and pr.pull.head_sha == head


# -- the CI limit, escalation, and resuming ------------------------------------------------


@pytest.mark.timeout(240)  # CI rounds with the simulated CI: a minute or more on a loaded machine
async def test_the_repos_max_ci_rounds_wins_then_escalation_holds_until_retry(world: World):
    number = world.twin.add_issue(REPO, title="Add feature()", user="alice")
    world.twin.commit(REPO, "main", {".github/compound.yml": "max_ci_rounds: 1\n"}, "one CI round here")
    pr, comment = await escalated_by_ci_that_always_fails(world, number, MAX_CI_ROUNDS=3)
    await quiescent(world)
    # The repo's 1, not the service's 3.
    assert len(rounds_of(world, "ci_fix")) == 1
    assert LABEL in world.repo.issues[pr.number].labels and LABEL in world.repo.issues[number].labels
    assert "after 1 CI fix round," in comment and comment.count("| CI fix |") == 1
    # CI failing again on the head (a re-run, a redelivery) starts nothing by itself.
    head = pr.pull.head_sha
    (suite,) = [s for s in world.repo.check_suites.values() if s.head_sha == head and s.app == "github-actions"]
    await world.settled(*await deliver_suite(world, suite.id, "github-actions[bot]"))
    await quiescent(world)
    assert len(rounds_of(world, "ci_fix")) == 1 and pr.pull.head_sha == head
    # `/agent retry`: every round pushed, so it is one more look at CI, and says so.
    await world.command(pr.number, "/agent retry")
    await world.until(lambda: events_of(world, "session.resumed"), what="the session resumed")
    (answer,) = await world.until(
        lambda: [c for c in world.bot_comments(pr.number) if "looks at CI" in c], what="the answer to the retry"
    )
    assert f"looks at CI on {head[:7]} again" in answer and "Retrying" not in answer
    await world.until(lambda: pr.pull.head_sha != head, timeout=60, what="the retry round's push")
    retried = rounds_of(world, "ci_fix")[1]
    assert retried["trigger"]["asked"] == "`/agent retry`"
    (run,) = await world.until(
        lambda: [r for r in world.check_runs(pr.pull.head_sha) if r.name == "Compound"], what="its check run"
    )
    assert "Trigger: `/agent retry` by @alice" in run.output["summary"] and "fix-ci" not in run.output["summary"]
    # Its push fails CI too: escalated again, in the same comment, naming the retry.
    await world.until(lambda: events_of(world, "session.escalated")[1:], timeout=60, what="escalated again")
    await world.twin.ci.idle()
    await quiescent(world)
    assert len(rounds_of(world, "ci_fix")) == 2
    (comment,) = escalations(world, pr.number)
    assert comment.count("| CI fix |") == 2 and "`/agent retry` by @alice" in comment


# -- the review limit; rebase rounds count against no limit --------------------------------


async def test_review_rounds_stop_at_the_limit_and_a_rebase_round_uses_none_of_it(world: World):
    number = world.twin.add_issue(REPO, title="Add feature()", user="alice")
    world.twin.set_permission(REPO, "rita", "write")
    world.plan("task", WRITE_FEATURE)
    world.plan("review_fix", {"append": "feature.py", "content": "# reviewed\n"})
    await world.start(MAX_REVIEW_ROUNDS=1, REVIEW_QUIET_SECONDS=0)
    await world.label(number)
    pr = await stored_pr(world)
    await world.until(lambda: events_of(world, "round.pushed"), what="the first round to finish")
    # The base moves and the PR must be up to date: a rebase round, merged by git.
    world.twin.require_up_to_date(REPO, "main")
    head = pr.pull.head_sha
    await base_moves(world, {"README.md": "# hello, again\n"})
    await world.until(lambda: pr.pull.head_sha != head, timeout=30, what="the merge's push")
    assert len(rounds_of(world, "rebase")) == 1

    async def review(text: str) -> None:
        review = world.twin.add_review(
            REPO,
            pr.number,
            "rita",
            "CHANGES_REQUESTED",
            text,
            comments=[{"path": "feature.py", "line": 1, "body": text}],
        )
        await world.settled(
            await world.deliver("pull_request_review", review_submitted(world.twin, REPO, pr.number, review, world.iid))
        )
        await quiescent(world)

    # The one review round the limit allows still runs.
    merged = pr.pull.head_sha
    await review("annotate it")
    assert len(rounds_of(world, "review_fix")) == 1 and not escalations(world, pr.number)
    assert pr.pull.head_sha != merged
    # The next review is past the limit: escalated, no round.
    reviewed = pr.pull.head_sha
    await review("and document it")
    (comment,) = escalations(world, pr.number)
    assert "Reviewers still ask for changes after 1 review round," in comment
    assert comment.count("| review fix |") == 1 and comment.count("| merge of the base branch |") == 1
    assert LABEL in world.repo.issues[pr.number].labels and LABEL in world.repo.issues[number].labels
    assert len(rounds_of(world, "review_fix")) == 1 and pr.pull.head_sha == reviewed


# -- which reviews ask for changes ------------------------------------------------------------


async def test_a_commented_review_starts_a_round_only_with_inline_comments(world: World):
    number = world.twin.add_issue(REPO, title="Add feature()", user="alice")
    world.twin.set_permission(REPO, "rita", "write")
    pr = await pr_whose_review_round_would_write(world, number)
    head = pr.pull.head_sha
    chat = world.twin.add_review(REPO, pr.number, "rita", "COMMENTED", "Nice, thanks! Curious how it performs.")
    await world.settled(
        await world.deliver("pull_request_review", review_submitted(world.twin, REPO, pr.number, chat, world.iid))
    )
    await quiescent(world)
    assert rounds_of(world, "review_fix") == [] and pr.pull.head_sha == head
    inline = world.twin.add_review(
        REPO, pr.number, "rita", "COMMENTED", "", comments=[{"path": "feature.py", "line": 1, "body": "name it x"}]
    )
    await world.deliver("pull_request_review", review_submitted(world.twin, REPO, pr.number, inline, world.iid))
    await world.until(lambda: pr.pull.head_sha != head, timeout=30, what="the review round's push")
    await quiescent(world)
    (started,) = rounds_of(world, "review_fix")
    assert started["trigger"]["review_id"] == inline
    assert world.git("show", f"{pr.pull.head_sha}:x.py") == "x = 1\n"


# -- bots: allowed_bots -----------------------------------------------------------------------


async def test_a_bot_allowed_bots_lists_starts_work_and_an_unlisted_one_does_not(world: World):
    number = world.twin.add_issue(REPO, title="Bump the pins", user="alice")
    world.twin.commit(REPO, "main", {".github/compound.yml": "allowed_bots: ['dependabot[bot]']\n"}, "allow it")
    world.plan("task", WRITE_FEATURE)
    world.plan("review_fix", {"write": "x.py", "content": "x = 1\n"})
    await world.start(REVIEW_QUIET_SECONDS=0)
    # Listed, and (as bots are) no collaborator: its label starts the session.
    await world.label(number, sender="dependabot[bot]")
    pr = await stored_pr(world)
    await world.until(lambda: events_of(world, "round.pushed"), what="the first round to finish")
    assert not [c for c in world.bot_comments(number) if "permission" in c]
    head = pr.pull.head_sha

    def bot_review(login: str) -> int:
        return world.twin.add_review(
            REPO, pr.number, login, "CHANGES_REQUESTED", "", comments=[{"path": "feature.py", "line": 1, "body": "pin"}]
        )

    unlisted = bot_review("renovate[bot]")
    await world.settled(
        await world.deliver("pull_request_review", review_submitted(world.twin, REPO, pr.number, unlisted, world.iid))
    )
    await quiescent(world)
    assert rounds_of(world, "review_fix") == [] and pr.pull.head_sha == head
    listed = bot_review("dependabot[bot]")
    await world.deliver("pull_request_review", review_submitted(world.twin, REPO, pr.number, listed, world.iid))
    await world.until(lambda: pr.pull.head_sha != head, timeout=30, what="the review round's push")
    await quiescent(world)
    (started,) = rounds_of(world, "review_fix")
    assert started["trigger"]["review_id"] == listed
    # Neither bot was looked up as a collaborator: listed is enough, unlisted is ignored.
    asked = [c.path for c in world.twin.calls("repos/get-collaborator-permission-level")]
    assert not [p for p in asked if "bot" in p], asked
