"""Reviews and review comments on a session PR start review-fix rounds (later issue)."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context

router = routing.Router()
log = logging.getLogger("compound.handlers.reviews")


@router.register("pull_request_review", action="submitted")
async def on_pull_request_review_submitted(event: sansio.Event, gh: Any, ctx: Context) -> None:
    log.debug("review %s on PR #%s", event.data["review"].get("state"), event.data["pull_request"]["number"])


@router.register("pull_request_review_comment", action="created")
async def on_pull_request_review_comment_created(event: sansio.Event, gh: Any, ctx: Context) -> None:
    log.debug("review comment on PR #%s", event.data["pull_request"]["number"])
