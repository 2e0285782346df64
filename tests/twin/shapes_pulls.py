"""GitHub-shaped JSON for pull requests and commits, without I/O.

The REST handlers compute what needs git (diff stats, mergeability) with the
asynchronous helpers; the webhook payload builders, which are synchronous,
with ``pull_stats_sync``. Both then build the same JSON here.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import gitrepo
from .shapes import issue as issue_json
from .shapes import node_id, repository, user
from .state import Issue, Repo

if TYPE_CHECKING:
    from .server import GitHubTwin

MERGEABLE_STATE = {True: "clean", False: "dirty", None: "unknown"}


@dataclass
class PullStats:
    commits: int
    additions: int
    deletions: int
    changed_files: int


def commit(twin: GitHubTwin, repo: Repo, c: gitrepo.Commit) -> dict[str, Any]:
    """The `commit` schema (without `files`/`stats`)."""
    api = f"{twin.api_url}/repos/{repo.full_name}"
    return {
        "sha": c.sha,
        "node_id": node_id("Commit", int(c.sha[:8], 16)),
        "url": f"{api}/commits/{c.sha}",
        "html_url": f"{twin.git_url}/{repo.full_name}/commit/{c.sha}",
        "comments_url": f"{api}/commits/{c.sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{c.sha}",
            "author": {"name": c.author_name, "email": c.author_email, "date": c.author_date},
            "committer": {"name": c.committer_name, "email": c.committer_email, "date": c.committer_date},
            "message": c.message,
            "comment_count": 0,
            "tree": {"sha": c.tree, "url": f"{api}/git/trees/{c.tree}"},
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        },
        "author": None,
        "committer": None,
        "parents": [
            {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{twin.git_url}/{repo.full_name}/commit/{p}"}
            for p in c.parents
        ],
    }


def pull(
    twin: GitHubTwin,
    repo: Repo,
    it: Issue,
    stats: PullStats | None = None,
    mergeable: bool | None = None,
    mergeable_state: str | None = None,
) -> dict[str, Any]:
    """`pull-request` with ``stats``, else `pull-request-simple`."""
    pr = it.pull
    assert pr is not None
    body = issue_json(twin, repo, it)
    api = f"{twin.api_url}/repos/{repo.full_name}"
    html = f"{twin.git_url}/{repo.full_name}/pull/{it.number}"
    owner = user(twin, repo.owner)
    repo_json = repository(twin, repo)

    def side(ref: str, sha: str) -> dict[str, Any]:
        return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": owner, "repo": repo_json}

    links = {
        "self": {"href": f"{api}/pulls/{it.number}"},
        "html": {"href": html},
        "issue": {"href": f"{api}/issues/{it.number}"},
        "comments": {"href": f"{api}/issues/{it.number}/comments"},
        "review_comments": {"href": f"{api}/pulls/{it.number}/comments"},
        "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
        "commits": {"href": f"{api}/pulls/{it.number}/commits"},
        "statuses": {"href": f"{api}/statuses/{pr.head_sha}"},
    }
    for key in (
        "comments",
        "reactions",
        "state_reason",
        "pull_request",
        "events_url",
        "labels_url",
        "repository_url",
        "comments_url",
    ):
        body.pop(key, None)
    body.update(
        {
            "id": pr.id,
            "node_id": node_id("PullRequest", pr.id),
            "url": f"{api}/pulls/{it.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{it.number}",
            "commits_url": f"{api}/pulls/{it.number}/commits",
            "review_comments_url": f"{api}/pulls/{it.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{it.number}/comments",
            "statuses_url": f"{api}/statuses/{pr.head_sha}",
            "head": side(pr.head_ref, pr.head_sha),
            "base": side(pr.base_ref, pr.base_sha),
            "_links": links,
            "draft": pr.draft,
            "merged_at": None,
            "merge_commit_sha": None,
            "auto_merge": None,
            "requested_reviewers": [user(twin, login) for login in pr.requested_reviewers],
            "requested_teams": [],
        }
    )
    if stats is not None:
        body.update(
            {
                "merged": pr.merged,
                "mergeable": mergeable,
                "rebaseable": mergeable,
                "mergeable_state": mergeable_state or MERGEABLE_STATE[mergeable],
                "merged_by": None,
                "comments": sum(1 for c in repo.comments.values() if c.issue_number == it.number),
                "review_comments": sum(1 for c in repo.review_comments.values() if c.pull_number == it.number),
                "maintainer_can_modify": pr.maintainer_can_modify,
                "commits": stats.commits,
                "additions": stats.additions,
                "deletions": stats.deletions,
                "changed_files": stats.changed_files,
            }
        )
    return body


def _git_sync(repo: Repo, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", f"--git-dir={repo.bare_path}", *args], env={**os.environ, **gitrepo.GIT_ENV}, capture_output=True
    )


def pull_stats_sync(repo: Repo, it: Issue) -> tuple[PullStats, bool | None]:
    """Diff stats and mergeability of a pull request, blocking (for payload builders)."""
    pr = it.pull
    assert pr is not None
    base = _git_sync(repo, "merge-base", pr.base_sha, pr.head_sha).stdout.decode().strip() or pr.base_sha
    numstat = _git_sync(repo, "diff", "--numstat", "--no-renames", base, pr.head_sha).stdout.decode()
    rows = [line.split("\t", 2) for line in numstat.splitlines() if line]
    count = _git_sync(repo, "rev-list", "--count", f"{pr.base_sha}..{pr.head_sha}").stdout.decode().strip()
    stats = PullStats(
        commits=int(count or 0),
        additions=sum(int(a) for a, _, _ in rows if a != "-"),
        deletions=sum(int(d) for _, d, _ in rows if d != "-"),
        changed_files=len(rows),
    )
    merge = _git_sync(repo, "merge-tree", "--write-tree", "--name-only", pr.base_sha, pr.head_sha)
    return stats, {0: True, 1: False}.get(merge.returncode)
