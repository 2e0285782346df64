"""`issue_comment`: `/agent …` commands on issues and PRs (arrive with issue #3)."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context

router = routing.Router()
log = logging.getLogger("compound.handlers.comments")


@router.register("issue_comment", action="created")
async def on_issue_comment_created(event: sansio.Event, gh: Any, ctx: Context) -> None:
    body = (event.data["comment"].get("body") or "").lstrip()
    if body.startswith("/agent"):
        log.debug("/agent command on #%s", event.data["issue"]["number"])
