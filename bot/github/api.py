"""Thin helpers over the REST API, each taking a gidgethub client first."""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

# Highest first. GitHub's `role_name` adds "maintain" and "triage", which the
# older `permission` field folds into "write" and "read".
PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
TRIGGER_PERMISSIONS = frozenset({"admin", "maintain", "write"})


async def permission(gh: GitHubAPI, owner: str, repo: str, username: str) -> str:
    """The user's permission on the repo: one of `PERMISSIONS`.

    A user GitHub does not know, or a repo the installation cannot see, is
    "none" (GitHub answers 404).
    """
    try:
        data: dict[str, Any] = await gh.getitem(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            {"owner": owner, "repo": repo, "username": username},
        )
    except gidgethub.BadRequest as exc:
        if exc.status_code == http.HTTPStatus.NOT_FOUND:
            return "none"
        raise
    role = data.get("role_name")
    if role in PERMISSIONS:
        return str(role)
    # A custom role (Enterprise) or an old server: fall back on the base level.
    level = data.get("permission")
    return str(level) if level in PERMISSIONS else "none"


def can_trigger(level: str) -> bool:
    """Whether someone with this permission may start agent work (docs/design.md §5)."""
    return level in TRIGGER_PERMISSIONS


async def comment(gh: Any, repo: str, number: int, body: str) -> None:
    owner, name = repo.split("/", 1)
    await gh.post(
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        {"owner": owner, "repo": name, "issue_number": number},
        data={"body": body},
    )


async def react(gh: Any, repo: str, *, issue_number: int | None = None, comment_id: int | None = None) -> None:
    """👀 on the comment (or the issue) that asked for work: "seen, on it"."""
    owner, name = repo.split("/", 1)
    if comment_id is not None:
        url, params = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", {"comment_id": comment_id}
    elif issue_number is not None:
        url, params = "/repos/{owner}/{repo}/issues/{issue_number}/reactions", {"issue_number": issue_number}
    else:
        raise TypeError("react() needs issue_number or comment_id")
    await gh.post(url, {"owner": owner, "repo": name, **params}, data={"content": "eyes"})


async def own_comment(gh: GitHubAPI, repo: str, number: int, matches: Callable[[str], bool]) -> dict[str, Any] | None:
    """The first comment a bot (Compound) left on the thread whose body `matches`."""
    owner, name = repo.split("/", 1)
    async for c in gh.getiter(
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        {"owner": owner, "repo": name, "issue_number": number},
    ):
        if (c.get("user") or {}).get("type") == "Bot" and matches(c.get("body") or ""):
            return dict(c)
    return None
