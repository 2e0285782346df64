"""Session PRs: closing ends the session; a push by someone else makes Compound stand
back; removing `agent:needs-human` resumes an escalated session; a PR GitHub says
no longer merges gets a rebase round."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context, needs_github
from bot.sessions.escalation import LABEL
from bot.store.sessions import DONE

router = routing.Router()
log = logging.getLogger("compound.handlers.pulls")


@router.register("pull_request", action="closed")
async def on_pull_request_closed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    pr = event.data["pull_request"]
    repo = event.data["repository"]["full_name"]
    session = await ctx.store.sessions.for_pr(repo, pr["number"])
    if session is None or session.outcome is not None:
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


@router.register("pull_request", action="synchronize")
@needs_github
async def on_pull_request_synchronize(event: sansio.Event, gh: Any, ctx: Context) -> None:
    data = event.data
    pr = data["pull_request"]
    head = (pr.get("head") or {}).get("sha") or data.get("after")
    session = await ctx.store.sessions.for_pr(data["repository"]["full_name"], pr["number"])
    if session is None or session.outcome is not None or not head or head == session.head_sha:
        return
    login = data["sender"].get("login", "")
    if ctx.sessions.is_compound(login):
        return  # Compound's own push, seen before its round recorded the new head
    await ctx.sessions.human_pushed(session, head=head, login=login)


@router.register("pull_request", action="unlabeled")
@needs_github
async def on_pull_request_unlabeled(event: sansio.Event, gh: Any, ctx: Context) -> None:
    data = event.data
    if (data.get("label") or {}).get("name") != LABEL:
        return
    session = await ctx.store.sessions.for_pr(data["repository"]["full_name"], data["pull_request"]["number"])
    await ctx.sessions.unlabeled(gh, session, data["sender"])


# Actions whose payload carries the PR's current mergeability (GitHub computes it
# in the background; it is often still null in the event, and then says nothing).
MERGEABILITY_ACTIONS = ("opened", "reopened", "synchronize", "edited", "ready_for_review", "labeled", "unlabeled")


@router.register("pull_request")
@needs_github
async def on_pull_request_mergeability(event: sansio.Event, gh: Any, ctx: Context) -> None:
    """`mergeable: false` / `mergeable_state: dirty` on a session PR: the base moved
    under it (perhaps by a push whose event never came), so a rebase round, which
    asks GitHub again before it touches anything. Once per base and head."""
    data = event.data
    pr = data["pull_request"]
    if data.get("action") not in MERGEABILITY_ACTIONS:
        return
    if pr.get("mergeable") is not False and pr.get("mergeable_state") != "dirty":
        return  # merges, or not computed yet: nothing to ask the store or GitHub
    session = await ctx.store.sessions.for_pr(data["repository"]["full_name"], pr["number"])
    base_sha = (pr.get("base") or {}).get("sha")
    if session is None or session.outcome is not None or not base_sha:
        return
    await ctx.sessions.base_moved(session, base_sha=base_sha, event=f"pull_request.{data['action']}")
