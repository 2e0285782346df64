"""Actions workflow runs: a failed run on a session PR's head starts a CI fix round.

A completed workflow run means its jobs (check runs) are all done, so the
round may look at once; the round reads each failed job's log itself.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context, needs_github
from bot.sessions.ci import is_failing
from handlers.checks import ci_result

router = routing.Router()
log = logging.getLogger("compound.handlers.workflows")


@router.register("workflow_run", action="completed")
@needs_github
async def on_workflow_run_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    run = event.data["workflow_run"]
    await ci_result(
        ctx,
        event.data["repository"]["full_name"],
        run.get("head_sha"),
        failed=is_failing(run.get("conclusion")),
        settled=True,
        event="workflow_run",
    )


@router.register("workflow_job", action="completed")
async def on_workflow_job_completed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    # Each job is also a check run, whose `check_run.completed` does the work.
    job = event.data["workflow_job"]
    log.debug("workflow job %r: %s", job.get("name"), job.get("conclusion"))
