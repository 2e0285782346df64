"""The twin's self-healing surface: statuses, other Apps' checks, Actions logs,
mergeability, reviews, the simulated CI and the webhook payload builders.

Real HTTP on loopback with installation tokens, real git, real pushes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests import twin_events as events
from tests.test_twin import Api, git
from tests.twin import GitHubTwin
from tests.webhook_examples import validate

REPO = "octo-org/hello"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def api(twin: GitHubTwin, session: aiohttp.ClientSession) -> Api:
    return Api(twin, session)


@pytest.fixture
def iid(twin: GitHubTwin) -> int:
    iid = twin.add_installation(account="octo-org")
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "hi\n", "src/app.py": "x = 1\n"})
    twin.set_permission(REPO, "alice", "write")
    twin.set_permission(REPO, "bob", "write")
    return iid


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
        self.received.append({
            "event": request.headers["X-GitHub-Event"],
            "action": payload.get("action"),
            "delivery": request.headers["X-GitHub-Delivery"],
            "payload": payload,
        })
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


# --- commit statuses --------------------------------------------------------------


async def test_commit_statuses_and_the_combined_status(twin, api, iid):
    token = f"token {await api.token(iid)}"
    sha = twin.commit(REPO, "main", {"a.txt": "a\n"})
    _, combined, _ = await api.call("GET", f"/repos/{REPO}/commits/main/status", token)
    assert (combined["state"], combined["total_count"], combined["statuses"]) == ("pending", 0, [])

    body = {"state": "pending", "context": "ci/build", "description": "Building", "target_url": "https://ci.example.com/1"}
    status, created, _ = await api.call("POST", f"/repos/{REPO}/statuses/{sha}", token, json=body)
    assert status == 201 and created["creator"]["login"] == f"{twin.app_slug}[bot]" and created["state"] == "pending"
    twin.add_status(REPO, sha, "ci/build", "success", "Built")
    twin.add_status(REPO, sha, "ci/lint", "success")
    _, combined, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/status", token)
    assert (combined["state"], combined["total_count"], combined["sha"]) == ("success", 2, sha)
    assert {(s["context"], s["state"]) for s in combined["statuses"]} == {("ci/build", "success"), ("ci/lint", "success")}
    twin.add_status(REPO, sha, "ci/lint", "error", "Crashed")
    _, combined, _ = await api.call("GET", f"/repos/{REPO}/commits/main/status", token)
    assert combined["state"] == "failure"
    twin.add_status(REPO, sha, "ci/lint", "pending")
    _, combined, _ = await api.call("GET", f"/repos/{REPO}/commits/main/status", token)
    assert combined["state"] == "pending"
    _, listed, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/statuses", token)
    assert [s["state"] for s in listed] == ["pending", "error", "success", "success", "pending"]  # newest first

    status, body, _ = await api.call("POST", f"/repos/{REPO}/statuses/{'f' * 40}", token, json={"state": "success"})
    assert status == 422 and "No commit found" in body["message"]
    status, _, _ = await api.call("POST", f"/repos/{REPO}/statuses/{sha}", token, json={"state": "success", "description": "x" * 141})
    assert status == 422
    with twin.expect_violations():
        status, _, _ = await api.call("POST", f"/repos/{REPO}/statuses/{sha}", token, json={"state": "green"})
    assert status == 422
    assert twin.response_problems == []


# --- other Apps' check runs ------------------------------------------------------------


async def test_check_runs_of_other_apps(twin, api, iid):
    token = f"token {await api.token(iid)}"
    sha = twin.commit(REPO, "fix", {"src/app.py": "x = 'one'\n"})
    notes = [{"path": "src/app.py", "start_line": i, "end_line": i, "annotation_level": "failure",
              "message": f"problem {i}", "title": "lint"} for i in range(1, 61)]
    ci = twin.add_check_run(REPO, "fix", "lint", app="ci-app", output={"title": "60 problems", "summary": "Lint failed"},
                            annotations=notes)
    actions = twin.add_check_run(REPO, sha, "typecheck", app="github-actions", conclusion="success")
    _, own, _ = await api.call("POST", f"/repos/{REPO}/check-runs", token, json={"name": "Compound", "head_sha": sha})

    _, listed, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/check-runs", token)
    apps = {r["name"]: r["app"]["slug"] for r in listed["check_runs"]}
    assert apps == {"lint": "ci-app", "typecheck": "github-actions", "Compound": twin.app_slug}
    assert own["app"]["id"] == twin.app_id
    assert {r["app"]["id"] for r in listed["check_runs"]} == {twin.app_id, 15368, twin.state.app("ci-app").id}
    _, only, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/check-runs?app_id=15368", token)
    assert [r["id"] for r in only["check_runs"]] == [actions.id]
    assert only["check_runs"][0]["html_url"].endswith(f"/job/{actions.id}")
    _, suites, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/check-suites", token)
    assert {s["app"]["slug"]: s["conclusion"] for s in suites["check_suites"]} == {
        "ci-app": "failure", "github-actions": "success", twin.app_slug: None,
    }
    status, suite, _ = await api.call("GET", f"/repos/{REPO}/check-suites/{ci.suite_id}", token)
    assert status == 200 and suite["app"]["slug"] == "ci-app" and suite["head_branch"] == "fix"
    assert suite["latest_check_runs_count"] == 1 and suite["head_commit"]["id"] == sha

    path = f"/repos/{REPO}/check-runs/{ci.id}/annotations"
    _, first, headers = await api.call("GET", f"{path}?per_page=50", token)
    _, second, _ = await api.call("GET", f"{path}?per_page=50&page=2", token)
    assert len(first) == 50 and len(second) == 10 and 'rel="next"' in headers["Link"]
    assert second[-1]["message"] == "problem 60"
    status, _, _ = await api.call("PATCH", f"/repos/{REPO}/check-runs/{ci.id}", token, json={"conclusion": "success"})
    assert status == 403  # only the App that created a run may change it

    queued = twin.add_check_run(REPO, sha, "tests", app="ci-app", status="in_progress")
    assert twin.state.repo("octo-org", "hello").check_suites[queued.suite_id].status == "in_progress"
    twin.complete_check_run(REPO, queued.id, "failure", output={"title": "2 failed", "summary": "boom"})
    _, got, _ = await api.call("GET", f"/repos/{REPO}/check-runs/{queued.id}", token)
    assert (got["status"], got["conclusion"], got["output"]["title"]) == ("completed", "failure", "2 failed")
    assert got["completed_at"] and got["started_at"]
    assert twin.response_problems == []


# --- GitHub Actions: runs, jobs, logs ---------------------------------------------------


async def test_actions_runs_jobs_and_the_log_redirect(twin, api, iid, session, tmp_path):
    token = f"token {await api.token(iid)}"
    sha = twin.commit(REPO, "fix", {"src/app.py": "x = 'one'\n"})
    number = twin.add_pull(REPO, head="fix", user="alice")
    big = tmp_path / "job.log"
    with big.open("w") as f:  # about 25 MB, streamed back in chunks
        for i in range(250_000):
            f.write(f"2024-01-01T00:00:00.0000000Z line {i:07d} {'.' * 70}\n")
        f.write("2024-01-01T00:00:00.0000000Z ##[error]Process completed with exit code 1.\n")
    run = twin.add_check_run(REPO, sha, "tests", app="github-actions", log=big)
    repo = twin.state.repo("octo-org", "hello")
    job = repo.jobs[run.id]
    assert job.log_path is not None and job.log_path.is_relative_to(twin.root)

    _, workflow, _ = await api.call("GET", f"/repos/{REPO}/actions/runs/{job.run_id}", token)
    assert (workflow["check_suite_id"], workflow["conclusion"], workflow["head_sha"]) == (run.suite_id, "failure", sha)
    assert [p["number"] for p in workflow["pull_requests"]] == [number]
    _, jobs, _ = await api.call("GET", f"/repos/{REPO}/actions/runs/{job.run_id}/jobs", token)
    assert [(j["id"], j["name"], j["conclusion"]) for j in jobs["jobs"]] == [(run.id, "tests", "failure")]
    _, one, _ = await api.call("GET", f"/repos/{REPO}/actions/jobs/{run.id}", token)
    assert one["check_run_url"].endswith(f"/check-runs/{run.id}") and one["run_id"] == job.run_id

    url = f"{twin.api_url}/repos/{REPO}/actions/jobs/{run.id}/logs"
    async with session.get(url, headers={"Authorization": token}, allow_redirects=False) as r:
        assert r.status == 302 and await r.read() == b""
        location = r.headers["Location"]
    assert location.startswith(f"http://localhost:{twin.port}/_blobs/")
    digest = hashlib.sha256()
    for _ in range(2):  # the URL may be fetched again
        digest = hashlib.sha256()
        async with session.get(location) as blob:
            assert blob.status == 200 and blob.content_type == "text/plain"
            async for chunk in blob.content.iter_chunked(1 << 16):
                digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    async with session.get(location, headers={"Authorization": token}) as refused:
        assert refused.status == 400 and "Authorization" in await refused.text()
    api_host = location.replace("localhost", "127.0.0.1")
    async with session.get(api_host) as elsewhere:
        assert elsewhere.status == 404  # blobs live on the other host only
    assert [(d["authorization"], d["status"]) for d in twin.log_downloads] == [(False, 200), (False, 200), (True, 400), (False, 404)]

    plain = twin.add_check_run(REPO, sha, "lint", app="github-actions", conclusion="failure")
    async with session.get(f"{twin.api_url}/repos/{REPO}/actions/jobs/{plain.id}/logs",
                           headers={"Authorization": token}) as followed:  # aiohttp drops the token on a new host
        text = await followed.text()
    lines = text.splitlines()
    assert all(STAMP.match(line) for line in lines) and "##[group]Run lint" in text
    assert lines[-1].endswith("##[error]Process completed with exit code 1.")
    other = twin.add_check_run(REPO, sha, "build", app="ci-app")
    assert (await api.call("GET", f"/repos/{REPO}/actions/jobs/{other.id}/logs", token))[0] == 404
    assert (await api.call("GET", f"/repos/{REPO}/actions/runs/{other.id}", token))[0] == 404
    assert twin.response_problems == []


# --- mergeability -------------------------------------------------------------------


async def test_mergeability_clean_dirty_and_pending(twin, api, iid):
    token = f"token {await api.token(iid)}"
    twin.commit(REPO, "clean", {"other.txt": "new\n"})
    twin.commit(REPO, "clash", {"src/app.py": "x = 'clash'\n"})
    clean = twin.add_pull(REPO, head="clean")
    clash = twin.add_pull(REPO, head="clash")

    async def state(number: int) -> tuple[Any, Any, Any]:
        _, pr, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}", token)
        return pr["mergeable"], pr["mergeable_state"], pr["rebaseable"]

    assert await state(clean) == (True, "clean", True)
    assert await state(clash) == (True, "clean", True)  # the base has not moved yet
    base = twin.commit(REPO, "main", {"src/app.py": "x = 'main'\n"})
    assert twin.state.repo("octo-org", "hello").issues[clash].pull.base_sha == base
    assert await state(clash) == (False, "dirty", False)
    twin.mergeability_pending(REPO, clean, times=2)
    assert [await state(clean) for _ in range(3)] == [(None, "unknown", None)] * 2 + [(True, "clean", True)]
    _, listed, _ = await api.call("GET", f"/repos/{REPO}/pulls", token)
    assert {p["base"]["sha"] for p in listed} == {base}
    status, created, _ = await api.call("POST", f"/repos/{REPO}/pulls", token, json={"head": "clean", "base": "clash"})
    assert status == 201 and created["mergeable"] is None  # computed after the answer, as on GitHub
    assert twin.response_problems == []


# --- reviews, requested reviewers, labels --------------------------------------------------


async def test_reviews_requested_reviewers_and_labels(twin, api, iid):
    token = f"token {await api.token(iid)}"
    twin.commit(REPO, "feature", {"src/app.py": "x = 3\n"})
    number = twin.add_pull(REPO, head="feature", user="alice")
    path = f"/repos/{REPO}/pulls/{number}/requested_reviewers"
    status, body, _ = await api.call("POST", path, token, json={"reviewers": ["bob"]})
    assert status == 201 and [u["login"] for u in body["requested_reviewers"]] == ["bob"]
    assert (await api.call("POST", path, token, json={"reviewers": ["mallory"]}))[0] == 422
    status, body, _ = await api.call("POST", path, token, json={"reviewers": ["alice"]})
    assert status == 422 and "author" in body["message"]
    _, pr, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}", token)
    assert [u["login"] for u in pr["requested_reviewers"]] == ["bob"]

    review = twin.add_review(REPO, number, "bob", "CHANGES_REQUESTED", "Please fix",
                             comments=[{"path": "src/app.py", "line": 1, "body": "Why 3?"}])
    first = next(c.id for c in twin.state.repo("octo-org", "hello").review_comments.values() if c.review_id == review)
    again = twin.add_review(REPO, number, "bob", "COMMENTED", "", comments=[{"in_reply_to": first, "body": "Well?"}])
    _, listed, _ = await api.call("GET", path, token)
    assert listed == {"users": [], "teams": []}  # the review answered the request
    _, comments, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/comments", token)
    assert [(c["body"], c["pull_request_review_id"], c.get("in_reply_to_id"), c["path"]) for c in comments] == [
        ("Why 3?", review, None, "src/app.py"), ("Well?", again, first, "src/app.py"),
    ]
    _, got, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/reviews/{review}", token)
    assert (got["state"], got["body"]) == ("CHANGES_REQUESTED", "Please fix")
    status, reply, _ = await api.call("POST", f"/repos/{REPO}/pulls/{number}/comments/{first}/replies", token, json={"body": "Fixed"})
    assert status == 201 and reply["in_reply_to_id"] == first
    _, own_review, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/reviews/{reply['pull_request_review_id']}", token)
    assert (own_review["state"], own_review["user"]["login"]) == ("COMMENTED", f"{twin.app_slug}[bot]")
    _, single, _ = await api.call("GET", f"/repos/{REPO}/pulls/comments/{reply['id']}", token)
    assert single["body"] == "Fixed"

    _, labels, _ = await api.call("POST", f"/repos/{REPO}/issues/{number}/labels", token, json={"labels": ["compound:stuck"]})
    assert [lb["name"] for lb in labels] == ["compound:stuck"]
    _, repo_labels, _ = await api.call("GET", f"/repos/{REPO}/labels", token)
    assert "compound:stuck" in [lb["name"] for lb in repo_labels]  # created as GitHub does
    status, labels, _ = await api.call("DELETE", f"/repos/{REPO}/issues/{number}/labels/compound:stuck", token)
    assert (status, labels) == (200, [])
    assert (await api.call("DELETE", f"/repos/{REPO}/issues/{number}/labels/compound:stuck", token))[0] == 404
    assert twin.response_problems == []


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
    twin.ci.configure(REPO, checks=[
        {"name": "typecheck", "command": f"{sys.executable} check.py", "app": "github-actions"},
        {"name": "lint", "command": "echo clean", "app": "ci-app"},
    ], deliver_to=receiver.url, delay=0.05)
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
        "check_run.created", "workflow_job.queued", "check_run.created",
        "workflow_job.in_progress",
        "check_run.completed", "workflow_job.completed", "check_run.completed",
        "check_suite.completed", "check_suite.completed",
        "workflow_run.completed",
    ]
    for r in receiver.received:
        validate(r["event"], r["payload"])
    done = [r["payload"] for r in receiver.received if r["event"] == "check_run" and r["action"] == "completed"]
    assert [(p["check_run"]["name"], p["check_run"]["app"]["slug"], p["sender"]["login"]) for p in done] == [
        ("typecheck", "github-actions", "github-actions[bot]"), ("lint", "ci-app", "ci-app[bot]"),
    ]
    assert all(p["check_run"]["head_sha"] == p["check_run"]["check_suite"]["head_sha"] == first for p in done)
    assert done[0]["check_run"]["pull_requests"] == []  # no pull request yet
    assert done[0]["check_run"]["output"]["summary"] == "Process completed with exit code 1."

    auth = f"token {token}"
    run_id = done[0]["check_run"]["id"]
    _, notes, _ = await api.call("GET", f"/repos/{REPO}/check-runs/{run_id}/annotations", auth)
    assert [(a["path"], a["start_line"], a["start_column"], a["message"]) for a in notes] == [
        ("src/app.py", 1, None, "error: str is not int  [assignment]"), ("src/app.py", 1, 5, "note: see the docs"),
    ]
    async with session.get(f"{twin.api_url}/repos/{REPO}/actions/jobs/{run_id}/logs", headers={"Authorization": auth}) as r:
        log = await r.text()
    lines = log.splitlines()
    assert all(STAMP.match(line) for line in lines)
    bodies = [line.split(" ", 1)[1] for line in lines]
    assert f"##[group]Run {sys.executable} check.py" in bodies and "##[endgroup]" in bodies
    assert "src/app.py:1: error: str is not int  [assignment]" in bodies
    assert bodies[-1] == "##[error]Process completed with exit code 1."
    completed_job = next(r["payload"] for r in receiver.received if r["event"] == "workflow_job" and r["action"] == "completed")
    assert completed_job["workflow_job"]["id"] == run_id  # a job's id is its check run's

    # Open a pull request, push a fix twice over the wire (GitHub redelivers): the payloads name it.
    _, pr, _ = await api.call("POST", f"/repos/{REPO}/pulls", auth, json={"title": "Fix", "head": "fix", "base": "main"})
    receiver.received.clear()
    twin.ci.configure(REPO, checks=[
        {"name": "typecheck", "command": f"{sys.executable} check.py", "app": "github-actions"},
    ], deliver_to=receiver.url, delay=0, repeat=2)
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
    twin.ci.configure(REPO, checks=[
        {"name": "slow", "command": "echo starting; sleep 30", "app": "ci-app", "timeout": 0.5},
    ], deliver_to=receiver.url, delay=0)
    sha = twin.commit(REPO, "slow", {"a.txt": "a\n"})
    twin.ci.start(REPO, sha, "refs/heads/slow")
    await twin.ci.idle()
    assert twin.ci.results[sha] == [("slow", "timed_out")]
    run = next(r for r in twin.state.repo("octo-org", "hello").check_runs.values() if r.head_sha == sha)
    assert "maximum execution time" in run.output["summary"] and "starting" in run.output["text"]
    assert [d.status for d in twin.ci.deliveries] == [202] * len(twin.ci.deliveries)

    payload = events.status_event(twin, REPO, sha, "ci/deploy", "failure", "ci-app[bot]", iid, description="Broke")
    assert (payload["state"], payload["sha"], payload["context"], payload["description"]) == ("failure", sha, "ci/deploy", "Broke")
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
    assert labeled["label"]["name"] == "agent" and twin.state.repo("octo-org", "hello").issues[number].labels == ["agent"]
    unlabeled = events.issue_unlabeled(twin, REPO, number, "agent", "alice", iid)
    assert unlabeled["issue"]["labels"] == [] and "pull_request" in unlabeled["issue"]
    review = twin.add_review(REPO, number, "bob", "CHANGES_REQUESTED", "No", comments=[{"path": "src/app.py", "line": 1, "body": "3?"}])
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
