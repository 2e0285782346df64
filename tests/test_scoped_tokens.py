"""Least-privilege installation tokens: one repository, the permissions a use
needs. Compound's real GitHub client and git against the twin, on loopback."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import gidgethub
import pytest

from bot.github import GitHub, TokenScope
from bot.metrics import Metrics
from bot.sessions.rounds import ROUND_PERMISSIONS
from bot.settings import load_settings
from bot.workspace import CommitIdentity, GitError, Trailers, Workspaces

REPO = "octo/hello"
OTHER = "octo/other"
BOT = CommitIdentity("compound[bot]", "1+compound[bot]@users.noreply.github.com")
TRAILERS = Trailers(model="m", backend="command", session="s-1", co_author=BOT)


@pytest.fixture
async def github(twin):
    settings = load_settings(
        _env_file=None,
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET="s3cret",
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
    )
    async with aiohttp.ClientSession() as session:
        yield GitHub.from_settings(session, settings, Metrics())


@pytest.fixture
def iid(twin) -> int:
    iid = twin.add_installation(account="octo")
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "hello\n"})
    twin.add_repo(OTHER, installation_id=iid, files={"README.md": "other\n"})
    return iid


async def test_the_push_token_is_asked_for_one_repo_and_contents_write(twin, github, iid):
    token = await github.push_token(iid, REPO)
    (request,) = twin.token_log
    assert request.repositories == ["hello"] and request.repository_ids is None
    assert request.permissions == {"contents": "write"}
    assert twin.scope_of(token) == (frozenset({"hello"}), {"metadata": "read", "contents": "write"})
    # Cached per (installation, scope), like the installation's own token.
    assert await github.push_token(iid, REPO) == token and len(twin.token_log) == 1
    other = await github.push_token(iid, OTHER)
    assert other != token and twin.token_log[-1].repositories == ["other"]
    assert await github.tokens.get(iid) not in (token, other)  # the whole installation: a third
    assert [r.repositories for r in twin.token_log] == [["hello"], ["other"], None]


async def test_a_repository_client_reaches_that_repo_only_with_what_the_installation_has(twin, github, iid):
    del twin.app_permissions["statuses"]  # an installation that never accepted statuses:read
    gh = github.repository(iid, REPO, ROUND_PERMISSIONS)
    assert (await gh.getitem("/repos/{owner}/{repo}", {"owner": "octo", "repo": "hello"}))["full_name"] == REPO
    whole, scoped = twin.token_log
    assert (whole.repositories, whole.permissions) == (None, None)  # what was granted, once
    assert scoped.repositories == ["hello"]
    assert scoped.permissions == {k: v for k, v in ROUND_PERMISSIONS.items() if k != "statuses"}
    assert "contents" not in scoped.permissions or scoped.permissions["contents"] == "read"
    assert await gh.token_scope() == TokenScope.of(["hello"], scoped.permissions)
    with pytest.raises(gidgethub.BadRequest) as info:
        await gh.getitem("/repos/{owner}/{repo}", {"owner": "octo", "repo": "other"})
    assert info.value.status_code == 404
    # Another client for the same repo shares the token; a revoked one is
    # replaced by a token of the same scope.
    again = github.repository(iid, REPO, ROUND_PERMISSIONS)
    await again.getitem("/repos/{owner}/{repo}", {"owner": "octo", "repo": "hello"})
    assert len(twin.token_log) == 2
    twin.revoke_tokens()
    await again.getitem("/repos/{owner}/{repo}", {"owner": "octo", "repo": "hello"})
    assert twin.token_log[-1].repositories == ["hello"]
    assert twin.token_log[-1].permissions == scoped.permissions
    assert twin.requests[-1].repositories == frozenset({"hello"})


async def test_a_push_token_for_one_repo_cannot_push_or_fetch_another(twin, github, iid, tmp_path: Path):
    workspaces = Workspaces(tmp_path / "data", twin.git_url)
    mine = await github.push_token(iid, REPO)
    ws = await workspaces.open(REPO, "s-1", "compound/issue-1", mine)
    (ws.path / "fix.txt").write_text("fixed\n")
    head = await ws.commit("Fix it", BOT, TRAILERS, lambda _path: False)
    assert head is not None and await ws.push(mine) == head
    assert twin.push_scopes == [(REPO, frozenset({"hello"}), {"metadata": "read", "contents": "write"})]

    with pytest.raises(GitError):
        await workspaces.open(OTHER, "s-2", "compound/issue-2", mine)
    assert twin.git_refusals[-1] == (OTHER, "fetch", 404)
    # Even a mirror Compound already has: the push goes to the remote, which refuses it.
    theirs = await github.push_token(iid, OTHER)
    other = await workspaces.open(OTHER, "s-3", "compound/issue-3", theirs)
    (other.path / "x.txt").write_text("x\n")
    assert await other.commit("X", BOT, TRAILERS, lambda _path: False) is not None
    with pytest.raises(GitError) as info:
        await other.push(mine)
    assert mine not in str(info.value)
    assert twin.git_refusals[-1] == (OTHER, "push", 404)
    assert [p[0] for p in twin.pushes] == [REPO]
    await workspaces.close(ws)
    await workspaces.close(other)
