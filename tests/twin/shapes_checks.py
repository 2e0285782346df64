"""GitHub-shaped JSON for checks, Actions and commit statuses.

Split from ``shapes.py`` (which re-exports ``check_run`` and ``check_suite``);
the same rules apply: every field the OpenAPI schema requires, URLs that
point back at the twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import gitrepo
from .shapes import app as twin_app
from .shapes import node_id, repository, user
from .state import ACTIONS_SLUG, CheckRun, CheckSuite, CommitStatus, Issue, Job, Repo, WorkflowRun

if TYPE_CHECKING:
    from .server import GitHubTwin

ACTIONS_PERMISSIONS = {
    "actions": "write",
    "checks": "write",
    "contents": "write",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "packages": "write",
    "pull_requests": "write",
    "statuses": "write",
}
ACTIONS_EVENTS = ["check_run", "check_suite", "pull_request", "push", "workflow_dispatch"]


def owning_app(twin: GitHubTwin, slug: str) -> dict[str, Any]:
    """The `integration` JSON of the App ``slug`` (the twin's own App, or another)."""
    if slug == twin.app_slug:
        return twin_app(twin)
    other = twin.state.app(slug)
    actions = slug == ACTIONS_SLUG
    return {
        "id": other.id,
        "slug": other.slug,
        "node_id": node_id("Integration", other.id),
        "client_id": f"Iv1.{other.id:016x}",
        "owner": user(twin, other.owner, "Organization"),
        "name": other.name,
        "description": "Automate your workflow from idea to production"
        if actions
        else f"{other.name} runs your builds",
        "external_url": "https://help.github.com/en/actions" if actions else f"https://{other.slug}.example.com",
        "html_url": f"{twin.git_url}/apps/{other.slug}",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": dict(ACTIONS_PERMISSIONS)
        if actions
        else {"checks": "write", "metadata": "read", "statuses": "write"},
        "events": list(ACTIONS_EVENTS) if actions else ["check_suite", "pull_request", "push"],
    }


def open_pulls_for(repo: Repo, sha: str) -> list[Issue]:
    """The open pull requests whose head is ``sha`` (what GitHub lists on checks)."""
    return [i for i in repo.issues.values() if i.pull and i.state == "open" and i.pull.head_sha == sha]


def pull_minimal(twin: GitHubTwin, repo: Repo, issue: Issue) -> dict[str, Any]:
    pull = issue.pull
    assert pull is not None
    api = f"{twin.api_url}/repos/{repo.full_name}"
    short = {"id": repo.id, "url": api, "name": repo.name}
    return {
        "url": f"{api}/pulls/{issue.number}",
        "id": pull.id,
        "number": issue.number,
        "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": dict(short)},
        "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo": dict(short)},
    }


def simple_commit(c: gitrepo.Commit) -> dict[str, Any]:
    """The `simple-commit` (a suite's or workflow run's `head_commit`)."""
    return {
        "id": c.sha,
        "tree_id": c.tree,
        "message": c.message,
        "timestamp": c.committer_date,
        "author": {"name": c.author_name, "email": c.author_email},
        "committer": {"name": c.committer_name, "email": c.committer_email},
    }


def check_suite(twin: GitHubTwin, repo: Repo, s: CheckSuite, head_commit: dict[str, Any]) -> dict[str, Any]:
    runs = [r for r in repo.check_runs.values() if r.suite_id == s.id]
    return {
        "id": s.id,
        "node_id": node_id("CheckSuite", s.id),
        "head_branch": s.head_branch,
        "head_sha": s.head_sha,
        "status": s.status,
        "conclusion": s.conclusion,
        "url": f"{twin.api_url}/repos/{repo.full_name}/check-suites/{s.id}",
        "before": s.before,
        "after": s.head_sha,
        "pull_requests": [pull_minimal(twin, repo, i) for i in open_pulls_for(repo, s.head_sha)],
        "app": owning_app(twin, s.app),
        "repository": repository(twin, repo),
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "head_commit": head_commit,
        "latest_check_runs_count": len(runs),
        "check_runs_url": f"{twin.api_url}/repos/{repo.full_name}/check-suites/{s.id}/check-runs",
        "rerequestable": True,
        "runs_rerequestable": True,
    }


def check_run(twin: GitHubTwin, repo: Repo, r: CheckRun) -> dict[str, Any]:
    api = f"{twin.api_url}/repos/{repo.full_name}/check-runs/{r.id}"
    output = {
        "title": r.output.get("title"),
        "summary": r.output.get("summary"),
        "text": r.output.get("text"),
        "annotations_count": len(r.annotations),
        "annotations_url": f"{api}/annotations",
    }
    owner = owning_app(twin, r.app)
    return {
        "id": r.id,
        "node_id": node_id("CheckRun", r.id),
        "head_sha": r.head_sha,
        "external_id": r.external_id,
        "url": api,
        "html_url": r.html_url or f"{twin.git_url}/{repo.full_name}/runs/{r.id}",
        "details_url": r.details_url or owner["external_url"],  # GitHub: the App's homepage
        "status": r.status,
        "conclusion": r.conclusion,
        "started_at": r.started_at,
        "completed_at": r.completed_at,
        "output": output,
        "name": r.name,
        "check_suite": {"id": r.suite_id},
        "app": owner,
        "pull_requests": [pull_minimal(twin, repo, i) for i in open_pulls_for(repo, r.head_sha)],
        "actions": list(r.actions),
    }


