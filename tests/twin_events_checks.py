"""Webhook payloads for checks, Actions and commit statuses (re-exported by twin_events).

Each starts from GitHub's published example of the event, takes the twin's
objects for everything it describes, and is validated against the official
schema. The simulated CI (``tests/twin/ci.py``) sends these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.twin import gitrepo, shapes, shapes_checks, shapes_pulls
from tests.twin.state import Repo
from tests.webhook_examples import example, validate

if TYPE_CHECKING:
    from tests.twin.server import GitHubTwin


def repo_of(twin: GitHubTwin, full_name: str) -> Repo:
    return twin._repo(full_name)


def common(twin: GitHubTwin, full_name: str, sender: str, installation_id: int) -> dict[str, Any]:
    """repository, sender and installation, as every App delivery carries them."""
    repo = repo_of(twin, full_name)
    return {
        "repository": shapes.repository(twin, repo, full=False) | {"has_discussions": False},
        "sender": shapes.user(twin, sender),
        "installation": {"id": installation_id, "node_id": shapes.node_id("Installation", installation_id)},
    }


def checked(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    payload.pop("organization", None)  # the example's organization is not the twin's
    validate(event, payload)
    return payload


def head_commit(repo: Repo, sha: str) -> dict[str, Any]:
    return shapes_checks.simple_commit(gitrepo.commit_sync(repo.bare_path, sha))


def _suite_json(twin: GitHubTwin, repo: Repo, suite_id: int) -> dict[str, Any]:
    suite = repo.check_suites[suite_id]
    return shapes_checks.check_suite(twin, repo, suite, head_commit(repo, suite.head_sha))


def check_run_event(
    twin: GitHubTwin,
    full_name: str,
    run_id: int,
    action: str,
    sender: str,
    installation_id: int,
    requested_action: str | None = None,
) -> dict[str, Any]:
    """`check_run.<action>` (created, completed, rerequested, requested_action) for a twin run.

    ``check_run.app`` is the owning App; ``check_suite`` and ``pull_requests``
    are the twin's (open pull requests whose head is the run's sha).
    """
    repo = repo_of(twin, full_name)
    run = repo.check_runs[run_id]
    payload = example("check_run", action)
    payload.update(common(twin, full_name, sender, installation_id))
    shaped = shapes_checks.check_run(twin, repo, run)
    suite = _suite_json(twin, repo, run.suite_id)
    shaped["check_suite"] = payload["check_run"]["check_suite"] | {
        key: suite[key]
        for key in (
            "id",
            "node_id",
            "head_branch",
            "head_sha",
            "status",
            "conclusion",
            "url",
            "before",
            "after",
            "pull_requests",
            "app",
            "created_at",
            "updated_at",
        )
    }
    payload["check_run"] = payload["check_run"] | shaped
    payload["check_run"].pop("deployment", None)
    payload["check_run"]["external_id"] = run.external_id or ""
    if action == "requested_action":
        payload["requested_action"] = {"identifier": requested_action or ""}
    return checked("check_run", payload)


def check_suite_completed(
    twin: GitHubTwin, full_name: str, suite_id: int, sender: str, installation_id: int
) -> dict[str, Any]:
    repo = repo_of(twin, full_name)
    payload = example("check_suite", "completed")
    payload.update(common(twin, full_name, sender, installation_id))
    suite = _suite_json(twin, repo, suite_id)
    suite.pop("repository")
    payload["check_suite"] = payload["check_suite"] | suite
    return checked("check_suite", payload)


def _workflow(twin: GitHubTwin, repo: Repo, workflow_id: int, name: str, path: str) -> dict[str, Any]:
    api = f"{twin.api_url}/repos/{repo.full_name}/actions/workflows/{workflow_id}"
    html = f"{twin.git_url}/{repo.full_name}"
    return {
        "badge_url": f"{html}/workflows/{name}/badge.svg",
        "created_at": repo.created_at,
        "html_url": f"{html}/blob/{repo.default_branch}/{path}",
        "id": workflow_id,
        "name": name,
        "node_id": shapes.node_id("Workflow", workflow_id),
        "path": path,
        "state": "active",
        "updated_at": repo.created_at,
        "url": api,
    }


def workflow_run_event(
    twin: GitHubTwin, full_name: str, run_id: int, action: str, sender: str, installation_id: int
) -> dict[str, Any]:
    """`workflow_run.<action>` (requested, completed) for a twin workflow run."""
    repo = repo_of(twin, full_name)
    run = repo.workflow_runs[run_id]
    payload = example("workflow_run", action)
    payload.update(common(twin, full_name, sender, installation_id))
    payload["workflow"] = _workflow(twin, repo, run.workflow_id, run.name, run.path)
    shaped = shapes_checks.workflow_run(twin, repo, run, head_commit(repo, run.head_sha))
    for key in ("referenced_workflows", "head_repository_id"):
        shaped.pop(key, None)
    payload["workflow_run"] = payload["workflow_run"] | shaped
    return checked("workflow_run", payload)


def workflow_run_completed(
    twin: GitHubTwin, full_name: str, run_id: int, sender: str, installation_id: int
) -> dict[str, Any]:
    return workflow_run_event(twin, full_name, run_id, "completed", sender, installation_id)


def workflow_job_event(
    twin: GitHubTwin, full_name: str, job_id: int, action: str, sender: str, installation_id: int
) -> dict[str, Any]:
    """`workflow_job.<action>` (queued, in_progress, completed); the job id is its check run's."""
    repo = repo_of(twin, full_name)
    payload = example("workflow_job", action)
    payload.update(common(twin, full_name, sender, installation_id))
    payload["workflow_job"] = payload["workflow_job"] | shapes_checks.job(twin, repo, repo.jobs[job_id])
    payload.pop("deployment", None)
    return checked("workflow_job", payload)


