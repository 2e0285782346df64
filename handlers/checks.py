"""Check runs and suites: CI failures start fix rounds; Compound's buttons (later issues)."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.checks import CHECK_NAME
from bot.config import RepoConfig
from bot.context import Context, needs_github

router = routing.Router()
log = logging.getLogger("compound.handlers.checks")


@router.register("check_run", action="completed")
async def on_check_run_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    run = event.data["check_run"]
    log.debug("check run %r on %s: %s", run.get("name"), run.get("head_sha"), run.get("conclusion"))


async def _own_session(event: sansio.Event, gh: Any, ctx: Context) -> Any:
    """The session behind Compound's own check run, if the sender may act on it."""
    data = event.data
    run = data["check_run"]
    if run.get("name") != CHECK_NAME or (run.get("app") or {}).get("id") != ctx.settings.app_id:
        return None
    session = await ctx.store.sessions.get(run.get("external_id") or "")
    if session is None:
        return None
    config = RepoConfig.model_validate(session.config_data())
    if not await ctx.sessions.may_trigger(gh, session.repo, data["sender"], config):
        return None
    return session


@router.register("check_run", action="requested_action")
@needs_github
async def on_check_run_requested_action(event: sansio.Event, gh: Any, ctx: Context) -> None:
    session = await _own_session(event, gh, ctx)
    if session is None:
        return
    action = (event.data.get("requested_action") or {}).get("identifier")
    if action == "stop":
        await ctx.sessions.stop(session)
    elif action == "retry":
        await ctx.sessions.retry(session, event.data["sender"])


@router.register("check_run", action="rerequested")
@needs_github
async def on_check_run_rerequested(event: sansio.Event, gh: Any, ctx: Context) -> None:
    session = await _own_session(event, gh, ctx)
    if session is not None:
        await ctx.sessions.retry(session, event.data["sender"])


@router.register("check_suite", action="completed")
async def on_check_suite_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    suite = event.data["check_suite"]
    log.debug("check suite on %s: %s", suite.get("head_sha"), suite.get("conclusion"))
