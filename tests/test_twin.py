"""The GitHub twin itself: real HTTP on loopback, real git."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from tests.twin import GitHubTwin
from tests.twin.auth import app_private_key_pem
from tests.twin.rest import HANDLERS

REPO = "octo-org/hello"
pytest_plugins = ["pytester"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def iid(twin: GitHubTwin) -> int:
    iid = twin.add_installation(account="octo-org")
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "hi\n", "src/app.py": "x = 1\n"})
    return iid


class Api:
    """A bare client: every request spelled out, nothing retried."""

    def __init__(self, twin: GitHubTwin, session: aiohttp.ClientSession) -> None:
        self.twin, self.session = twin, session

    async def call(
        self, method: str, path: str, auth: str | None = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        headers = dict(kw.pop("headers", {}))
        if auth is not None:
            headers["Authorization"] = auth
        headers.setdefault("Accept", "application/vnd.github+json")
        async with self.session.request(method, self.twin.api_url + path, headers=headers, **kw) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body, r.headers

    async def token(self, iid: int) -> str:
        status, body, _ = await self.call(
            "POST", f"/app/installations/{iid}/access_tokens", f"Bearer {self.twin.app_jwt()}"
        )
        assert status == 201, body
        return str(body["token"])


@pytest.fixture
def api(twin: GitHubTwin, session: aiohttp.ClientSession) -> Api:
    return Api(twin, session)


# --- validation -----------------------------------------------------------


async def test_good_requests_raise_no_violation(twin, api, iid):
    token = f"token {await api.token(iid)}"
    number = twin.add_issue(REPO, title="Bug", body="It breaks", user="alice", labels=["bug"])
    status, body, _ = await api.call("POST", f"/repos/{REPO}/issues/{number}/comments", token, json={"body": "On it"})
    assert status == 201 and body["body"] == "On it"
    status, body, _ = await api.call("GET", f"/repos/{REPO}/pulls?state=open&per_page=100", token)
    assert (status, body) == (200, [])
    assert twin.violations == [] and twin.response_problems == []
    assert [r.operation_id for r in twin.requests] == [
        "apps/create-installation-access-token",
        "issues/create-comment",
        "pulls/list",
    ]
    assert twin.requests[1].installation_id == iid


async def test_bad_body_is_a_violation_answered_422(twin, api, iid):
    token = f"token {await api.token(iid)}"
    number = twin.add_issue(REPO, title="Bug")
    with twin.expect_violations() as caught:
        status, body, _ = await api.call("POST", f"/repos/{REPO}/issues/{number}/comments", token, json={"text": 5})
    assert status == 422
    assert "'body' is a required property" in caught[0]
    with twin.expect_violations() as caught:
        status, _, _ = await api.call("PATCH", f"/repos/{REPO}/issues/{number}", token, json={"state": "shut"})
    assert status == 422 and "state" in caught[0]
    with twin.expect_violations():
        status, body, _ = await api.call(
            "PATCH",
            f"/repos/{REPO}/issues/{number}",
            token,
            data=b"{nope",
            headers={"Content-Type": "application/json"},
        )
    assert (status, body["message"]) == (400, "Problems parsing JSON")
    with twin.expect_violations():
        status, _, _ = await api.call("GET", f"/repos/{REPO}/pulls?per_page=lots", token)
    assert status == 422
    assert twin.violations == []


async def test_unknown_route_is_a_violation_answered_404(twin, api, iid):
    token = f"token {await api.token(iid)}"
    with twin.expect_violations() as caught:
        status, body, _ = await api.call("GET", f"/repos/{REPO}/teleport", token)
        status2, _, _ = await api.call("PUT", f"/repos/{REPO}/issues/1", token, json={})
    assert (status, status2) == (404, 404) and body["message"] == "Not Found"
    assert len(caught) == 2 and "no such operation" in caught[0]


async def test_in_subset_but_unimplemented_answers_501_without_violation(twin, api, iid, monkeypatch):
    monkeypatch.delitem(HANDLERS, "actions/get-workflow-run")  # every operation has a handler today
    token = f"token {await api.token(iid)}"
    status, _, _ = await api.call("GET", f"/repos/{REPO}/actions/runs/7", token)
    assert status == 501
    assert twin.unimplemented and twin.violations == []


def test_a_violation_fails_the_test_and_the_session(pytester, monkeypatch):
    pytester.makeconftest('pytest_plugins = ["tests.twin.fixtures"]\n')
    pytester.makepyfile(
        """
        import aiohttp

        async def test_sloppy(twin):
            async with aiohttp.ClientSession() as s:
                async with s.get(twin.api_url + "/nowhere") as r:
                    assert r.status == 404

        def test_fine():
            pass
        """
    )
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    root = str(Path(__file__).resolve().parent.parent)
    env_path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", env_path)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*OpenAPI violations*", "*test_sloppy*/nowhere*"])
    assert result.ret == 1


# --- authentication ---------------------------------------------------------


async def test_app_endpoints_need_a_valid_jwt(twin, api, iid):
    now = int(time.time())
    assert (await api.call("GET", "/app"))[0] == 401
    status, body, _ = await api.call("GET", "/app", f"Bearer {twin.app_jwt()}")
    assert status == 200 and body["id"] == twin.app_id and body["slug"] == twin.app_slug
    as_int = _sign_rs256({"iat": now - 60, "exp": now + 540, "iss": twin.app_id}, twin.private_key_pem)
    assert (await api.call("GET", "/app", f"Bearer {as_int}"))[0] == 200
    # GitHub's documented recipe: iat back-dated 60 s, exp 10 minutes ahead.
    recipe = jwt.encode({"iat": now - 60, "exp": now + 600, "iss": str(twin.app_id)}, twin.private_key_pem, "RS256")
    assert (await api.call("GET", "/app", f"Bearer {recipe}"))[0] == 200

    other_key = _other_key()
    bad = {
        "wrong key": jwt.encode({"iat": now, "exp": now + 60, "iss": str(twin.app_id)}, other_key, "RS256"),
        "wrong iss": jwt.encode({"iat": now, "exp": now + 60, "iss": "1"}, twin.private_key_pem, "RS256"),
        "too long": jwt.encode({"iat": now, "exp": now + 3600, "iss": str(twin.app_id)}, twin.private_key_pem, "RS256"),
        "11 min ahead": jwt.encode(
            {"iat": now - 60, "exp": now + 660, "iss": str(twin.app_id)}, twin.private_key_pem, "RS256"
        ),
        "from the future": jwt.encode(
            {"iat": now + 300, "exp": now + 600, "iss": str(twin.app_id)}, twin.private_key_pem, "RS256"
        ),
        "no iss": jwt.encode({"iat": now, "exp": now + 60}, twin.private_key_pem, "RS256"),
        "expired": jwt.encode(
            {"iat": now - 900, "exp": now - 400, "iss": str(twin.app_id)}, twin.private_key_pem, "RS256"
        ),
        "hs256": jwt.encode({"iat": now, "exp": now + 60, "iss": str(twin.app_id)}, "x" * 32, "HS256"),
    }
    for name, token in bad.items():
        status, body, _ = await api.call("GET", "/app", f"Bearer {token}")
        assert (status, body["message"]) == (401, "Bad credentials"), name
    installation_token = await api.token(iid)
    assert (await api.call("GET", "/app", f"token {installation_token}"))[0] == 401
    assert (await api.call("GET", f"/repos/{REPO}", f"Bearer {twin.app_jwt()}"))[0] == 401


def _sign_rs256(claims: dict[str, Any], pem: str) -> str:
    """A JWT signed by hand (PyJWT refuses a numeric ``iss``, which GitHub accepts)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    signature = key.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    return head + "." + b64(signature)


