"""Thin helpers over the REST API, each taking a gidgethub client first."""

from __future__ import annotations

import http
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
    """Whether someone with this permission may start agent work (DESIGN §5)."""
    return level in TRIGGER_PERMISSIONS
