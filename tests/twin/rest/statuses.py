"""Commit statuses: create, list, and the combined status of a ref."""

from __future__ import annotations

from .. import gitrepo, shapes, shapes_checks
from ..state import CommitStatus, Repo
from .base import Call, Reply, operation, unprocessable
from .issues import bot_login

MAX_DESCRIPTION = 140


async def _sha(repo: Repo, ref: str) -> str:
    sha = await gitrepo.resolve(repo.bare_path, ref)
    if sha is None:
        raise unprocessable(f"No commit found for SHA: {ref}")
    return sha


@operation("repos/create-commit-status")
async def create_status(call: Call) -> Reply:
    repo = call.repo()
    wanted = call.params["sha"]
    sha = await gitrepo.resolve(repo.bare_path, wanted)
    if sha is None or not sha.startswith(wanted.lower()):
        raise unprocessable(f"No commit found for SHA: {wanted}")
    body = call.json
    description = body.get("description")
    if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
        raise unprocessable(
            "Validation Failed",
            {
                "resource": "Status",
                "code": "custom",
                "field": "description",
                "message": f"description is too long (maximum is {MAX_DESCRIPTION} characters)",
            },
        )
    status = CommitStatus(
        call.twin.state.next_id(),
        sha,
        body.get("context") or "default",
        body["state"],
        description,
        body.get("target_url"),
        bot_login(call),
    )
    repo.statuses.append(status)
    return Reply(201, shapes_checks.status(call.twin, repo, status))


@operation("repos/get-combined-status-for-ref")
async def combined_status(call: Call) -> Reply:
    repo = call.repo()
    sha = await _sha(repo, call.params["ref"])
    latest = shapes_checks.latest_statuses(repo, sha)
    api = f"{call.twin.api_url}/repos/{repo.full_name}"
    return Reply(
        200,
        {
            "state": shapes_checks.combined_state([s.state for s in latest]),
            "statuses": [shapes_checks.status(call.twin, repo, s, simple=True) for s in call.page(latest)],
            "sha": sha,
            "total_count": len(latest),
            "repository": shapes.repository(call.twin, repo),
            "commit_url": f"{api}/commits/{sha}",
            "url": f"{api}/commits/{sha}/status",
        },
    )


@operation("repos/list-commit-statuses-for-ref")
async def list_statuses(call: Call) -> Reply:
    repo = call.repo()
    sha = await _sha(repo, call.params["ref"])
    found = sorted((s for s in repo.statuses if s.sha == sha), key=lambda s: -s.id)
    return Reply(200, [shapes_checks.status(call.twin, repo, s) for s in call.page(found)])