def _other_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def test_token_minting_expiry_and_revocation(twin, api, iid):
    twin.token_ttl = 0.3
    status, body, _ = await api.call("POST", f"/app/installations/{iid}/access_tokens", f"Bearer {twin.app_jwt()}")
    assert status == 201 and body["token"].startswith("ghs_") and body["expires_at"].endswith("Z")
    assert body["repository_selection"] == "all" and body["permissions"]["contents"] == "write"
    assert twin.token_requests == {iid: 1}
    token = body["token"]
    assert (await api.call("GET", f"/repos/{REPO}", f"token {token}"))[0] == 200
    assert (await api.call("GET", f"/repos/{REPO}", f"Bearer {token}"))[0] == 200
    await asyncio.sleep(0.4)
    assert (await api.call("GET", f"/repos/{REPO}", f"token {token}"))[0] == 401

    twin.token_ttl = 3600
    fresh = await api.token(iid)
    assert twin.token_requests == {iid: 2}
    assert (await api.call("GET", f"/repos/{REPO}", f"token {fresh}"))[0] == 200
    twin.revoke_tokens()
    status, body, _ = await api.call("GET", f"/repos/{REPO}", f"token {fresh}")
    assert (status, body["message"]) == (401, "Bad credentials")
    assert (await api.call("POST", "/app/installations/999999/access_tokens", f"Bearer {twin.app_jwt()}"))[0] == 404


