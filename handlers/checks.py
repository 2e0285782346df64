"""Check runs and suites: CI failures start fix rounds; Compound's buttons (later issues)."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context

router = routing.Router()
log = logging.getLogger("compound.handlers.checks")


@router.register("check_run", action="completed")
async def on_check_run_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    run = event.data["check_run"]
    log.debug("check run %r on %s: %s", run.get("name"), run.get("head_sha"), run.get("conclusion"))


@router.register("check_run", action="requested_action")
async def on_check_run_requested_action(event: sansio.Event, gh: Any, ctx: Context) -> None:
    log.debug("check run action %r", (event.data.get("requested_action") or {}).get("identifier"))


@router.register("check_run", action="rerequested")
async def on_check_run_rerequested(event: sansio.Event, gh: Any, ctx: Context) -> None:
    log.debug("check run %r re-requested", event.data["check_run"].get("name"))


@router.register("check_suite", action="completed")
async def on_check_suite_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    suite = event.data["check_suite"]
    log.debug("check suite on %s: %s", suite.get("head_sha"), suite.get("conclusion"))
