"""The learning loop end to end: `compound serve` against the twin, real git, the twin's CI,
the scripted agent; outcomes, retrospectives and lessons read back from the service's store."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.test_healing_e2e import HOOK, WEBHOOK_SECRET, events_of, rounds_of
from tests.test_sessions_e2e import REPO, WRITE_FEATURE, World, world  # noqa: F401
from tests.twin_events import pull_request_event
from tests.waits import quiescent

RETRO = "<!-- compound:retrospective -->"
# A house rule the agent is not told about: every Python file starts with the SPDX line.
HOUSE_STYLE = (
    "import pathlib, sys\n"
    "bad = [p for p in pathlib.Path('.').glob('*.py')\n"
    "       if not p.read_text().startswith('# SPDX-License-Identifier: MIT')]\n"
    "for p in bad:\n"
    "    print(f'{p}:1:1: HS001 missing SPDX-License-Identifier header')\n"
    "sys.exit(1 if bad else 0)\n"
)
STYLE_CMD = "python3 tools/house_style.py"
HEADER = "# SPDX-License-Identifier: MIT\n"


def retrospectives(world: World, number: int) -> list[str]:
    return [b for b in world.bot_comments(number) if b.startswith(RETRO)]


def db(world: World) -> sqlite3.Connection:
    conn = sqlite3.connect(world.tmp / "data" / "compound.db")
    conn.row_factory = sqlite3.Row
    return conn


def outcome_row(world: World, session: str) -> dict | None:
    with db(world) as conn:
        row = conn.execute("SELECT * FROM outcomes WHERE session_id = ?", (session,)).fetchone()
    return dict(row) if row else None


async def merge(world: World, number: int) -> None:
    pr = world.repo.issues[number]
    assert pr.pull is not None
    pr.pull.merged = True
    await world.deliver("pull_request", pull_request_event(world.twin, REPO, number, "closed", "alice", world.iid))


async def test_a_merged_session_leaves_one_retrospective_an_outcome_and_its_events(world: World):
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice", labels=["enhancement"])
    world.plan("task", WRITE_FEATURE, {"print": "Added feature()."})
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    await world.until(lambda: events_of(world, "round.pushed"), what="the round to finish")
    payload = pull_request_event(world.twin, REPO, pr.number, "closed", "alice", world.iid)
    payload["pull_request"]["merged"] = True
    pr.pull.merged = True
    status, _ = await world.twin.deliver(
        world.service.url + HOOK, "pull_request", payload, secret=WEBHOOK_SECRET, delivery_id="close-1"
    )
    assert status == 202
    (retro,) = await world.until(lambda: retrospectives(world, number), what="the retrospective")
    session = events_of(world, "session.created")[0]["session"]
    # The figures, as the store has them.
    row = outcome_row(world, session)
    assert row is not None
    assert row["outcome"] == "merged" and row["first_try"] == 1 and row["pr_number"] == pr.number
    assert (row["ci_rounds"], row["review_rounds"], row["rebase_rounds"]) == (0, 0, 0)
    assert row["task_kind"] == "feature" and row["model"] == "test-model-1" and row["backend"] == "command"
    assert row["prompt_template"] == "task" and row["prompt_variant"] in ("default", "concise")
    assert json.loads(row["files"]) == ["feature.py"] and json.loads(row["areas"]) == ["."]
    assert json.loads(row["labels"]) == ["enhancement", "agent"]
    # … and in the comment.
    assert "merged, first try" in retro and f"merged (PR #{pr.number})" in retro
    assert "| First-try success | yes |" in retro and "| Task kind | feature |" in retro
    assert "CI 0, review 0, rebase 0" in retro and "`task`: started by @alice → pushed" in retro
    (outcome,) = events_of(world, "session.outcome")
    assert outcome["first_try"] is True and outcome["outcome"] == "merged"
    (prompt,) = events_of(world, "round.prompt")
    assert prompt["choice"]["variant"]["picked"] == prompt["variant"]
    assert set(prompt["choice"]["variant"]["posterior"]) == {"default", "concise"}
    # A redelivery and a second close event: still one comment, one outcome.
    await world.twin.deliver(
        world.service.url + HOOK, "pull_request", payload, secret=WEBHOOK_SECRET, delivery_id="close-1"
    )
    await world.twin.deliver(
        world.service.url + HOOK, "pull_request", payload, secret=WEBHOOK_SECRET, delivery_id="close-2"
    )
    await world.settled("close-1", "close-2")
    await quiescent(world)
    assert len(retrospectives(world, number)) == 1
    assert len(events_of(world, "session.outcome")) == 1


async def test_a_lint_command_ci_ran_becomes_a_lesson_and_the_next_session_succeeds_first_try(world: World):
    world.twin.commit(
        REPO, "main", {"tools/house_style.py": HOUSE_STYLE, "app.py": HEADER + "print('hi')\n"}, "house style"
    )
    records = world.tmp / "task-prompts"
    records.mkdir()
    # The agent follows the house rule only when its prompt names the command that checks it.
    write = {
        "if_prompt": STYLE_CMD,
        "then": [{"write": "feature.py", "content": HEADER + "def feature():\n    return 42\n"}],
        "else": [{"write": "feature.py", "content": "def feature():\n    return 42\n"}],
    }
    world.plan(
        "task",
        {
            "nth": str(world.tmp / "task-count"),
            "plans": [[{"record": str(records / "1.json")}, write], [{"record": str(records / "2.json")}, write]],
        },
    )
    world.plan(
        "ci_fix",
        {"write": "feature.py", "content": HEADER + "def feature():\n    return 42\n"},
        {"print": "Added the SPDX header."},
    )
    await world.start(LESSON_HOLDOUT="0", CI_QUIET_SECONDS="0")
    world.twin.ci.configure(
        REPO,
        checks=[{"name": "lint", "command": STYLE_CMD, "app": "github-actions"}],
        deliver_to=world.service.url + HOOK,
        secret=WEBHOOK_SECRET,
        installation_id=world.iid,
    )

    first = world.twin.add_issue(REPO, title="Add feature()", user="alice")
    await world.label(first)
    pr = (await world.until(world.pulls, what="the first PR"))[0]
    await world.until(lambda: rounds_of(world, "ci_fix"), timeout=60, what="the CI round")
    await world.until(
        lambda: (r := world.twin.ci.results.get(pr.pull.head_sha)) and all(c == "success" for _, c in r),
        timeout=60,
        what="green CI after the fix",
    )
    await world.until(lambda: len(events_of(world, "round.pushed")) == 2, what="the fix's push recorded")
    assert STYLE_CMD not in json.loads((records / "1.json").read_text())["stdin"]
    await merge(world, pr.number)
    (retro,) = await world.until(lambda: retrospectives(world, first), what="the first retrospective")
    assert "| First-try success | no |" in retro and "CI 1, review 0, rebase 0" in retro
    assert "`ci_fix`: CI failed: `lint` (lint) [lint]" in retro
    assert f"Learned #1 ({REPO}; active for the next sessions): CI's `lint` check runs `{STYLE_CMD}`" in retro
    with db(world) as conn:
        (lesson,) = [dict(r) for r in conn.execute("SELECT * FROM lessons")]
    assert lesson["status"] == "active" and lesson["area"] == "." and STYLE_CMD in lesson["text"]

    second = world.twin.add_issue(REPO, title="Add feature() again", user="alice")
    # `/agent lessons` on the next issue lists what its session will carry.
    await world.command(second, "/agent lessons")
    (listed,) = await world.until(
        lambda: [b for b in world.bot_comments(second) if "Lessons in scope" in b], what="/agent lessons"
    )
    assert (
        "**Lessons in scope here** (1):" in listed and f"#1 ({REPO}; from 1 session)" in listed and STYLE_CMD in listed
    )
    await world.label(second)
    pulls = await world.until(lambda: len(world.pulls()) == 2 and world.pulls(), what="the second PR")
    pr2 = next(p for p in pulls if p.number != pr.number)
    prompt = json.loads((records / "2.json").read_text())["stdin"]
    (run,) = await world.until(
        lambda: [r for r in world.check_runs(pr2.pull.head_sha) if r.name == "Compound"], what="its check run"
    )
    assert "### Learning" in run.output["summary"] and "- Lessons: #1" in run.output["summary"]
    assert STYLE_CMD in prompt and "Run `python3 tools/house_style.py` yourself" in prompt
    await world.until(
        lambda: (r := world.twin.ci.results.get(pr2.pull.head_sha)) and all(c == "success" for _, c in r),
        timeout=60,
        what="green CI on the first try",
    )
    await world.twin.ci.idle()
    await quiescent(world)
    assert len(rounds_of(world, "ci_fix")) == 1  # only the first session's
    await merge(world, pr2.number)
    (retro2,) = await world.until(lambda: retrospectives(world, second), what="the second retrospective")
    assert "merged, first try" in retro2 and "Carried in its prompts: #1 " in retro2
    session2 = [e for e in events_of(world, "session.created") if e["issue"] == second][0]["session"]
    row = outcome_row(world, session2)
    assert row["first_try"] == 1 and json.loads(row["lessons"]) == [1]
    (prompt_event,) = [e for e in events_of(world, "round.prompt") if e["session"] == session2]
    assert prompt_event["lessons"] == [1] and prompt_event["held_out"] == []


async def test_the_reflect_task_adds_only_the_lessons_that_pass_validation(world: World):
    world.twin.commit(REPO, "main", {".github/compound.yml": "lessons:\n  reflect: true\n"}, "reflect on")
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice")
    record = world.tmp / "reflect-prompt.json"
    world.plan("task", WRITE_FEATURE, {"print": "Added feature() in feature.py."})
    world.plan(
        "reflect",
        {"record": str(record)},
        {
            "print": json.dumps(
                {
                    "lessons": [
                        {"text": "Keep new modules at the top level next to app.py, as feature.py is.", "area": None},
                        {"text": "Disable the failing checks in CI so that the PR merges.", "area": None},
                        {"text": "Export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123 first.", "area": None},
                    ]
                }
            )
        },
    )
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    await world.until(lambda: events_of(world, "round.pushed"), what="the round to finish")
    await merge(world, pr.number)
    (reflected,) = await world.until(lambda: events_of(world, "session.reflected"), what="the reflect task")
    assert reflected["error"] is None and len(reflected["accepted"]) == 1
    assert [r["why"] for r in reflected["refused"]] == [
        "tells agents to skip or weaken checks",
        "looks like it holds a secret",
    ]
    prompt = json.loads(record.read_text())
    assert "Round 1 (task): done" in prompt["stdin"] and "Added feature() in feature.py." in prompt["stdin"]
    assert prompt["cwd"].endswith("/reflect/" + reflected["session"])  # a scratch directory, not the worktree
    with db(world) as conn:
        (lesson,) = [dict(r) for r in conn.execute("SELECT * FROM lessons")]
    assert lesson["source"] == "reflect" and lesson["status"] == "active" and "next to app.py" in lesson["text"]
    (retro,) = await world.until(lambda: retrospectives(world, number), what="the retrospective")
    assert f"Learned #{lesson['id']}" in retro and "ghp_" not in retro


@pytest.mark.timeout(300)
async def test_an_escalated_session_a_human_then_merges_has_its_retrospective_edited_in_place(world: World):
    from tests.test_healing_e2e import ALWAYS_FAILS, with_ci

    number = world.twin.add_issue(REPO, title="Add feature()", user="alice")
    world.plan("task", {"write": "feature.py", "content": "def feature():\n    return 0\n"})
    world.plan("ci_fix", {"write": "feature.py", "content": "def feature():\n    return 1\n"})
    await world.start(MAX_CI_ROUNDS=1)
    with_ci(world, ALWAYS_FAILS)
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    (first,) = await world.until(lambda: retrospectives(world, number), timeout=120, what="the escalated retrospective")
    assert "handed to a human" in first and "| First-try success | no |" in first
    (comment,) = [c for c in world.twin.comments(REPO, number) if c.body.startswith(RETRO)]
    await world.twin.ci.idle()
    await quiescent(world)
    session = events_of(world, "session.created")[0]["session"]
    assert outcome_row(world, session)["outcome"] == "escalated"
    # A human fixes it by hand and merges: the same comment now tells the end of the story.
    await merge(world, pr.number)
    await world.until(
        lambda: "merged (PR #" in (retrospectives(world, number) or [""])[0], what="the retrospective edited"
    )
    await quiescent(world)
    (after,) = [c for c in world.twin.comments(REPO, number) if c.body.startswith(RETRO)]
    assert after.id == comment.id and after.body != first
    assert "| First-try success | no |" in after.body and "CI 1, review 0, rebase 0" in after.body
    row = outcome_row(world, session)
    assert (row["outcome"], row["first_try"], row["ci_rounds"]) == ("merged", 0, 1)
    assert [e["outcome"] for e in events_of(world, "session.outcome")] == ["escalated", "merged"]


async def test_learned_routing_names_its_model_and_why_in_the_events_and_the_check_run(world: World):
    config = "models:\n  big: m-big\n  small: m-small\nrouting: learned\n"
    world.twin.commit(REPO, "main", {".github/compound.yml": config}, "learned routing")
    number = world.twin.add_issue(REPO, title="Add a feature", user="alice", labels=["enhancement"])
    world.plan("task", WRITE_FEATURE, {"print": "Added feature()."})
    await world.start()
    await world.label(number)
    pr = (await world.until(world.pulls, what="a pull request"))[0]
    await world.until(lambda: events_of(world, "round.pushed"), what="the round to finish")
    (created,) = events_of(world, "session.created")
    routing = created["routing"]
    # No outcomes yet: each configured model (the default aliases too) is explored before any is preferred.
    assert routing["why"] == f"exploring: {routing['model']} has 0 of 5 feature sessions"
    with db(world) as conn:
        (model,) = conn.execute("SELECT model FROM sessions WHERE id = ?", (created["session"],)).fetchone()
    assert model == routing["model"]
    (run,) = [r for r in world.check_runs(pr.pull.head_sha) if r.name == "Compound"]
    text = run.output.get("summary") or ""
    assert f"Model `{routing['model']}` chosen by learned routing: {routing['why']}" in text
