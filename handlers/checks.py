"""Check runs and suites: a failure on a session PR's head starts a CI fix round;
Compound's own check run carries its Retry and Stop buttons.

Deciding costs no API call: the head is looked up in the store, and the round
itself (bot/sessions/preflight.py) reads what failed once the suite settled.
CI results count whoever sent them (Actions, other Apps, Compound's own push
started the CI), except Compound's own check run.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.checks import CHECK_NAME
from bot.config import RepoConfig
from bot.context import Context, needs_github, skip
from bot.sessions.ci import is_failing, is_own_run
from bot.sessions.manager import RERUN, RETRY_BUTTON

router = routing.Router()
log = logging.getLogger("compound.handlers.checks")


async def ci_result(ctx: Context, repo: str, head: str | None, *, failed: bool, settled: bool, event: str) -> None:
    """What every CI event comes down to: a result for a head (shared with workflows and statuses)."""
    if not head:
        return skip("no head commit")
    session = await ctx.store.sessions.for_head(repo, head)
    if session is None:
        return skip(f"not a trigger: no session has {head[:12]} as its head")
    if failed:
        await ctx.sessions.ci_failed(session, head, event=event, settled=settled)
    elif settled:
        await ctx.sessions.ci_settled(session, head)


@router.register("check_run", action="completed")
@needs_github
async def on_check_run_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    run = event.data["check_run"]
    if is_own_run(run, ctx.settings.app_id):
        return
    await ci_result(
        ctx,
        event.data["repository"]["full_name"],
        run.get("head_sha"),
        failed=is_failing(run.get("conclusion")),
        settled=False,
        event="check_run",
    )


@router.register("check_suite", action="completed")
@needs_github
async def on_check_suite_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    suite = event.data["check_suite"]
    if (suite.get("app") or {}).get("id") == ctx.settings.app_id:
        return skip("Compound's own check suite")  # it holds only Compound's own check runs
    await ci_result(
        ctx,
        event.data["repository"]["full_name"],
        suite.get("head_sha"),
        failed=is_failing(suite.get("conclusion")),
        settled=True,
        event="check_suite",
    )


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
        await ctx.sessions.retry(session, event.data["sender"], gh, asked=RETRY_BUTTON)


@router.register("check_run", action="rerequested")
@needs_github
async def on_check_run_rerequested(event: sansio.Event, gh: Any, ctx: Context) -> None:
    session = await _own_session(event, gh, ctx)
    if session is not None:
        await ctx.sessions.retry(session, event.data["sender"], gh, asked=RERUN)
