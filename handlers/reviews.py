"""Reviews and review comments on a session PR start one review-fix round per review.

GitHub sends one `pull_request_review_comment.created` per inline comment and
a `pull_request_review.submitted` for the review that holds them: all of them
name the same review id, which keys the round, so a review of ten comments is
one round. Only people with write access (and bots `allowed_bots` lists)
start one; Compound's own replies are bot comments and start nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.config import RepoConfig
from bot.context import Context, needs_github

router = routing.Router()
log = logging.getLogger("compound.handlers.reviews")


async def _session_and_admit(event: sansio.Event, gh: Any, ctx: Context) -> Any:
    data = event.data
    repo = data["repository"]["full_name"]
    session = await ctx.store.sessions.for_pr(repo, data["pull_request"]["number"])
    if session is None or session.pr_number is None or session.outcome is not None:
        return None
    sender = data["sender"]
    config = RepoConfig.model_validate(session.config_data())
    # Silent for others: a review comment is no request to Compound, so no refusal either.
    if not await ctx.sessions.may_trigger(gh, repo, sender, config):
        log.info(
            "review feedback from %s on #%s starts nothing (no write access, or a bot)",
            sender.get("login"),
            session.pr_number,
        )
        return None
    return session


@router.register("pull_request_review", action="submitted")
@needs_github
async def on_pull_request_review_submitted(event: sansio.Event, gh: Any, ctx: Context) -> None:
    review = event.data["review"]
    state = (review.get("state") or "").lower()
    if state not in ("changes_requested", "commented"):
        return  # an approval asks for nothing
    session = await _session_and_admit(event, gh, ctx)
    if session is None:
        return
    # A "commented" review without inline comments or text asks for nothing;
    # the round checks what the review holds before it runs the agent.
    await ctx.sessions.review_feedback(
        session,
        review_id=review["id"],
        reviewer=event.data["sender"],
        event="pull_request_review",
        state=state,
    )


@router.register("pull_request_review_comment", action="created")
@needs_github
async def on_pull_request_review_comment_created(event: sansio.Event, gh: Any, ctx: Context) -> None:
    comment = event.data["comment"]
    review_id = comment.get("pull_request_review_id")
    if not review_id:
        return
    session = await _session_and_admit(event, gh, ctx)
    if session is None:
        return
    await ctx.sessions.review_feedback(
        session,
        review_id=review_id,
        reviewer=event.data["sender"],
        event="pull_request_review_comment",
        state="commented",
    )
