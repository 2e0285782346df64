"""Set-up helpers for other Apps' check runs and commit statuses (mixed into GitHubTwin)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import checkstate, gitrepo
from .state import ACTIONS_SLUG, CheckRun, CheckSuite, CommitStatus, Repo

if TYPE_CHECKING:
    from pathlib import Path

    from .state import State


class CheckSetup:
    """``add_check_run``, ``complete_check_run``, ``add_check_suite``, ``add_status``."""

    if TYPE_CHECKING:
        state: State
        root: Path
        app_slug: str

        def _repo(self, full_name: str) -> Repo: ...

    def _commit_sha(self, repo: Repo, rev: str) -> str:
        sha = gitrepo.resolve_sync(repo.bare_path, rev)
        if sha is None:
            raise KeyError(f"{repo.full_name} has no commit {rev}")
        return sha

    def add_check_run(
        self,
        full_name: str,
        head_sha: str,
        name: str,
        *,
        app: str = "ci-app",
        status: str = "completed",
        conclusion: str | None = "failure",
        output: dict[str, Any] | None = None,
        annotations: list[dict[str, Any]] | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> CheckRun:
        """A check run of another App (``"github-actions"``, ``"ci-app"``, any slug) on a commit.

        ``head_sha`` may be any revision (a branch name too). ``output`` holds
        title/summary/text; ``annotations`` dicts of path, start_line, end_line,
        annotation_level, message, title. For ``github-actions`` a workflow run
        (one per suite) and a job whose id is the run's are created too, and
        ``log`` (text, or a file to copy) is the job's log; a completed job
        without one gets a short log in GitHub's format. No webhook is sent.
        """
        if app == self.app_slug:
            raise ValueError("the twin's own App creates its runs through the API")
        repo = self._repo(full_name)
        sha = self._commit_sha(repo, head_sha)
        done = conclusion if status == "completed" else None
        if status == "completed" and not done:
            raise ValueError("a completed run needs a conclusion")
        return checkstate.add_run(
            self,  # type: ignore[arg-type]
            repo,
            name,
            sha,
            app=app,
            status=status,
            conclusion=done,
            output=output,
            annotations=annotations,
            log=log,
        )

    def complete_check_run(
        self,
        full_name: str,
        run_id: int,
        conclusion: str,
        output: dict[str, Any] | None = None,
        annotations: list[dict[str, Any]] | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> CheckRun:
        """Complete a queued or running check run (its suite, job and workflow run follow)."""
        repo = self._repo(full_name)
        run = repo.check_runs[run_id]
        checkstate.update_run(repo, run, conclusion=conclusion, output=output, annotations=annotations)
        job = repo.jobs.get(run.id)
        if job is not None and log is not None:
            checkstate.store_log(self, job, log)  # type: ignore[arg-type]
        elif job is not None and job.log_path is None:
            checkstate.write_default_log(self, job, run.name, 0 if conclusion == "success" else 1)  # type: ignore[arg-type]
        return run

    def add_check_suite(
        self,
        full_name: str,
        head_sha: str,
        *,
        app: str = ACTIONS_SLUG,
        conclusion: str = "startup_failure",
    ) -> CheckSuite:
        """A completed check suite of another App that holds no check run.

        What GitHub shows when a workflow could not start (``startup_failure``,
        an invalid workflow file): the conclusion is on the suite and, for
        ``github-actions``, on its workflow run, never on a check run or job.
        No webhook is sent.
        """
        if app == self.app_slug:
            raise ValueError("the twin's own App creates its suites through its check runs")
        repo = self._repo(full_name)
        sha = self._commit_sha(repo, head_sha)
        suite = checkstate.suite_for(self, repo, app, sha)  # type: ignore[arg-type]
        if any(r.suite_id == suite.id for r in repo.check_runs.values()):
            raise ValueError(f"{app} has check runs on {sha[:7]} already: their suite concludes from them")
        suite.status, suite.conclusion = "completed", conclusion
        if app == ACTIONS_SLUG:
            workflow = checkstate.workflow_run_for(self, repo, suite)  # type: ignore[arg-type]
            workflow.status, workflow.conclusion = suite.status, suite.conclusion
        return suite

    def add_status(
        self,
        full_name: str,
        sha: str,
        context: str,
        state: str,
        description: str | None = None,
        target_url: str | None = None,
        creator: str = "ci-app[bot]",
    ) -> CommitStatus:
        """A commit status (error, failure, pending, success) as another CI posts it."""
        if state not in ("error", "failure", "pending", "success"):
            raise ValueError(f"state must be error, failure, pending or success, not {state!r}")
        repo = self._repo(full_name)
        status = CommitStatus(
            self.state.next_id(), self._commit_sha(repo, sha), context, state, description, target_url, creator
        )
        self.state.user_id(creator)
        repo.statuses.append(status)
        return status
