"""JSON shaped like GitHub's for the twin's records.

Each builder fills the fields the OpenAPI schema requires, with values GitHub
would plausibly send; URLs point back at the twin.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from .state import (
    CheckRun,
    CheckSuite,
    Comment,
    Installation,
    Issue,
    Label,
    Reaction,
    Repo,
    Review,
    ReviewComment,
)

if TYPE_CHECKING:
    from .server import GitHubTwin


def node_id(kind: str, ident: int) -> str:
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode().rstrip("=")


def user(twin: GitHubTwin, login: str, kind: str | None = None) -> dict[str, Any]:
    ident = twin.state.user_id(login)
    api = f"{twin.api_url}/users/{login}"
    if kind is None:
        kind = "Bot" if login.endswith("[bot]") else "User"
    return {
        "login": login,
        "id": ident,
        "node_id": node_id("User", ident),
        "avatar_url": f"{twin.git_url}/avatars/u/{ident}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{twin.git_url}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "site_admin": False,
    }


def app(twin: GitHubTwin) -> dict[str, Any]:
    return {
        "id": twin.app_id,
        "slug": twin.app_slug,
        "node_id": node_id("Integration", twin.app_id),
        "client_id": f"Iv1.{twin.app_id:016x}",
        "owner": user(twin, "octo-org", "Organization"),
        "name": twin.app_slug.replace("-", " ").title(),
        "description": "Compound's stand-in GitHub App",
        "external_url": "https://example.com/compound",
        "html_url": f"{twin.git_url}/apps/{twin.app_slug}",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": dict(twin.app_permissions),
        "events": ["issues", "issue_comment", "pull_request", "check_suite", "check_run", "push"],
        "installations_count": len(twin.state.installations),
    }


def installation(twin: GitHubTwin, inst: Installation) -> dict[str, Any]:
    return {
        "id": inst.id,
        "account": user(twin, inst.account, inst.account_type),
        "repository_selection": "all",
        "access_tokens_url": f"{twin.api_url}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{twin.api_url}/installation/repositories",
        "html_url": f"{twin.git_url}/organizations/{inst.account}/settings/installations/{inst.id}",
        "app_id": twin.app_id,
        "app_slug": twin.app_slug,
        "target_id": inst.account_id,
        "target_type": inst.account_type,
        "permissions": dict(twin.app_permissions),
        "events": app(twin)["events"],
        "single_file_name": None,
        "created_at": inst.created_at,
        "updated_at": inst.created_at,
        "suspended_by": user(twin, inst.account, inst.account_type) if inst.suspended_at else None,
        "suspended_at": inst.suspended_at,
    }


_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def repository(twin: GitHubTwin, repo: Repo, full: bool = False) -> dict[str, Any]:
    api = f"{twin.api_url}/repos/{repo.full_name}"
    html = f"{twin.git_url}/{repo.full_name}"
    inst = twin.state.installations[repo.installation_id]
    open_issues = sum(1 for i in repo.issues.values() if i.state == "open")
    body: dict[str, Any] = {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": user(twin, repo.owner, inst.account_type if inst.account == repo.owner else None),
        "private": repo.private,
        "visibility": "private" if repo.private else "public",
        "html_url": html,
        "description": None,
        "fork": False,
        "url": api,
        "clone_url": f"{html}.git",
        "git_url": f"git://{twin.host}/{repo.full_name}.git",
        "ssh_url": f"git@{twin.host}:{repo.full_name}.git",
        "svn_url": html,
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "license": None,
        "default_branch": repo.default_branch,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "size": 0,
        "open_issues": open_issues,
        "open_issues_count": open_issues,
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": False,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "pushed_at": repo.created_at,
        "created_at": repo.created_at,
        "updated_at": repo.created_at,
        "topics": [],
        "allow_forking": False,
        "is_template": False,
        "web_commit_signoff_required": False,
    }
    body.update({key: api + suffix for key, suffix in _REPO_URLS.items()})
    if full:
        body.update({"network_count": 0, "subscribers_count": 0})
    return body


def label(twin: GitHubTwin, repo: Repo, lb: Label) -> dict[str, Any]:
    return {
        "id": lb.id,
        "node_id": node_id("Label", lb.id),
        "url": f"{twin.api_url}/repos/{repo.full_name}/labels/{lb.name}",
        "name": lb.name,
        "description": lb.description,
        "color": lb.color,
        "default": False,
    }


def reaction(twin: GitHubTwin, r: Reaction) -> dict[str, Any]:
    return {
        "id": r.id,
        "node_id": node_id("Reaction", r.id),
        "user": user(twin, r.user),
        "content": r.content,
        "created_at": r.created_at,
    }


def reaction_rollup(url: str, reactions: list[Reaction]) -> dict[str, Any]:
    keys = {
        "+1": "+1",
        "-1": "-1",
        "laugh": "laugh",
        "confused": "confused",
        "heart": "heart",
        "hooray": "hooray",
        "eyes": "eyes",
        "rocket": "rocket",
    }
    counts = {key: sum(1 for r in reactions if r.content == c) for c, key in keys.items()}
    return {"url": url, "total_count": len(reactions), **counts}


def issue(twin: GitHubTwin, repo: Repo, it: Issue) -> dict[str, Any]:
    api = f"{twin.api_url}/repos/{repo.full_name}/issues/{it.number}"
    kind = "pull" if it.pull else "issues"
    body: dict[str, Any] = {
        "id": it.id,
        "node_id": node_id("Issue", it.id),
        "url": api,
        "repository_url": f"{twin.api_url}/repos/{repo.full_name}",
        "labels_url": f"{api}/labels{{/name}}",
        "comments_url": f"{api}/comments",
        "events_url": f"{api}/events",
        "html_url": f"{twin.git_url}/{repo.full_name}/{kind}/{it.number}",
        "number": it.number,
        "state": it.state,
        "state_reason": it.state_reason,
        "title": it.title,
        "body": it.body,
        "user": user(twin, it.user),
        "labels": [label(twin, repo, lb) for n in it.labels if (lb := repo.label(n))],
        "assignee": user(twin, it.assignees[0]) if it.assignees else None,
        "assignees": [user(twin, a) for a in it.assignees],
        "milestone": None,
        "locked": False,
        "active_lock_reason": None,
        "comments": sum(1 for c in repo.comments.values() if c.issue_number == it.number),
        "closed_at": it.closed_at,
        "created_at": it.created_at,
        "updated_at": it.updated_at,
        "author_association": association(repo, it.user),
        "reactions": reaction_rollup(f"{api}/reactions", it.reactions),
    }
    if it.pull:
        pulls = f"{twin.api_url}/repos/{repo.full_name}/pulls/{it.number}"
        body["pull_request"] = {
            "url": pulls,
            "html_url": body["html_url"],
            "diff_url": body["html_url"] + ".diff",
            "patch_url": body["html_url"] + ".patch",
            "merged_at": None,
        }
    return body


def association(repo: Repo, login: str) -> str:
    if login == repo.owner:
        return "OWNER"
    perm = repo.permissions.get(login, "none")
    return "COLLABORATOR" if perm in ("admin", "maintain", "write", "triage") else "NONE"


def comment(twin: GitHubTwin, repo: Repo, c: Comment) -> dict[str, Any]:
    api = f"{twin.api_url}/repos/{repo.full_name}/issues/comments/{c.id}"
    return {
        "id": c.id,
        "node_id": node_id("IssueComment", c.id),
        "url": api,
        "html_url": f"{twin.git_url}/{repo.full_name}/issues/{c.issue_number}#issuecomment-{c.id}",
        "issue_url": f"{twin.api_url}/repos/{repo.full_name}/issues/{c.issue_number}",
        "body": c.body,
        "user": user(twin, c.user),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "author_association": association(repo, c.user),
        "reactions": reaction_rollup(f"{api}/reactions", c.reactions),
    }


def review_comment(twin: GitHubTwin, repo: Repo, c: ReviewComment) -> dict[str, Any]:
    pulls = f"{twin.api_url}/repos/{repo.full_name}/pulls"
    html = f"{twin.git_url}/{repo.full_name}/pull/{c.pull_number}#discussion_r{c.id}"
    body = {
        "url": f"{pulls}/comments/{c.id}",
        "id": c.id,
        "node_id": node_id("PullRequestReviewComment", c.id),
        "pull_request_review_id": c.review_id,
        "diff_hunk": c.diff_hunk,
        "path": c.path,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "user": user(twin, c.user),
        "body": c.body,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "html_url": html,
        "pull_request_url": f"{pulls}/{c.pull_number}",
        "author_association": association(repo, c.user),
        "_links": {
            "self": {"href": f"{pulls}/comments/{c.id}"},
            "html": {"href": html},
            "pull_request": {"href": f"{pulls}/{c.pull_number}"},
        },
        "line": c.line,
        "original_line": c.line,
        "side": c.side,
        "position": c.line,
        "original_position": c.line,
        "reactions": reaction_rollup(f"{pulls}/comments/{c.id}/reactions", c.reactions),
    }
    if c.in_reply_to_id is not None:
        body["in_reply_to_id"] = c.in_reply_to_id
    return body


def review(twin: GitHubTwin, repo: Repo, r: Review) -> dict[str, Any]:
    pull = f"{twin.api_url}/repos/{repo.full_name}/pulls/{r.pull_number}"
    html = f"{twin.git_url}/{repo.full_name}/pull/{r.pull_number}#pullrequestreview-{r.id}"
    return {
        "id": r.id,
        "node_id": node_id("PullRequestReview", r.id),
        "user": user(twin, r.user),
        "body": r.body,
        "state": r.state,
        "commit_id": r.commit_id,
        "html_url": html,
        "pull_request_url": pull,
        "submitted_at": r.submitted_at,
        "author_association": association(repo, r.user),
        "_links": {"html": {"href": html}, "pull_request": {"href": pull}},
    }


def check_suite(twin: GitHubTwin, repo: Repo, s: CheckSuite, head_commit: dict[str, Any]) -> dict[str, Any]:
    """See shapes_checks.check_suite (checks, Actions and statuses live there)."""
    from .shapes_checks import check_suite as build

    return build(twin, repo, s, head_commit)


def check_run(twin: GitHubTwin, repo: Repo, r: CheckRun) -> dict[str, Any]:
    """See shapes_checks.check_run."""
    from .shapes_checks import check_run as build

    return build(twin, repo, r)


def error(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """GitHub's error body."""
    return {
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": str(status),
        **extra,
    }
