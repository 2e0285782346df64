"""`pull_request.closed` on a session PR ends the session with its outcome."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context
from bot.store.sessions import DONE

router = routing.Router()
log = logging.getLogger("compound.handlers.pulls")


@router.register("pull_request", action="closed")
async def on_pull_request_closed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    pr = event.data["pull_request"]
    repo = event.data["repository"]["full_name"]
    session = await ctx.store.sessions.for_pr(repo, pr["number"])
    if session is None:
        return
    if session.active:
        # A round still queued or running has nothing left to work on.
        await ctx.store.sessions.request_stop(session.id)
        if ctx.sessions is not None and ctx.sessions.worker is not None:
            ctx.sessions.worker.stop_local(session.id)
    outcome = "merged" if pr.get("merged") else "closed"
    await ctx.store.sessions.update_session(session.id, status=DONE, outcome=outcome)
    if ctx.sessions is not None:
        await ctx.sessions.events.record(session, "session.closed", outcome=outcome)
    log.info("session %s %s with PR #%s", session.id, outcome, pr["number"])
