"""`pull_request`: a session PR closed or merged ends its session (issue #3 onward)."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context

router = routing.Router()
log = logging.getLogger("compound.handlers.pulls")


@router.register("pull_request", action="closed")
async def on_pull_request_closed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    pr = event.data["pull_request"]
    log.debug("PR #%s closed (merged=%s)", pr["number"], pr.get("merged"))
