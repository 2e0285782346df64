"""The twin's REST surface for self-healing rounds: commit statuses, other Apps'
checks, Actions runs/jobs and the job-log redirect to the blob host,
mergeability, reviews and requested reviewers, labels on pull requests.

Real HTTP on loopback with installation tokens, real git.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.test_twin import Api
from tests.twin import GitHubTwin

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


# --- commit statuses --------------------------------------------------------------


async def test_commit_statuses_and_the_combined_status(twin, api, iid):
    twin.app_permissions["statuses"] = "write"  # Compound only reads them; this App writes them too
    token = f"token {await api.token(iid)}"
    sha = twin.commit(REPO, "main", {"a.txt": "a\n"})
    _, combined, _ = await api.call("GET", f"/repos/{REPO}/commits/main/status", token)
    assert (combined["state"], combined["total_count"], combined["statuses"]) == ("pending", 0, [])

    body = {
        "state": "pending",
        "context": "ci/build",
        "description": "Building",
        "target_url": "https://ci.example.com/1",
    }
    status, created, _ = await api.call("POST", f"/repos/{REPO}/statuses/{sha}", token, json=body)
    assert status == 201 and created["creator"]["login"] == f"{twin.app_slug}[bot]" and created["state"] == "pending"
    twin.add_status(REPO, sha, "ci/build", "success", "Built")
    twin.add_status(REPO, sha, "ci/lint", "success")
    _, combined, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/status", token)
    assert (combined["state"], combined["total_count"], combined["sha"]) == ("success", 2, sha)
    assert {(s["context"], s["state"]) for s in combined["statuses"]} == {
        ("ci/build", "success"),
        ("ci/lint", "success"),
    }
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
    status, _, _ = await api.call(
        "POST", f"/repos/{REPO}/statuses/{sha}", token, json={"state": "success", "description": "x" * 141}
    )
    assert status == 422
    with twin.expect_violations():
        status, _, _ = await api.call("POST", f"/repos/{REPO}/statuses/{sha}", token, json={"state": "green"})
    assert status == 422
    assert twin.response_problems == []


# --- other Apps' check runs ------------------------------------------------------------


async def test_check_runs_of_other_apps(twin, api, iid):
    token = f"token {await api.token(iid)}"
    sha = twin.commit(REPO, "fix", {"src/app.py": "x = 'one'\n"})
    notes = [
        {
            "path": "src/app.py",
            "start_line": i,
            "end_line": i,
            "annotation_level": "failure",
            "message": f"problem {i}",
            "title": "lint",
        }
        for i in range(1, 61)
    ]
    ci = twin.add_check_run(
        REPO, "fix", "lint", app="ci-app", output={"title": "60 problems", "summary": "Lint failed"}, annotations=notes
    )
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
        "ci-app": "failure",
        "github-actions": "success",
        twin.app_slug: None,
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
    assert [(d["authorization"], d["status"]) for d in twin.log_downloads] == [
        (False, 200),
        (False, 200),
        (True, 400),
        (False, 404),
    ]

    plain = twin.add_check_run(REPO, sha, "lint", app="github-actions", conclusion="failure")
    async with session.get(
        f"{twin.api_url}/repos/{REPO}/actions/jobs/{plain.id}/logs", headers={"Authorization": token}
    ) as followed:  # aiohttp drops the token on a new host
        text = await followed.text()
    lines = text.splitlines()
    assert all(STAMP.match(line) for line in lines) and "##[group]Run lint" in text
    assert lines[-1].endswith("##[error]Process completed with exit code 1.")
    other = twin.add_check_run(REPO, sha, "build", app="ci-app")
    assert (await api.call("GET", f"/repos/{REPO}/actions/jobs/{other.id}/logs", token))[0] == 404
    assert (await api.call("GET", f"/repos/{REPO}/actions/runs/{other.id}", token))[0] == 404
    assert twin.response_problems == []


async def test_a_workflow_that_could_not_start_is_on_its_suite_and_run_only(twin, api, iid):
    token = f"token {await api.token(iid)}"
    sha = twin.commit(REPO, "fix", {"src/app.py": "x = 2\n"})
    suite = twin.add_check_suite(REPO, sha, app="github-actions", conclusion="startup_failure")
    _, runs, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/check-runs", token)
    assert runs["total_count"] == 0
    _, suites, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/check-suites", token)
    (listed,) = suites["check_suites"]
    assert (listed["id"], listed["status"], listed["conclusion"]) == (suite.id, "completed", "startup_failure")
    assert listed["app"]["slug"] == "github-actions" and listed["latest_check_runs_count"] == 0
    (run,) = [w for w in twin.state.repo("octo-org", "hello").workflow_runs.values() if w.suite_id == suite.id]
    _, workflow, _ = await api.call("GET", f"/repos/{REPO}/actions/runs/{run.id}", token)
    assert (workflow["status"], workflow["conclusion"], workflow["head_sha"]) == ("completed", "startup_failure", sha)
    with pytest.raises(ValueError):  # a suite with runs concludes from them
        twin.add_check_run(REPO, sha, "later", app="ci-app")
        twin.add_check_suite(REPO, sha, app="ci-app")
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
    twin.require_up_to_date(REPO, "main")  # branch protection: "behind" when the head lacks main's tip
    assert await state(clean) == (True, "behind", True)
    assert await state(clash) == (False, "dirty", False)
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

    review = twin.add_review(
        REPO,
        number,
        "bob",
        "CHANGES_REQUESTED",
        "Please fix",
        comments=[{"path": "src/app.py", "line": 1, "body": "Why 3?"}],
    )
    first = next(c.id for c in twin.state.repo("octo-org", "hello").review_comments.values() if c.review_id == review)
    again = twin.add_review(REPO, number, "bob", "COMMENTED", "", comments=[{"in_reply_to": first, "body": "Well?"}])
    _, listed, _ = await api.call("GET", path, token)
    assert listed == {"users": [], "teams": []}  # the review answered the request
    _, comments, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/comments", token)
    assert [(c["body"], c["pull_request_review_id"], c.get("in_reply_to_id"), c["path"]) for c in comments] == [
        ("Why 3?", review, None, "src/app.py"),
        ("Well?", again, first, "src/app.py"),
    ]
    _, got, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/reviews/{review}", token)
    assert (got["state"], got["body"]) == ("CHANGES_REQUESTED", "Please fix")
    status, reply, _ = await api.call(
        "POST", f"/repos/{REPO}/pulls/{number}/comments/{first}/replies", token, json={"body": "Fixed"}
    )
    assert status == 201 and reply["in_reply_to_id"] == first
    # A reply to a reply: GitHub supports replies to a thread's top-level comment only.
    well = next(c["id"] for c in comments if c["body"] == "Well?")
    status, refused, _ = await api.call(
        "POST", f"/repos/{REPO}/pulls/{number}/comments/{well}/replies", token, json={"body": "Fixed too"}
    )
    assert status == 422 and refused["message"] == "Validation Failed"
    assert "Fixed too" not in [c.body for c in twin.state.repo("octo-org", "hello").review_comments.values()]
    _, own_review, _ = await api.call(
        "GET", f"/repos/{REPO}/pulls/{number}/reviews/{reply['pull_request_review_id']}", token
    )
    assert (own_review["state"], own_review["user"]["login"]) == ("COMMENTED", f"{twin.app_slug}[bot]")
    _, single, _ = await api.call("GET", f"/repos/{REPO}/pulls/comments/{reply['id']}", token)
    assert single["body"] == "Fixed"

    _, labels, _ = await api.call(
        "POST", f"/repos/{REPO}/issues/{number}/labels", token, json={"labels": ["compound:stuck"]}
    )
    assert [lb["name"] for lb in labels] == ["compound:stuck"]
    _, repo_labels, _ = await api.call("GET", f"/repos/{REPO}/labels", token)
    assert "compound:stuck" in [lb["name"] for lb in repo_labels]  # created as GitHub does
    status, labels, _ = await api.call("DELETE", f"/repos/{REPO}/issues/{number}/labels/compound:stuck", token)
    assert (status, labels) == (200, [])
    assert (await api.call("DELETE", f"/repos/{REPO}/issues/{number}/labels/compound:stuck", token))[0] == 404
    assert twin.response_problems == []
