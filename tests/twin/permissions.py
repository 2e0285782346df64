"""What an installation token may do: the permissions each operation needs.

From GitHub's "Permissions required for GitHub Apps": each operation lists
the sets of permissions that let a token call it (any one set will do). A
token that holds none of them gets 403 "Resource not accessible by
integration", with the sets in `x-accepted-github-permissions`
(`issues=write; pull_requests=write`), as GitHub answers.
"""

from __future__ import annotations

from collections.abc import Mapping

LEVELS = {"read": 1, "write": 2, "admin": 3}
NOT_ACCESSIBLE = "Resource not accessible by integration"

Needs = tuple[dict[str, str], ...]


def _one(permission: str, level: str) -> Needs:
    return ({permission: level},)


def _issue_or_pull(level: str) -> Needs:
    # Issue endpoints also serve pull requests (they are issues): either will do.
    return ({"issues": level}, {"pull_requests": level})


# Operations absent here need no permission beyond a valid token
# (rate limit, public users, the installation's repository list).
NEEDS: dict[str, Needs] = {
    "repos/get": _one("metadata", "read"),
    "repos/get-collaborator-permission-level": _one("metadata", "read"),
    "repos/get-content": _one("contents", "read"),
    "repos/get-branch": _one("contents", "read"),
    "git/get-ref": _one("contents", "read"),
    "repos/get-commit": _one("contents", "read"),
    "repos/create-commit-status": _one("statuses", "write"),
    "repos/get-combined-status-for-ref": _one("statuses", "read"),
    "repos/list-commit-statuses-for-ref": _one("statuses", "read"),
    "issues/create": _one("issues", "write"),
    "issues/list-for-repo": _one("issues", "read"),
    "issues/get": _issue_or_pull("read"),
    "issues/update": _issue_or_pull("write"),
    "issues/list-comments": _issue_or_pull("read"),
    "issues/create-comment": _issue_or_pull("write"),
    "issues/get-comment": _issue_or_pull("read"),
    "issues/update-comment": _issue_or_pull("write"),
    "issues/add-labels": _issue_or_pull("write"),
    "issues/remove-label": _issue_or_pull("write"),
    "issues/list-labels-for-repo": _issue_or_pull("read"),
    "issues/create-label": _issue_or_pull("write"),
    "reactions/create-for-issue-comment": _issue_or_pull("write"),
    "reactions/create-for-issue": _issue_or_pull("write"),
    "pulls/list": _one("pull_requests", "read"),
    "pulls/create": _one("pull_requests", "write"),
    "pulls/get": _one("pull_requests", "read"),
    "pulls/update": _one("pull_requests", "write"),
    "pulls/list-files": _one("pull_requests", "read"),
    "pulls/list-reviews": _one("pull_requests", "read"),
    "pulls/get-review": _one("pull_requests", "read"),
    "pulls/list-requested-reviewers": _one("pull_requests", "read"),
    "pulls/request-reviewers": _one("pull_requests", "write"),
    "pulls/list-comments-for-review": _one("pull_requests", "read"),
    "pulls/list-review-comments": _one("pull_requests", "read"),
    "pulls/get-review-comment": _one("pull_requests", "read"),
    "pulls/create-reply-for-review-comment": _one("pull_requests", "write"),
    "reactions/create-for-pull-request-review-comment": _one("pull_requests", "write"),
    "checks/create": _one("checks", "write"),
    "checks/update": _one("checks", "write"),
    "checks/get": _one("checks", "read"),
    "checks/list-annotations": _one("checks", "read"),
    "checks/list-for-ref": _one("checks", "read"),
    "checks/list-suites-for-ref": _one("checks", "read"),
    "checks/get-suite": _one("checks", "read"),
    "checks/list-for-suite": _one("checks", "read"),
    "actions/get-workflow-run": _one("actions", "read"),
    "actions/list-jobs-for-workflow-run": _one("actions", "read"),
    "actions/get-job-for-workflow-run": _one("actions", "read"),
    "actions/download-job-logs-for-workflow-run": _one("actions", "read"),
}


def holds(granted: Mapping[str, str], permission: str, level: str) -> bool:
    return LEVELS.get(granted.get(permission, ""), 0) >= LEVELS[level]


def refusal(operation_id: str, granted: Mapping[str, str]) -> str | None:
    """None if `granted` lets a token call the operation, else the accepted sets (the header's value)."""
    needs = NEEDS.get(operation_id)
    if not needs or any(all(holds(granted, p, lvl) for p, lvl in want.items()) for want in needs):
        return None
    return "; ".join(", ".join(f"{p}={lvl}" for p, lvl in want.items()) for want in needs)


def beyond(requested: Mapping[str, str], granted: Mapping[str, str]) -> list[str]:
    """The requested permissions the installation was not granted (at that level)."""
    return sorted(p for p, lvl in requested.items() if lvl not in LEVELS or not holds(granted, p, lvl))
