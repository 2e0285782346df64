"""Pushes to a branch that session PRs target: they may conflict now (a rebase round).

A push to any other branch costs nothing but one store query; the round
itself asks GitHub whether the PR still merges before it does anything.
"""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from bot.context import Context, needs_github

router = routing.Router()
BRANCH_PREFIX = "refs/heads/"


@router.register("push")
@needs_github
async def on_push(event: sansio.Event, gh: Any, ctx: Context) -> None:
    data = event.data
    ref = data.get("ref") or ""
    if not ref.startswith(BRANCH_PREFIX) or data.get("deleted"):
        return
    repo = data["repository"]["full_name"]
    ctx.configs.on_push(repo, data)  # `.github/compound.yml` changed: read it again on the next label
    for session in await ctx.store.sessions.with_base(repo, ref[len(BRANCH_PREFIX) :]):
        await ctx.sessions.base_moved(session, base_sha=data["after"])