def _branches_containing(repo: Repo, sha: str) -> list[dict[str, Any]]:
    out = gitrepo.refs_sync(repo.bare_path)
    found = []
    for ref, tip in out.items():
        if not ref.startswith("refs/heads/"):
            continue
        contains = tip == sha or shapes_pulls._git_sync(repo, "merge-base", "--is-ancestor", sha, tip).returncode == 0
        if contains:
            found.append((ref.removeprefix("refs/heads/"), tip))
    return [
        {"name": n, "commit": {"sha": t, "url": f"{repo.full_name}:{t}"}, "protected": False}
        for n, t in sorted(found)[:10]
    ]


def status_event(
    twin: GitHubTwin,
    full_name: str,
    sha: str,
    context: str,
    state: str,
    sender: str,
    installation_id: int,
    description: str | None = None,
    target_url: str | None = None,
) -> dict[str, Any]:
    """The `status` event for a commit status; adds it to the twin unless the latest for the context is it."""
    repo = repo_of(twin, full_name)
    full_sha = gitrepo.resolve_sync(repo.bare_path, sha) or sha
    latest = next(
        (s for s in shapes_checks.latest_statuses(repo, full_sha) if s.context.lower() == context.lower()), None
    )
    if latest is None or (latest.state, latest.description, latest.target_url) != (state, description, target_url):
        latest = twin.add_status(full_name, full_sha, context, state, description, target_url, creator=sender)
    payload = example("status")
    payload.update(common(twin, full_name, sender, installation_id))
    branches = _branches_containing(repo, full_sha)
    for branch in branches:
        branch["commit"]["url"] = f"{twin.api_url}/repos/{repo.full_name}/commits/{branch['commit']['sha']}"
    payload.update(
        {
            "id": latest.id,
            "sha": full_sha,
            "name": repo.full_name,
            "target_url": latest.target_url,
            "context": latest.context,
            "description": latest.description,
            "state": latest.state,
            "commit": shapes_pulls.commit(twin, repo, gitrepo.commit_sync(repo.bare_path, full_sha)),
            "branches": branches,
            "created_at": latest.created_at,
            "updated_at": latest.updated_at,
        }
    )
    return checked("status", payload)
