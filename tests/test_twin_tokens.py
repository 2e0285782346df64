"""The twin's scoped installation tokens: what a token request may ask for, and
what a token narrowed to repositories and permissions is refused, over REST
and over git. Real HTTP on loopback, real git."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_twin import Api, api, git, session  # noqa: F401 - the twin's API fixtures
from tests.twin import GitHubTwin

REPO = "octo-org/hello"
OTHER = "octo-org/other"


@pytest.fixture
def iid(twin: GitHubTwin) -> int:
    iid = twin.add_installation(account="octo-org")
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "hi\n"})
    twin.add_repo(OTHER, installation_id=iid, files={"README.md": "other\n"})
    return iid


async def scoped(api: Api, iid: int, **body: object) -> tuple[int, dict]:
    status, reply, _ = await api.call(
        "POST", f"/app/installations/{iid}/access_tokens", f"Bearer {api.twin.app_jwt()}", json=body
    )
    return status, reply


async def test_a_token_request_is_recorded_with_its_scope(twin, api, iid):
    status, reply = await scoped(api, iid, repositories=["hello"], permissions={"contents": "write"})
    assert status == 201
    assert reply["repository_selection"] == "selected"
    assert [r["full_name"] for r in reply["repositories"]] == [REPO]
    # GitHub adds metadata:read to every token that reaches repositories.
    assert reply["permissions"] == {"metadata": "read", "contents": "write"}
    (request,) = twin.token_log
    assert (request.installation_id, request.repositories, request.permissions) == (
        iid,
        ["hello"],
        {"contents": "write"},
    )
    assert twin.scope_of(reply["token"]) == (frozenset({"hello"}), {"metadata": "read", "contents": "write"})
    assert twin.response_problems == []

    _, whole = await scoped(api, iid)
    assert whole["repository_selection"] == "all" and whole["permissions"] == twin.app_permissions
    assert (twin.token_log[1].repositories, twin.token_log[1].permissions) == (None, None)


async def test_a_malformed_or_excessive_token_request_is_refused_422(twin, api, iid):
    with twin.expect_violations() as caught:
        status, reply = await scoped(api, iid, repositories="hello")
    assert status == 422 and "repositories" in caught[0]
    with twin.expect_violations():
        status, _ = await scoped(api, iid, permissions={"contents": "owner"})
    assert status == 422
    # Well-formed, but beyond what the installation was granted, or not its repository.
    status, reply = await scoped(api, iid, permissions={"administration": "write"})
    assert (status, reply["message"]) == (422, "The permissions requested are not granted to this installation.")
    status, reply = await scoped(api, iid, permissions={"actions": "write"})  # granted: read
    assert status == 422
    status, reply = await scoped(api, iid, repositories=["hello", "nope"])
    assert status == 422 and "not accessible to the parent installation" in reply["message"]
    # Refused requests mint nothing.
    assert [r.repositories for r in twin.token_log] == []


async def test_a_repo_scoped_token_sees_no_other_repo_and_does_only_what_it_may(twin, api, iid):
    _, reply = await scoped(api, iid, repositories=["hello"], permissions={"issues": "write", "contents": "read"})
    auth = f"token {reply['token']}"
    number = twin.add_issue(REPO, title="Bug")
    other = twin.add_issue(OTHER, title="Bug there")
    status, _, _ = await api.call("POST", f"/repos/{REPO}/issues/{number}/comments", auth, json={"body": "ok"})
    assert status == 201
    # Another repository of the same installation: hidden, as GitHub hides it.
    status, body, _ = await api.call("POST", f"/repos/{OTHER}/issues/{other}/comments", auth, json={"body": "no"})
    assert (status, body["message"]) == (404, "Not Found")
    assert (await api.call("GET", f"/repos/{OTHER}", auth))[0] == 404
    _, listed, _ = await api.call("GET", "/installation/repositories", auth)
    assert [r["full_name"] for r in listed["repositories"]] == [REPO]
    # Its own repository, without the permission: 403 and the sets that would do.
    with twin.expect_refusals() as caught:
        status, body, headers = await api.call(
            "POST", f"/repos/{REPO}/check-runs", auth, json={"name": "x", "head_sha": "a" * 40}
        )
    assert (status, body["message"]) == (403, "Resource not accessible by integration")
    assert headers["x-accepted-github-permissions"] == "checks=write"
    assert "checks/create" in caught[0]
    with twin.expect_refusals():
        status, _, headers = await api.call("GET", f"/repos/{REPO}/pulls", auth)
    assert status == 403 and headers["x-accepted-github-permissions"] == "pull_requests=read"
    # Reading is enough for what it may read; issues:write covers issues:read.
    assert (await api.call("GET", f"/repos/{REPO}/contents/README.md", auth))[0] == 200
    assert (await api.call("GET", f"/repos/{REPO}/issues/{number}/comments", auth))[0] == 200


async def test_git_refuses_a_push_outside_the_tokens_repositories(twin, iid, tmp_path: Path):
    token = twin.mint_token(iid, repositories=["hello"], permissions={"contents": "write", "metadata": "read"})
    mine = f"http://x-access-token:{token}@{twin.host}/{REPO}.git"
    theirs = f"http://x-access-token:{token}@{twin.host}/{OTHER}.git"
    work = tmp_path / "work"
    await git("clone", "-q", mine, str(work))
    (work / "a.txt").write_text("a\n")
    await git("add", "a.txt", cwd=work)
    await git("commit", "-qm", "A", cwd=work)
    await git("push", "-q", "origin", "HEAD:refs/heads/mine", cwd=work)
    assert [p[:2] for p in twin.pushes] == [(REPO, "refs/heads/mine")]

    code, out = await git("push", theirs, "HEAD:refs/heads/stolen", cwd=work, check=False)
    assert code != 0 and "not found" in out.lower()
    code, out = await git("ls-remote", theirs, check=False)
    assert code != 0
    assert twin.git_refusals == [(OTHER, "push", 404), (OTHER, "fetch", 404)]
    assert len(twin.pushes) == 1


async def test_git_refuses_a_push_without_contents_write(twin, iid, tmp_path: Path):
    reader = twin.mint_token(iid, repositories=["hello"], permissions={"contents": "read", "metadata": "read"})
    url = f"http://x-access-token:{reader}@{twin.host}/{REPO}.git"
    work = tmp_path / "work"
    await git("clone", "-q", url, str(work))  # reading is allowed
    (work / "a.txt").write_text("a\n")
    await git("add", "a.txt", cwd=work)
    await git("commit", "-qm", "A", cwd=work)
    code, out = await git("push", "origin", "HEAD:refs/heads/x", cwd=work, check=False)
    assert code != 0 and "403" in out
    assert twin.git_refusals == [(REPO, "push", 403)] and twin.pushes == []

    nothing = twin.mint_token(iid, repositories=["hello"], permissions={"issues": "write"})
    code, _ = await git("ls-remote", f"http://x-access-token:{nothing}@{twin.host}/{REPO}.git", check=False)
    assert code != 0 and twin.git_refusals[-1] == (REPO, "fetch", 404)