async def test_a_token_sees_only_its_installation(twin, api, iid):
    other = twin.add_installation(account="someone")
    twin.add_repo("someone/secret", installation_id=other)
    token = f"token {await api.token(iid)}"
    assert (await api.call("GET", "/repos/someone/secret", token))[0] == 404
    status, body, _ = await api.call("GET", "/installation/repositories", token)
    assert [r["full_name"] for r in body["repositories"]] == [REPO]


async def test_rate_limit_headers_count_down_per_installation(twin, api, iid):
    token = f"token {await api.token(iid)}"
    _, _, first = await api.call("GET", f"/repos/{REPO}", token)
    _, _, second = await api.call("GET", f"/repos/{REPO}/labels", token)
    assert int(first["x-ratelimit-remaining"]) - int(second["x-ratelimit-remaining"]) == 1
    assert second["x-ratelimit-resource"] == "core" and int(second["x-ratelimit-used"]) == 2
    _, body, _ = await api.call("GET", "/rate_limit", token)
    assert body["resources"]["core"]["used"] == 2


async def test_manifest_conversion(twin, api):
    assert (await api.call("POST", "/app-manifests/nope/conversions"))[0] == 404
    twin.add_manifest_code("abc123")
    status, body, _ = await api.call("POST", "/app-manifests/abc123/conversions")
    assert status == 201 and body["id"] == twin.app_id and body["pem"] == app_private_key_pem()
    assert body["webhook_secret"] == twin.webhook_secret and body["client_secret"]


# --- faults and caching -----------------------------------------------------------


async def test_fault_injection(twin, api, iid):
    token = f"token {await api.token(iid)}"
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=502, times=2)
    assert (await api.call("GET", f"/repos/{REPO}", token))[0] == 502
    assert (await api.call("GET", f"/repos/{REPO}/labels", token))[0] == 200
    assert (await api.call("GET", f"/repos/{REPO}", token))[0] == 502
    assert (await api.call("GET", f"/repos/{REPO}", token))[0] == 200
    twin.fail_next("*", r"/labels$", status=403, headers={"Retry-After": "3"})
    status, body, headers = await api.call("GET", f"/repos/{REPO}/labels", token)
    assert status == 403 and headers["Retry-After"] == "3"
    assert "secondary rate limit" in body["message"]
    twin.fail_next("GET", r"/labels$", status=429, body={"message": "slow down"})
    assert (await api.call("GET", f"/repos/{REPO}/labels", token))[1] == {"message": "slow down"}
    assert [r.status for r in twin.calls("repos/get")] == [502, 502, 200]


async def test_etag_answers_304_without_spending_rate_limit(twin, api, iid):
    token = f"token {await api.token(iid)}"
    status, _, headers = await api.call("GET", f"/repos/{REPO}", token)
    etag, remaining = headers["ETag"], headers["x-ratelimit-remaining"]
    status, body, again = await api.call("GET", f"/repos/{REPO}", token, headers={"If-None-Match": etag})
    assert (status, body) == (304, "")
    assert again["x-ratelimit-remaining"] == remaining
    status, _, _ = await api.call("GET", f"/repos/{REPO}", token, headers={"If-None-Match": '"stale"'})
    assert status == 200


# --- state ------------------------------------------------------------------------


