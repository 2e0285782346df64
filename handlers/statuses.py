"""Commit statuses (CI services that report with the Statuses API): a failure on a
session PR's head starts a CI fix round, like a failed check run."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from bot.context import Context, needs_github
from bot.sessions.ci import FAILING_STATES
from handlers.checks import ci_result

router = routing.Router()


@router.register("status")
@needs_github
async def on_status(event: sansio.Event, gh: Any, ctx: Context) -> None:
    data = event.data
    state = data.get("state")
    if state == "pending":
        return
    await ci_result(
        ctx,
        data["repository"]["full_name"],
        data.get("sha"),
        failed=state in FAILING_STATES,
        settled=False,
        event="status",
    )
