"""`issues`: the trigger label starts a task session (sessions arrive with issue #3)."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context

router = routing.Router()
log = logging.getLogger("compound.handlers.issues")


@router.register("issues", action="labeled")
async def on_issues_labeled(event: sansio.Event, gh: Any, ctx: Context) -> None:
    label = (event.data.get("label") or {}).get("name")
    log.debug("issue #%s labeled %r", event.data["issue"]["number"], label)
