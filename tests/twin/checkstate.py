"""The rules of check suites, check runs, Actions runs and jobs, and job logs.

Shared by the REST handlers (runs Compound creates with its token), the
set-up helpers (``twin.add_check_run``) and the simulated CI: a suite per
(App, head sha), created with its first run; for the ``github-actions`` App a
workflow run per suite and a job per check run, with the check run's id.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import gitrepo
from .state import ACTIONS_SLUG, CheckRun, CheckSuite, Job, Repo, WorkflowRun, now_iso

if TYPE_CHECKING:
    from .server import GitHubTwin

# The suite's conclusion is its runs' worst, in this order (GitHub's).
CONCLUSION_ORDER = [
    "action_required",
    "cancelled",
    "timed_out",
    "failure",
    "startup_failure",
    "stale",
    "neutral",
    "success",
    "skipped",
]
WORKFLOW_NAME = "CI"
WORKFLOW_PATH = ".github/workflows/ci.yml"


def suite_for(twin: GitHubTwin, repo: Repo, app: str, head_sha: str, before: str | None = None) -> CheckSuite:
    """The App's suite for a commit, created with its first run (as GitHub does)."""
    for suite in repo.check_suites.values():
        if suite.head_sha == head_sha and suite.app == app:
            return suite
    branch = gitrepo.branch_of(repo.bare_path, head_sha)
    suite = CheckSuite(twin.state.next_id(), head_sha, branch, app=app, before=before)
    repo.check_suites[suite.id] = suite
    return suite


def workflow_run_for(twin: GitHubTwin, repo: Repo, suite: CheckSuite, actor: str | None = None) -> WorkflowRun:
    """The Actions workflow run of a github-actions suite (one per suite)."""
    for run in repo.workflow_runs.values():
        if run.suite_id == suite.id:
            return run
    number = len(repo.workflow_runs) + 1
    run = WorkflowRun(
        twin.state.next_id(),
        WORKFLOW_NAME,
        suite.head_sha,
        suite.head_branch,
        suite.id,
        number,
        workflow_id=1_000_000 + repo.id,
        path=WORKFLOW_PATH,
        actor=actor or repo.owner,
    )
    repo.workflow_runs[run.id] = run
    return run


def refresh_suite(repo: Repo, suite: CheckSuite) -> None:
    """Status and conclusion from the suite's runs; its workflow run and jobs follow."""
    runs = [r for r in repo.check_runs.values() if r.suite_id == suite.id]
    if runs and all(r.status == "completed" for r in runs):
        suite.status = "completed"
        conclusions = [r.conclusion for r in runs if r.conclusion]
        rank = {c: i for i, c in enumerate(CONCLUSION_ORDER)}
        suite.conclusion = min(conclusions, key=lambda c: rank.get(c, 99), default=None)
    else:
        suite.status = "in_progress" if any(r.status not in ("queued", "requested") for r in runs) else "queued"
        suite.conclusion = None
    suite.updated_at = now_iso()
    for run in runs:
        job = repo.jobs.get(run.id)
        if job is not None:
            job.status, job.conclusion = run.status, run.conclusion
            job.started_at = run.started_at or job.started_at
            job.completed_at = run.completed_at
    for workflow in repo.workflow_runs.values():
        if workflow.suite_id == suite.id:
            workflow.status, workflow.conclusion = suite.status, suite.conclusion
            workflow.updated_at = suite.updated_at


def set_state(run: CheckRun, status: str | None = None, conclusion: str | None = None) -> None:
    """Status/conclusion with GitHub's timestamps (a conclusion completes the run)."""
    if status is not None:
        run.status = status
    if conclusion:
        run.conclusion = conclusion
        run.status = "completed"
    run.started_at = run.started_at or now_iso()  # GitHub stamps queued runs too
    if run.status == "completed":
        run.completed_at = run.completed_at or now_iso()


