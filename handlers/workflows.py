"""Actions workflow runs and jobs: failed jobs' logs feed CI-fix rounds (later issue)."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context

router = routing.Router()
log = logging.getLogger("compound.handlers.workflows")


@router.register("workflow_run", action="completed")
async def on_workflow_run_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    run = event.data["workflow_run"]
    log.debug("workflow run %r on %s: %s", run.get("name"), run.get("head_sha"), run.get("conclusion"))


@router.register("workflow_job", action="completed")
async def on_workflow_job_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    job = event.data["workflow_job"]
    log.debug("workflow job %r: %s", job.get("name"), job.get("conclusion"))