async def test_contents_issues_labels_reactions(twin, api, iid):
    token = f"token {await api.token(iid)}"
    twin.set_permission(REPO, "alice", "maintain")
    status, body, _ = await api.call("GET", f"/repos/{REPO}/contents/src/app.py", token)
    assert status == 200 and base64.b64decode(body["content"]) == b"x = 1\n"
    status, body, _ = await api.call("GET", f"/repos/{REPO}/contents/src?ref=main", token)
    assert [e["path"] for e in body] == ["src/app.py"]
    assert (await api.call("GET", f"/repos/{REPO}/contents/missing.txt", token))[0] == 404
    _, body, _ = await api.call("GET", f"/repos/{REPO}/collaborators/alice/permission", token)
    assert (body["permission"], body["role_name"], body["user"]["login"]) == ("write", "maintain", "alice")

    number = twin.add_issue(REPO, title="Bug", body="b", user="alice", labels=["bug"])
    _, body, _ = await api.call("POST", f"/repos/{REPO}/issues/{number}/labels", token, json={"labels": ["triaged"]})
    assert [lb["name"] for lb in body] == ["bug", "triaged"]
    _, body, _ = await api.call("DELETE", f"/repos/{REPO}/issues/{number}/labels/bug", token)
    assert [lb["name"] for lb in body] == ["triaged"]
    _, comment, _ = await api.call("POST", f"/repos/{REPO}/issues/{number}/comments", token, json={"body": "hi"})
    assert comment["user"]["login"] == f"{twin.app_slug}[bot]"
    path = f"/repos/{REPO}/issues/comments/{comment['id']}"
    _, edited, _ = await api.call("PATCH", path, token, json={"body": "edited"})
    assert edited["body"] == "edited"
    statuses = [(await api.call("POST", f"{path}/reactions", token, json={"content": "eyes"}))[0] for _ in range(2)]
    assert statuses == [201, 200]
    _, issue, _ = await api.call("GET", f"/repos/{REPO}/issues/{number}", token)
    assert issue["comments"] == 1 and issue["labels"][0]["name"] == "triaged"
    assert twin.response_problems == []


async def test_check_runs_and_github_limits(twin, api, iid):
    token = f"token {await api.token(iid)}"
    _, branch, _ = await api.call("GET", f"/repos/{REPO}/branches/main", token)
    sha = branch["commit"]["sha"]
    run = {
        "name": "ci",
        "head_sha": sha,
        "status": "in_progress",
        "actions": [{"label": "Fix", "description": "Fix it", "identifier": "fix"}],
    }
    status, created, _ = await api.call("POST", f"/repos/{REPO}/check-runs", token, json=run)
    assert status == 201 and created["status"] == "in_progress"
    done = {"conclusion": "failure", "output": {"title": "1 failed", "summary": "boom"}}
    _, updated, _ = await api.call("PATCH", f"/repos/{REPO}/check-runs/{created['id']}", token, json=done)
    assert (updated["status"], updated["output"]["summary"]) == ("completed", "boom")
    _, listed, _ = await api.call("GET", f"/repos/{REPO}/commits/main/check-runs", token)
    assert listed["total_count"] == 1 and listed["check_runs"][0]["conclusion"] == "failure"
    _, suites, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}/check-suites", token)
    assert suites["check_suites"][0]["conclusion"] == "failure"
    assert suites["check_suites"][0]["id"] == created["check_suite"]["id"]
    assert twin.response_problems == []

    too_much = [
        {"output": {"title": "t", "summary": "x" * 65536}},
        {"actions": [{"label": f"a{i}", "description": "d", "identifier": f"i{i}"} for i in range(4)]},
        {"actions": [{"label": "x" * 21, "description": "d", "identifier": "i"}]},
        {"actions": [{"label": "l", "description": "x" * 41, "identifier": "i"}]},
        {"actions": [{"label": "l", "description": "d", "identifier": "x" * 21}]},
    ]
    for extra in too_much:
        with twin.expect_violations():
            status, body, _ = await api.call(
                "POST", f"/repos/{REPO}/check-runs", token, json={"name": "ci", "head_sha": sha, **extra}
            )
        assert status == 422, extra


# --- git over HTTP ---------------------------------------------------------------


async def git(*args: str, cwd: Path | None = None, check: bool = True) -> tuple[int, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd or Path.cwd()),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Alice",
        "GIT_AUTHOR_EMAIL": "alice@example.com",
        "GIT_COMMITTER_NAME": "Alice",
        "GIT_COMMITTER_EMAIL": "alice@example.com",
    }
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if check:
        assert proc.returncode == 0, f"git {' '.join(args)}: {text}"
    return proc.returncode or 0, text


