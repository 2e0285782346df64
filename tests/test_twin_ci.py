"""The twin's simulated CI on real pushes, and the webhook payload builders.

Deliveries go to a small receiver on loopback that checks every signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests import twin_events as events
from tests.test_twin import git
from tests.test_twin_checks import REPO, STAMP, api, iid, session  # noqa: F401  (fixtures)
from tests.twin import GitHubTwin
from tests.webhook_examples import validate


class Receiver:
    """A webhook endpoint on loopback that checks signatures and keeps every delivery."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.url = ""

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        payload = json.loads(body)
        self.received.append(
            {
                "event": request.headers["X-GitHub-Event"],
                "action": payload.get("action"),
                "delivery": request.headers["X-GitHub-Delivery"],
                "payload": payload,
            }
        )
        return web.Response(status=202)

    def sequence(self) -> list[str]:
        return [f"{r['event']}.{r['action']}" if r["action"] else r["event"] for r in self.received]


@pytest.fixture
async def receiver(twin: GitHubTwin) -> AsyncIterator[Receiver]:
    hooks = Receiver(twin.webhook_secret)
    app = web.Application()
    app.router.add_post("/hooks", hooks.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hooks.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    try:
        yield hooks
    finally:
        await runner.cleanup()


# --- the simulated CI ----------------------------------------------------------------------


CHECKER = """\
import pathlib, sys
text = pathlib.Path("src/app.py").read_text()
if "'" in text:
    print("checking src/app.py")
    print("src/app.py:1: error: str is not int  [assignment]")
    print("src/app.py:1:5: note: see the docs")
    print("elsewhere.py:3: error: no such file, no annotation")
    sys.exit(1)
print("Success: no issues found")
"""


async def test_simulated_ci_on_a_real_push(twin, api, iid, receiver, session, tmp_path):
    twin.commit(REPO, "main", {"check.py": CHECKER})
    twin.ci.configure(
        REPO,
        checks=[
            {"name": "typecheck", "command": f"{sys.executable} check.py", "app": "github-actions"},
            {"name": "lint", "command": "echo clean", "app": "ci-app"},
        ],
        deliver_to=receiver.url,
        delay=0.05,
    )
    token = await api.token(iid)
    url = f"http://x-access-token:{token}@{twin.host}/{REPO}.git"
    work = tmp_path / "work"
    await git("clone", "-q", url, str(work))
    await git("checkout", "-q", "-b", "fix", cwd=work)
    (work / "src" / "app.py").write_text("x = 'one'\n")
    await git("commit", "-qam", "Break it", cwd=work)
    await git("push", "-q", "origin", "fix", cwd=work)
    _, head = await git("rev-parse", "HEAD", cwd=work)
    first = head.strip()
    await twin.ci.idle()
    assert twin.ci.results[first] == [("typecheck", "failure"), ("lint", "success")]
    assert receiver.bad_signatures == 0
    assert receiver.sequence() == [
        "workflow_run.requested",
        "check_run.created",
        "workflow_job.queued",
        "check_run.created",
        "workflow_job.in_progress",
        "check_run.completed",
        "workflow_job.completed",
        "check_run.completed",
        "check_suite.completed",
        "check_suite.completed",
        "workflow_run.completed",
    ]
    for r in receiver.received:
        validate(r["event"], r["payload"])
    done = [r["payload"] for r in receiver.received if r["event"] == "check_run" and r["action"] == "completed"]
    assert [(p["check_run"]["name"], p["check_run"]["app"]["slug"], p["sender"]["login"]) for p in done] == [
        ("typecheck", "github-actions", "github-actions[bot]"),
        ("lint", "ci-app", "ci-app[bot]"),
    ]
    assert all(p["check_run"]["head_sha"] == p["check_run"]["check_suite"]["head_sha"] == first for p in done)
    assert done[0]["check_run"]["pull_requests"] == []  # no pull request yet
    assert done[0]["check_run"]["output"]["summary"] == "Process completed with exit code 1."

    auth = f"token {token}"
    run_id = done[0]["check_run"]["id"]
    _, notes, _ = await api.call("GET", f"/repos/{REPO}/check-runs/{run_id}/annotations", auth)
    assert [(a["path"], a["start_line"], a["start_column"], a["message"]) for a in notes] == [
        ("src/app.py", 1, None, "error: str is not int  [assignment]"),
        ("src/app.py", 1, 5, "note: see the docs"),
    ]
    async with session.get(
        f"{twin.api_url}/repos/{REPO}/actions/jobs/{run_id}/logs", headers={"Authorization": auth}
    ) as r:
        log = await r.text()
    lines = log.splitlines()
    assert all(STAMP.match(line) for line in lines)
    bodies = [line.split(" ", 1)[1] for line in lines]
    assert f"##[group]Run {sys.executable} check.py" in bodies and "##[endgroup]" in bodies
    assert "src/app.py:1: error: str is not int  [assignment]" in bodies
    assert bodies[-1] == "##[error]Process completed with exit code 1."
    completed_job = next(
        r["payload"] for r in receiver.received if r["event"] == "workflow_job" and r["action"] == "completed"
    )
    assert completed_job["workflow_job"]["id"] == run_id  # a job's id is its check run's

    # Open a pull request, push a fix twice over the wire (GitHub redelivers): the payloads name it.
    _, pr, _ = await api.call(
        "POST", f"/repos/{REPO}/pulls", auth, json={"title": "Fix", "head": "fix", "base": "main"}
    )
    receiver.received.clear()
    twin.ci.configure(
        REPO,
        checks=[
            {"name": "typecheck", "command": f"{sys.executable} check.py", "app": "github-actions"},
        ],
        deliver_to=receiver.url,
        delay=0,
        repeat=2,
    )
    (work / "src" / "app.py").write_text("x = 1\n")
    await git("commit", "-qam", "Fix it", cwd=work)
    await git("push", "-q", "origin", "fix", cwd=work)
    _, head = await git("rev-parse", "HEAD", cwd=work)
    second = head.strip()
    await twin.ci.idle()
    assert twin.ci.results[second] == [("typecheck", "success")]
    completed = [r for r in receiver.received if r["event"] == "check_run" and r["action"] == "completed"]
    assert len(completed) == 2 and completed[0]["delivery"] != completed[1]["delivery"]
    assert completed[0]["payload"] == completed[1]["payload"]
    pulls = completed[0]["payload"]["check_run"]["pull_requests"]
    assert [(p["number"], p["head"]["sha"], p["head"]["ref"], p["base"]["ref"]) for p in pulls] == [
        (pr["number"], second, "fix", "main"),
    ]
    suite = next(r["payload"]["check_suite"] for r in receiver.received if r["event"] == "check_suite")
    assert (suite["before"], suite["after"], suite["conclusion"]) == (first, second, "success")
    assert receiver.sequence().count("workflow_run.completed") == 2
    assert twin.push_errors == [] and twin.response_problems == []


async def test_simulated_ci_timeout_and_statuses_event(twin, iid, receiver):
    twin.ci.configure(
        REPO,
        checks=[
            {"name": "slow", "command": "echo starting; sleep 30", "app": "ci-app", "timeout": 0.5},
        ],
        deliver_to=receiver.url,
        delay=0,
    )
    sha = twin.commit(REPO, "slow", {"a.txt": "a\n"})
    twin.ci.start(REPO, sha, "refs/heads/slow")
    await twin.ci.idle()
    assert twin.ci.results[sha] == [("slow", "timed_out")]
    run = next(r for r in twin.state.repo("octo-org", "hello").check_runs.values() if r.head_sha == sha)
    assert "maximum execution time" in run.output["summary"] and "starting" in run.output["text"]
    assert [d.status for d in twin.ci.deliveries] == [202] * len(twin.ci.deliveries)

    payload = events.status_event(twin, REPO, sha, "ci/deploy", "failure", "ci-app[bot]", iid, description="Broke")
    assert (payload["state"], payload["sha"], payload["context"], payload["description"]) == (
        "failure",
        sha,
        "ci/deploy",
        "Broke",
    )
    assert [b["name"] for b in payload["branches"]] == ["slow"]
    again = events.status_event(twin, REPO, sha, "ci/deploy", "failure", "ci-app[bot]", iid, description="Broke")
    assert again["id"] == payload["id"]  # the latest status of the context, not a new one
    assert len(twin.state.repo("octo-org", "hello").statuses) == 1


# --- webhook payload builders ------------------------------------------------------------


async def test_payload_builders_follow_the_twin(twin, iid):
    first = twin.commit(REPO, "fix", {"src/app.py": "x = 2\n"})
    number = twin.add_pull(REPO, head="fix", user="alice")
    second = twin.commit(REPO, "fix", {"src/app.py": "x = 3\n"})
    run = twin.add_check_run(REPO, second, "tests", app="github-actions")
    payload = events.check_run_event(twin, REPO, run.id, "completed", "github-actions[bot]", iid)
    assert payload["check_run"]["app"]["slug"] == "github-actions" and payload["check_run"]["head_sha"] == second
    assert [(p["number"], p["head"]["sha"]) for p in payload["check_run"]["pull_requests"]] == [(number, second)]
    job = events.workflow_job_event(twin, REPO, run.id, "completed", "github-actions[bot]", iid)
    assert job["workflow_job"]["conclusion"] == "failure"
    suite = events.check_suite_completed(twin, REPO, run.suite_id, "github-actions[bot]", iid)
    assert suite["check_suite"]["app"]["id"] == 15368
    workflow = events.workflow_run_completed(twin, REPO, job["workflow_job"]["run_id"], "github-actions[bot]", iid)
    assert workflow["workflow_run"]["check_suite_id"] == run.suite_id

    sync = events.pull_request_event(twin, REPO, number, "synchronize", "alice", iid)
    assert (sync["before"], sync["after"], sync["pull_request"]["head"]["sha"]) == (first, second, second)
    labeled = events.pull_request_event(twin, REPO, number, "labeled", "alice", iid, label="agent")
    assert labeled["label"]["name"] == "agent" and twin.state.repo("octo-org", "hello").issues[number].labels == [
        "agent"
    ]
    unlabeled = events.issue_unlabeled(twin, REPO, number, "agent", "alice", iid)
    assert unlabeled["issue"]["labels"] == [] and "pull_request" in unlabeled["issue"]
    review = twin.add_review(
        REPO, number, "bob", "CHANGES_REQUESTED", "No", comments=[{"path": "src/app.py", "line": 1, "body": "3?"}]
    )
    submitted = events.review_submitted(twin, REPO, number, review, installation_id=iid)
    assert (submitted["review"]["id"], submitted["sender"]["login"]) == (review, "bob")
    comment = next(c.id for c in twin.state.repo("octo-org", "hello").review_comments.values())
    created = events.review_comment_created(twin, REPO, number, comment, iid)
    assert created["comment"]["pull_request_review_id"] == review
    push = events.push_event(twin, REPO, "refs/heads/fix", first, second, "alice", iid)
    assert [c["id"] for c in push["commits"]] == [second] and push["commits"][0]["modified"] == ["src/app.py"]
    assert events.push_event(twin, REPO, "refs/heads/fix", None, second, "alice", iid)["before"] == first
    assert events.review_submitted(twin, REPO, number, review, iid)["installation"]["id"] == iid
    closed = events.pull_request_event(twin, REPO, number, "closed", "alice", iid)
    assert closed["pull_request"]["state"] == "closed"
