"""Simulated CI: other Apps' check runs (GitHub Actions, a third-party CI) on every push.

    twin.ci.configure("octo-org/hello", checks=[
        {"name": "typecheck", "command": "python -m mypy .", "app": "github-actions"},
        {"name": "lint", "command": "ruff check .", "app": "ci-app"},
    ], deliver_to=service_url, secret=webhook_secret)
    ...  # git push
    await twin.ci.idle()                  # every run finished, every webhook delivered
    twin.ci.results[sha]                  # [("typecheck", "failure"), ("lint", "success")]

For each pushed branch of a configured repository, in a background task (the
push answers at once): the commit's tree is exported to a temporary directory
and each check's shell command runs there (minimal environment, a timeout);
the exit status gives the conclusion, ``path:line[:col]: message`` lines
about files of the checkout give annotations, and GitHub Actions jobs get a
log in GitHub's format. The records are created like ``twin.add_check_run``
and the webhooks are sent in GitHub's order, built by ``tests/twin_events.py``:
``workflow_run.requested``; per run ``check_run.created`` (and
``workflow_job.queued``); per Actions job ``workflow_job.in_progress``; per
run ``check_run.completed`` (and ``workflow_job.completed``); one
``check_suite.completed`` per App's suite; ``workflow_run.completed``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import shutil
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import checkstate, gitrepo, webhooks
from .state import ACTIONS_SLUG, CheckRun, Repo

if TYPE_CHECKING:
    from .server import GitHubTwin

log = logging.getLogger(__name__)
ANNOTATION = re.compile(r"^(?:\./)?(?P<path>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)?\s*(?P<message>\S.*)$")
MAX_ANNOTATIONS = 50
TAIL_LINES = 60
TEXT_LIMIT = 65535  # GitHub's limit on a check run's output text


@dataclass
class Check:
    name: str
    command: str
    app: str = ACTIONS_SLUG
    timeout: float | None = None


@dataclass
class Pipeline:
    full_name: str
    checks: list[Check]
    deliver_to: str
    secret: str
    installation_id: int
    delay: float
    repeat: int
    timeout: float


@dataclass
class Delivery:
    event: str
    action: str | None
    delivery_id: str
    status: int  # the receiver's answer; 0 when it could not be reached


@dataclass
class Outcome:
    exit_code: int | None  # None: timed out
    tail: list[str] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)


def sender_of(app: str) -> str:
    return f"{app}[bot]"


class SimulatedCI:
    """``twin.ci``: configure per repository; ``idle()`` waits for all of it."""

    def __init__(self, twin: GitHubTwin) -> None:
        self.twin = twin
        self.pipelines: dict[str, Pipeline] = {}
        self.results: dict[str, list[tuple[str, str]]] = {}
        self.deliveries: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._hooked = False

    def configure(
        self,
        full_name: str,
        checks: list[dict[str, Any]],
        deliver_to: str,
        secret: str | None = None,
        installation_id: int | None = None,
        delay: float = 0.2,
        repeat: int = 1,
        timeout: float = 120.0,
    ) -> None:
        """Run ``checks`` (name, command, app="github-actions", timeout) on every push.

        Webhooks go to ``deliver_to``, signed with ``secret`` (default: the
        twin's), for ``installation_id`` (default: the repository's). CI starts
        ``delay`` seconds after the push; ``repeat`` sends each completed event
        that many times with distinct delivery ids (GitHub redelivers).
        """
        repo = self.twin._repo(full_name)
        self.pipelines[full_name.lower()] = Pipeline(
            repo.full_name,
            [Check(**c) for c in checks],
            deliver_to,
            secret if secret is not None else self.twin.webhook_secret,
            installation_id if installation_id is not None else repo.installation_id,
            delay,
            max(repeat, 1),
            timeout,
        )
        if not self._hooked:
            self.twin.on_push(self._on_push)
            self._hooked = True

    async def _on_push(self, full_name: str, ref: str, sha: str) -> None:
        pipeline = self.pipelines.get(full_name.lower())
        if pipeline is None or not ref.startswith("refs/heads/"):
            return
        before = next((b for f, r, b, a in reversed(self.twin.pushes) if (f, r, a) == (full_name, ref, sha)), None)
        self.start(full_name, sha, ref, before)

    def start(self, full_name: str, sha: str, ref: str, before: str | None = None) -> asyncio.Task[None]:
        """Run the repository's CI on ``sha`` now, as a push would (for commits made with ``twin.commit``)."""
        pipeline = self.pipelines[full_name.lower()]
        task = asyncio.get_running_loop().create_task(self._run(pipeline, sha, ref, before))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def busy(self) -> int:
        """CI runs in flight (their webhooks not all delivered yet)."""
        return len(self._tasks)

    async def idle(self) -> None:
        """Wait until every CI run has finished and its webhooks are delivered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- one pipeline run ---------------------------------------------------------

    async def _run(self, pipeline: Pipeline, sha: str, ref: str, before: str | None) -> None:
        try:
            await self._pipeline(pipeline, sha, ref, before)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported through push_errors (fails the test)
            log.exception("simulated CI failed for %s %s", pipeline.full_name, sha)
            self.twin.push_errors.append(f"simulated CI {pipeline.full_name} {sha}: {exc!r}")

    async def _pipeline(self, pipeline: Pipeline, sha: str, ref: str, before: str | None) -> None:
        from tests import twin_events as events

        twin, name = self.twin, pipeline.full_name
        await asyncio.sleep(pipeline.delay)
        repo = twin._repo(name)
        workdir = twin.root / "ci" / f"{sha[:12]}-{uuid.uuid4().hex[:8]}"
        await gitrepo.export_tree(repo.bare_path, sha, workdir)
        try:
            runs = [
                checkstate.add_run(twin, repo, c.name, sha, app=c.app, status="queued", actor=repo.owner)
                for c in pipeline.checks
            ]
            suites = list(dict.fromkeys(r.suite_id for r in runs))
            for suite_id in suites:
                suite = repo.check_suites[suite_id]
                suite.before = suite.before or before
            workflows = list(dict.fromkeys(j.run_id for r in runs if (j := repo.jobs.get(r.id))))
            iid = pipeline.installation_id
            actions = sender_of(ACTIONS_SLUG)
            for workflow_id in workflows:
                await self._send(
                    pipeline,
                    "workflow_run",
                    events.workflow_run_event(twin, name, workflow_id, "requested", actions, iid),
                )
            for run in runs:
                await self._send(
                    pipeline,
                    "check_run",
                    events.check_run_event(twin, name, run.id, "created", sender_of(run.app), iid),
                )
                if run.id in repo.jobs:
                    await self._send(
                        pipeline, "workflow_job", events.workflow_job_event(twin, name, run.id, "queued", actions, iid)
                    )
            for run in runs:
                checkstate.update_run(repo, run, status="in_progress")
                if run.id in repo.jobs:
                    await self._send(
                        pipeline,
                        "workflow_job",
                        events.workflow_job_event(twin, name, run.id, "in_progress", actions, iid),
                    )
            outcomes = await asyncio.gather(
                *(
                    self._execute(pipeline, repo, check, run, workdir, sha, ref)
                    for check, run in zip(pipeline.checks, runs, strict=True)
                )
            )
            for check, run, outcome in zip(pipeline.checks, runs, outcomes, strict=True):
                self._complete(repo, check, run, outcome, pipeline)
            self.results[sha] = [(r.name, r.conclusion or "") for r in runs]
            times = pipeline.repeat
            for run in runs:
                await self._send(
                    pipeline,
                    "check_run",
                    events.check_run_event(twin, name, run.id, "completed", sender_of(run.app), iid),
                    times,
                )
                if run.id in repo.jobs:
                    await self._send(
                        pipeline,
                        "workflow_job",
                        events.workflow_job_event(twin, name, run.id, "completed", actions, iid),
                        times,
                    )
            for suite_id in suites:
                owner = sender_of(repo.check_suites[suite_id].app)
                await self._send(
                    pipeline, "check_suite", events.check_suite_completed(twin, name, suite_id, owner, iid), times
                )
            for workflow_id in workflows:
                await self._send(
                    pipeline,
                    "workflow_run",
                    events.workflow_run_completed(twin, name, workflow_id, actions, iid),
                    times,
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _execute(
        self, pipeline: Pipeline, repo: Repo, check: Check, run: CheckRun, workdir: Path, sha: str, ref: str
    ) -> Outcome:
        """Run one check's command in the checkout; its log streams to disk (Actions)."""
        job = repo.jobs.get(run.id)
        writer = checkstate.JobLog(checkstate.log_path(self.twin, job)) if job is not None else None
        if writer is not None:
            writer.begin(check.command)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_SHA": sha,
            "GITHUB_REF": ref,
            "GITHUB_REPOSITORY": repo.full_name,
        }
        if check.app == ACTIONS_SLUG:
            env["GITHUB_ACTIONS"] = "true"
        proc = await asyncio.create_subprocess_shell(
            check.command,
            cwd=workdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        outcome = Outcome(None)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

        async def read() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                tail.append(line)
                if writer is not None:
                    writer.line(line)
                found = _annotation(line, workdir, check.name)
                if found and len(outcome.annotations) < MAX_ANNOTATIONS:
                    outcome.annotations.append(found)
            outcome.exit_code = await proc.wait()

        try:
            await asyncio.wait_for(read(), check.timeout or pipeline.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        outcome.tail = list(tail)
        if writer is not None:
            if outcome.exit_code is None:
                writer.line("##[error]The operation was canceled.")
            writer.end(outcome.exit_code if outcome.exit_code is not None else 0)
            assert job is not None
            job.log_path = writer.path
        return outcome

    def _complete(self, repo: Repo, check: Check, run: CheckRun, outcome: Outcome, pipeline: Pipeline) -> None:
        code = outcome.exit_code
        if code is None:
            conclusion = "timed_out"
            summary = f"The job exceeded the maximum execution time of {check.timeout or pipeline.timeout:g} seconds."
        else:
            conclusion = "success" if code == 0 else "failure"
            summary = f"Process completed with exit code {code}."
        output: dict[str, Any] = {
            "title": f"{check.name} {'passed' if conclusion == 'success' else 'failed'}",
            "summary": summary,
        }
        if check.app != ACTIONS_SLUG and outcome.tail:
            output["text"] = ("```\n" + "\n".join(outcome.tail) + "\n```")[-TEXT_LIMIT:]
        checkstate.update_run(repo, run, conclusion=conclusion, output=output, annotations=outcome.annotations)

    async def _send(self, pipeline: Pipeline, event: str, payload: dict[str, Any], times: int = 1) -> None:
        for _ in range(times):
            delivery_id = str(uuid.uuid4())
            try:
                status, _ = await webhooks.deliver(
                    pipeline.deliver_to, event, payload, pipeline.secret, self.twin.app_id, delivery_id
                )
            except Exception as exc:  # noqa: BLE001 - a receiver that is gone is recorded, not fatal
                log.warning("simulated CI could not deliver %s to %s: %s", event, pipeline.deliver_to, exc)
                status = 0
            self.deliveries.append(Delivery(event, payload.get("action"), delivery_id, status))


def _annotation(line: str, workdir: Path, title: str) -> dict[str, Any] | None:
    """``path:line[:col]: message`` about a file of the checkout, as a failure annotation."""
    match = ANNOTATION.match(line.strip())
    if match is None:
        return None
    path = match["path"].strip()
    target = (workdir / path).resolve()
    if not target.is_file() or not target.is_relative_to(workdir.resolve()):
        return None
    message = match["message"].strip()
    level = "warning" if message.lower().startswith("warning") else "failure"
    found: dict[str, Any] = {
        "path": target.relative_to(workdir.resolve()).as_posix(),
        "start_line": int(match["line"]),
        "end_line": int(match["line"]),
        "annotation_level": level,
        "message": message,
        "title": title,
    }
    if match["col"]:
        found["start_column"] = found["end_column"] = int(match["col"])
    return found
