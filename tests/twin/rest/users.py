"""Users: the public profile of a user the twin knows (the App's bot user included)."""

from __future__ import annotations

from .. import shapes
from ..state import now_iso
from .base import ApiError, Call, Reply, operation


@operation("users/get-by-username")
async def get_user(call: Call) -> Reply:
    twin = call.twin
    login = call.params["username"]
    known = (
        login in twin.state.users
        or login == f"{twin.app_slug}[bot]"
        or any(login in repo.permissions for repo in twin.state.repos.values())
    )
    if not known:
        raise ApiError(404, "Not Found")
    profile = shapes.user(twin, login)
    profile.update(
        user_view_type="public",
        name=None,
        company=None,
        blog="",
        location=None,
        email=None,
        hireable=None,
        bio=None,
        public_repos=0,
        public_gists=0,
        followers=0,
        following=0,
        created_at=now_iso(),
        updated_at=now_iso(),
    )
    return Reply(200, profile)