async def test_clone_push_and_on_push(twin, api, iid, tmp_path):
    pushed: list[tuple[str, str, str]] = []

    async def ci(full_name: str, ref: str, sha: str) -> None:
        pushed.append((full_name, ref, sha))

    twin.on_push(ci)
    token = await api.token(iid)
    host = twin.git_url.removeprefix("http://")
    url = f"http://x-access-token:{token}@{host}/{REPO}.git"

    code, out = await git("clone", f"{twin.git_url}/{REPO}.git", str(tmp_path / "anon"), check=False)
    assert code != 0 and "could not read Username" in out
    code, out = await git(
        "clone", f"http://x-access-token:ghs_wrong@{host}/{REPO}.git", str(tmp_path / "bad"), check=False
    )
    assert code != 0 and "Authentication failed" in out

    work = tmp_path / "work"
    await git("clone", url, str(work))
    assert (work / "README.md").read_text() == "hi\n"
    await git("checkout", "-b", "fix", cwd=work)
    (work / "src" / "app.py").write_text("x = 2\n")
    (work / "big.bin").write_bytes(os.urandom(1_500_000))  # over http.postBuffer: a chunked push
    await git("commit", "-qam", "Fix x", cwd=work)
    await git("add", "big.bin", cwd=work)
    await git("commit", "-qm", "Add blob", cwd=work)
    await git("push", "origin", "fix", cwd=work)
    _, head = await git("rev-parse", "HEAD", cwd=work)
    assert pushed == [(REPO, "refs/heads/fix", head.strip())]

    auth = f"token {token}"
    status, pull, _ = await api.call(
        "POST", f"/repos/{REPO}/pulls", auth, json={"title": "Fix", "head": "fix", "base": "main"}
    )
    assert status == 201 and pull["head"]["sha"] == head.strip() and pull["changed_files"] == 2
    _, found, _ = await api.call("GET", f"/repos/{REPO}/pulls?head=octo-org:fix&state=open", auth)
    assert [p["number"] for p in found] == [pull["number"]]
    _, files, _ = await api.call("GET", f"/repos/{REPO}/pulls/{pull['number']}/files", auth)
    assert {f["filename"] for f in files} == {"src/app.py", "big.bin"}
    _, ref, _ = await api.call("GET", f"/repos/{REPO}/git/ref/heads/fix", auth)
    assert ref["object"]["sha"] == head.strip()
    assert twin.response_problems == []

    twin.revoke_tokens()
    code, out = await git("push", "origin", "fix:other", cwd=work, check=False)
    assert code != 0 and len(pushed) == 1


async def test_gzipped_fetch_negotiation(twin, iid, tmp_path):
    """Git gzips upload-pack requests over 1 KiB: many local commits mean many haves."""
    url = f"http://x-access-token:{twin.mint_token(iid)}@{twin.host}/{REPO}.git"
    local, other = tmp_path / "local", tmp_path / "other"
    await git("clone", "-q", url, str(local))
    await git("clone", "-q", url, str(other))
    _, base = await git("rev-parse", "HEAD", cwd=local)
    stream = []
    for i in range(200):
        parent = f"from {base.strip()}" if i == 0 else f"from :{i}"
        stream.append(
            f"commit refs/heads/local\nmark :{i + 1}\ncommitter A <a@b> {2_000_000_000 + i} +0000\n"
            f"data 4\nc{i:03}\n{parent}\n"
        )
    proc = await asyncio.create_subprocess_exec(
        "git", "fast-import", "--quiet", cwd=local, stdin=asyncio.subprocess.PIPE
    )
    await proc.communicate("".join(stream).encode())
    assert proc.returncode == 0
    (other / "new.txt").write_text("new\n")
    await git("add", "new.txt", cwd=other)
    await git("commit", "-qm", "New", cwd=other)
    await git("push", "-q", "origin", "HEAD:main", cwd=other)
    await git("fetch", "-q", "origin", cwd=local)
    _, theirs = await git("rev-parse", "origin/main", cwd=local)
    _, pushed = await git("rev-parse", "HEAD", cwd=other)
    assert theirs == pushed


# --- webhooks ---------------------------------------------------------------------


