"""Webhook payloads that match the twin's state, shaped like GitHub's own.

The envelope comes from GitHub's published example of the event; the objects
in it (issue, comment, label, repository, sender, installation) are the twin's,
so a handler that reads the payload and then calls the twin sees one world.
Every payload built here is checked against the official webhook schema.
"""

from __future__ import annotations

from typing import Any

from tests.twin import shapes
from tests.twin.server import GitHubTwin
from tests.webhook_examples import example, validate


def _repo(twin: GitHubTwin, full_name: str) -> Any:
    return twin._repo(full_name)


def _common(twin: GitHubTwin, full_name: str, sender: str, installation_id: int) -> dict[str, Any]:
    repo = _repo(twin, full_name)
    return {
        "repository": shapes.repository(twin, repo, full=False) | {"has_discussions": False},
        "sender": shapes.user(twin, sender),
        "installation": {"id": installation_id, "node_id": shapes.node_id("Installation", installation_id)},
    }


def _checked(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    validate(event, payload)
    return payload


def issue_labeled(twin: GitHubTwin, full_name: str, number: int, label: str, sender: str, installation_id: int) -> dict[str, Any]:
    repo = _repo(twin, full_name)
    issue = repo.issues[number]
    if label not in issue.labels:
        if repo.label(label) is None:
            twin.add_label(full_name, label)
        issue.labels.append(label)
    payload = example("issues", "labeled")
    payload.update(_common(twin, full_name, sender, installation_id))
    payload["issue"] = shapes.issue(twin, repo, issue)
    payload["label"] = shapes.label(twin, repo, repo.label(label))
    return _checked("issues", payload)


def comment_created(twin: GitHubTwin, full_name: str, number: int, body: str, sender: str, installation_id: int) -> dict[str, Any]:
    """Adds the comment to the twin (as `sender`) and returns its `issue_comment.created`."""
    repo = _repo(twin, full_name)
    comment = twin.add_comment(full_name, number, body, user=sender)
    payload = example("issue_comment", "created")
    payload.update(_common(twin, full_name, sender, installation_id))
    payload["issue"] = shapes.issue(twin, repo, repo.issues[number])  # PRs are issues too
    payload["comment"] = shapes.comment(twin, repo, comment) | {"performed_via_github_app": None}
    return _checked("issue_comment", payload)


def check_run_action(twin: GitHubTwin, full_name: str, run_id: int, action: str | None, sender: str, installation_id: int) -> dict[str, Any]:
    """`check_run.requested_action` (a button press) or, with action None, `check_run.rerequested`."""
    repo = _repo(twin, full_name)
    run = repo.check_runs[run_id]
    payload = example("check_run", "requested_action" if action else "rerequested")
    payload.update(_common(twin, full_name, sender, installation_id))
    shaped = shapes.check_run(twin, repo, run)
    suite = repo.check_suites.get(run.suite_id)
    shaped["check_suite"] = payload["check_run"]["check_suite"] | {
        "id": run.suite_id, "head_sha": run.head_sha, "head_branch": suite.head_branch if suite else None,
        "app": shaped["app"], "pull_requests": [],
    }
    payload["check_run"] = payload["check_run"] | shaped
    if action:
        payload["requested_action"] = {"identifier": action}
    return payload