def annotation(raw: dict[str, Any]) -> dict[str, Any]:
    """An annotation as stored: GitHub's defaults for the optional fields."""
    start = int(raw["start_line"])
    return {
        "path": raw["path"],
        "start_line": start,
        "end_line": int(raw.get("end_line") or start),
        "start_column": raw.get("start_column"),
        "end_column": raw.get("end_column"),
        "annotation_level": raw.get("annotation_level", "failure"),
        "title": raw.get("title"),
        "message": raw.get("message", ""),
        "raw_details": raw.get("raw_details"),
    }


def add_run(
    twin: GitHubTwin,
    repo: Repo,
    name: str,
    head_sha: str,
    *,
    app: str,
    status: str = "completed",
    conclusion: str | None = None,
    output: dict[str, Any] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    log: str | os.PathLike[str] | None = None,
    actor: str | None = None,
) -> CheckRun:
    """A check run of ``app`` (any App but the twin's); for GitHub Actions its job too."""
    suite = suite_for(twin, repo, app, head_sha)
    run = CheckRun(twin.state.next_id(), name, head_sha, suite.id, app=app, status="queued")
    run.output = {k: v for k, v in (output or {}).items() if k in ("title", "summary", "text")}
    run.annotations = [annotation(a) for a in annotations or []]
    run.external_id = str(run.id)
    set_state(run, status, conclusion)
    repo.check_runs[run.id] = run
    if app == ACTIONS_SLUG:
        workflow = workflow_run_for(twin, repo, suite, actor)
        run.html_url = f"{twin.git_url}/{repo.full_name}/actions/runs/{workflow.id}/job/{run.id}"
        run.details_url = run.html_url
        job = Job(run.id, workflow.id, name, head_sha, suite.head_branch)
        repo.jobs[job.id] = job
        if log is not None:
            store_log(twin, job, log)
        elif run.status == "completed":
            write_default_log(twin, job, name, 0 if run.conclusion == "success" else 1)
    else:
        run.details_url = f"https://{app}.example.com/{repo.full_name}/builds/{run.id}"
    refresh_suite(repo, suite)
    return run


def update_run(
    repo: Repo,
    run: CheckRun,
    *,
    status: str | None = None,
    conclusion: str | None = None,
    output: dict[str, Any] | None = None,
    annotations: list[dict[str, Any]] | None = None,
) -> None:
    set_state(run, status, conclusion)
    if output:
        run.output.update({k: v for k, v in output.items() if k in ("title", "summary", "text")})
    run.annotations.extend(annotation(a) for a in annotations or [])
    refresh_suite(repo, repo.check_suites[run.suite_id])


# --- job logs ---------------------------------------------------------------------


def log_path(twin: GitHubTwin, job: Job) -> Path:
    path = twin.root / "logs" / f"job-{job.id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def store_log(twin: GitHubTwin, job: Job, log: str | os.PathLike[str]) -> None:
    """The job's log, kept on disk: text as given, or a copy of a file."""
    path = log_path(twin, job)
    if isinstance(log, str):
        path.write_text(log, encoding="utf-8")
    else:
        shutil.copyfile(log, path)
    job.log_path = path


def stamp() -> str:
    """GitHub's log timestamp: seven fractional digits, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class JobLog:
    """Writes a job log as GitHub Actions does: every line behind a timestamp."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="\n")

    def line(self, text: str) -> None:
        self._file.write(f"{stamp()} {text}\n")

    def begin(self, command: str) -> None:
        for text in (
            "Current runner version: '2.317.0'",
            "##[group]Operating System",
            "Ubuntu",
            "22.04.4",
            "LTS",
            "##[endgroup]",
            f"##[group]Run {command}",
            command,
            "shell: /usr/bin/bash -e {0}",
            "##[endgroup]",
        ):
            self.line(text)

    def end(self, exit_code: int) -> None:
        if exit_code:
            self.line(f"##[error]Process completed with exit code {exit_code}.")
        else:
            self.line("Cleaning up orphan processes")
        self._file.close()


def write_default_log(twin: GitHubTwin, job: Job, command: str, exit_code: int) -> None:
    writer = JobLog(log_path(twin, job))
    writer.begin(command)
    writer.end(exit_code)
    job.log_path = writer.path