async def test_deliver_signs_like_github(twin):
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202, text="queued")

    app = web.Application()
    app.router.add_post("/webhooks", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        payload = {"action": "opened", "issue": {"number": 1}}
        status, text = await twin.deliver(f"http://127.0.0.1:{port}/webhooks", "issues", payload, delivery_id="d-1")
        await twin.deliver(f"http://127.0.0.1:{port}/webhooks", "ping", {"zen": "hi"}, secret="other")
    finally:
        await runner.cleanup()
    assert (status, text) == (202, "queued")
    headers, body = received[0]
    assert json.loads(body) == payload
    key = twin.webhook_secret.encode()
    assert headers["X-Hub-Signature-256"] == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature"] == "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
    assert headers["X-GitHub-Event"] == "issues" and headers["X-GitHub-Delivery"] == "d-1"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["X-GitHub-Hook-Installation-Target-ID"] == str(twin.app_id)
    assert headers["Content-Type"] == "application/json"
    headers, body = received[1]
    assert headers["X-Hub-Signature-256"] == "sha256=" + hmac.new(b"other", body, hashlib.sha256).hexdigest()
    assert len(headers["X-GitHub-Delivery"]) == 36


async def test_lists_are_paginated_with_link_headers(twin, api, iid):
    token = f"token {await api.token(iid)}"
    number = twin.add_issue(REPO, title="Chatty")
    for i in range(5):
        await api.call("POST", f"/repos/{REPO}/issues/{number}/comments", token, json={"body": f"c{i}"})
    path = f"/repos/{REPO}/issues/{number}/comments"
    _, first, headers = await api.call("GET", f"{path}?per_page=2", token)
    assert [c["body"] for c in first] == ["c0", "c1"]
    assert 'rel="next"' in headers["Link"] and "page=3" in headers["Link"]
    _, last, headers = await api.call("GET", f"{path}?per_page=2&page=3", token)
    assert [c["body"] for c in last] == ["c4"] and 'rel="next"' not in headers["Link"]
    _, _, headers = await api.call("GET", path, token)
    assert "Link" not in headers


async def test_pulls_reviews_and_review_comments(twin, api, iid):
    token = f"token {await api.token(iid)}"
    sha = twin.commit(REPO, "feature", {"src/app.py": "x = 3\n", "README.md": None}, "Feature")
    number = twin.add_pull(REPO, head="feature", title="Feature", user="alice")
    review = twin.add_review(REPO, number, "bob", "CHANGES_REQUESTED", "Please fix")
    first = twin.add_review_comment(REPO, number, "bob", "Why 3?", "src/app.py", line=1, review_id=review)

    _, pull, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}", token)
    assert (pull["head"]["sha"], pull["changed_files"], pull["user"]["login"]) == (sha, 2, "alice")
    _, files, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/files", token)
    assert {(f["filename"], f["status"]) for f in files} == {("src/app.py", "modified"), ("README.md", "removed")}
    _, reviews, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/reviews", token)
    assert [(r["state"], r["body"]) for r in reviews] == [("CHANGES_REQUESTED", "Please fix")]
    _, of_review, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/reviews/{review}/comments", token)
    assert [c["id"] for c in of_review] == [first]
    status, reply, _ = await api.call(
        "POST", f"/repos/{REPO}/pulls/{number}/comments/{first}/replies", token, json={"body": "Because"}
    )
    assert status == 201 and reply["in_reply_to_id"] == first
    _, comments, _ = await api.call("GET", f"/repos/{REPO}/pulls/{number}/comments", token)
    assert [c["body"] for c in comments] == ["Why 3?", "Because"]
    status, _, _ = await api.call(
        "POST", f"/repos/{REPO}/pulls/comments/{first}/reactions", token, json={"content": "+1"}
    )
    assert status == 201
    status, updated, _ = await api.call("PATCH", f"/repos/{REPO}/pulls/{number}", token, json={"state": "closed"})
    assert updated["state"] == "closed"
    _, open_pulls, _ = await api.call("GET", f"/repos/{REPO}/pulls", token)
    assert open_pulls == []
    _, commit, _ = await api.call("GET", f"/repos/{REPO}/commits/{sha}", token)
    assert commit["stats"]["deletions"] == 2 and commit["parents"]
    _, installation, _ = await api.call("GET", f"/repos/{REPO}/installation", f"Bearer {twin.app_jwt()}")
    assert installation["id"] == iid
    assert twin.response_problems == []