def workflow_run(twin: GitHubTwin, repo: Repo, w: WorkflowRun, head_commit: dict[str, Any] | None) -> dict[str, Any]:
    api = f"{twin.api_url}/repos/{repo.full_name}"
    runs = f"{api}/actions/runs/{w.id}"
    repo_json = repository(twin, repo)
    return {
        "id": w.id,
        "name": w.name,
        "node_id": node_id("WorkflowRun", w.id),
        "check_suite_id": w.suite_id,
        "check_suite_node_id": node_id("CheckSuite", w.suite_id),
        "head_branch": w.head_branch,
        "head_sha": w.head_sha,
        "path": w.path,
        "run_number": w.run_number,
        "run_attempt": 1,
        "referenced_workflows": [],
        "event": w.event,
        "status": w.status,
        "conclusion": w.conclusion,
        "workflow_id": w.workflow_id,
        "url": runs,
        "html_url": f"{twin.git_url}/{repo.full_name}/actions/runs/{w.id}",
        "pull_requests": [pull_minimal(twin, repo, i) for i in open_pulls_for(repo, w.head_sha)],
        "created_at": w.created_at,
        "updated_at": w.updated_at,
        "actor": user(twin, w.actor),
        "triggering_actor": user(twin, w.actor),
        "run_started_at": w.run_started_at,
        "jobs_url": f"{runs}/jobs",
        "logs_url": f"{runs}/logs",
        "check_suite_url": f"{api}/check-suites/{w.suite_id}",
        "artifacts_url": f"{runs}/artifacts",
        "cancel_url": f"{runs}/cancel",
        "rerun_url": f"{runs}/rerun",
        "previous_attempt_url": None,
        "workflow_url": f"{api}/actions/workflows/{w.workflow_id}",
        "head_commit": head_commit,
        "repository": repo_json,
        "head_repository": repo_json,
        "head_repository_id": repo.id,
        "display_title": head_commit["message"].split("\n", 1)[0] if head_commit else w.name,
    }


def job(twin: GitHubTwin, repo: Repo, j: Job) -> dict[str, Any]:
    api = f"{twin.api_url}/repos/{repo.full_name}"
    run = repo.workflow_runs.get(j.run_id)
    assigned = j.status != "queued"
    step_status = j.status
    steps = [
        {
            "name": "Set up job",
            "status": step_status if step_status == "queued" else "completed",
            "conclusion": None if step_status == "queued" else "success",
            "number": 1,
            "started_at": j.started_at if assigned else None,
            "completed_at": j.started_at if assigned else None,
        },
        {
            "name": f"Run {j.name}",
            "status": step_status,
            "conclusion": j.conclusion,
            "number": 2,
            "started_at": j.started_at if assigned else None,
            "completed_at": j.completed_at,
        },
    ]
    return {
        "id": j.id,
        "run_id": j.run_id,
        "run_url": f"{api}/actions/runs/{j.run_id}",
        "run_attempt": 1,
        "node_id": node_id("Job", j.id),
        "head_sha": j.head_sha,
        "url": f"{api}/actions/jobs/{j.id}",
        "html_url": f"{twin.git_url}/{repo.full_name}/actions/runs/{j.run_id}/job/{j.id}",
        "status": j.status,
        "conclusion": j.conclusion,
        "created_at": j.created_at,
        "started_at": j.started_at,
        "completed_at": j.completed_at,
        "name": j.name,
        "steps": steps,
        "check_run_url": f"{api}/check-runs/{j.id}",
        "labels": ["ubuntu-latest"],
        "runner_id": 1 if assigned else None,
        "runner_name": "GitHub Actions 1" if assigned else None,
        "runner_group_id": 1 if assigned else None,
        "runner_group_name": "GitHub Actions" if assigned else None,
        "workflow_name": run.name if run else None,
        "head_branch": j.head_branch,
    }


def status(twin: GitHubTwin, repo: Repo, s: CommitStatus, simple: bool = False) -> dict[str, Any]:
    """A commit status (`status`; with ``simple``, `simple-commit-status`)."""
    creator = user(twin, s.creator)
    body = {
        "url": f"{twin.api_url}/repos/{repo.full_name}/statuses/{s.sha}",
        "avatar_url": creator["avatar_url"],
        "id": s.id,
        "node_id": node_id("StatusContext", s.id),
        "state": s.state,
        "description": s.description,
        "target_url": s.target_url,
        "context": s.context,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    }
    if not simple:
        body["creator"] = creator
    return body


def combined_state(states: list[str]) -> str:
    """GitHub's rule: failure if any failed or errored, pending if any pending (or none), else success."""
    if any(s in ("failure", "error") for s in states):
        return "failure"
    if not states or "pending" in states:
        return "pending"
    return "success"


def latest_statuses(repo: Repo, sha: str) -> list[CommitStatus]:
    """The newest status per context (contexts are case-insensitive), newest first."""
    latest: dict[str, CommitStatus] = {}
    for s in repo.statuses:
        if s.sha == sha:
            latest[s.context.lower()] = s  # appended in order: the last one wins
    return sorted(latest.values(), key=lambda s: -s.id)
