"""Pull requests, their files, reviews and review comments."""

from __future__ import annotations

from typing import Any

from .. import gitrepo, shapes
from ..state import Issue, Pull, Repo, ReviewComment, now_iso
from .base import ApiError, Call, Reply, not_found, operation, unprocessable
from .issues import bot_login, react
from .repos import diff_entry


def pull_of(call: Call, repo: Repo) -> Issue:
    issue = repo.issues.get(call.int_param("pull_number"))
    if issue is None or issue.pull is None:
        raise not_found()
    return issue


async def _refresh(repo: Repo, pull: Pull) -> None:
    """Follow pushes to the head branch, as GitHub does for open pulls."""
    sha = await gitrepo.resolve(repo.bare_path, f"refs/heads/{pull.head_ref}")
    if sha is not None:
        pull.head_sha = sha
    base = await gitrepo.resolve(repo.bare_path, f"refs/heads/{pull.base_ref}")
    if base is not None:
        pull.base_sha = base


async def pull_body(call: Call, repo: Repo, issue: Issue, full: bool = True) -> dict[str, Any]:
    twin = call.twin
    pull = issue.pull
    assert pull is not None
    await _refresh(repo, pull)
    body = shapes.issue(twin, repo, issue)
    api = f"{twin.api_url}/repos/{repo.full_name}"
    html = f"{twin.git_url}/{repo.full_name}/pull/{issue.number}"
    owner = shapes.user(twin, repo.owner)
    repo_json = shapes.repository(twin, repo)

    def side(ref: str, sha: str) -> dict[str, Any]:
        return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": owner, "repo": repo_json}

    links = {
        "self": {"href": f"{api}/pulls/{issue.number}"},
        "html": {"href": html},
        "issue": {"href": f"{api}/issues/{issue.number}"},
        "comments": {"href": f"{api}/issues/{issue.number}/comments"},
        "review_comments": {"href": f"{api}/pulls/{issue.number}/comments"},
        "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
        "commits": {"href": f"{api}/pulls/{issue.number}/commits"},
        "statuses": {"href": f"{api}/statuses/{pull.head_sha}"},
    }
    for key in ("comments", "reactions", "state_reason", "pull_request", "events_url",
                "labels_url", "repository_url", "comments_url"):
        body.pop(key, None)
    body.update(
        {
            "id": pull.id,
            "node_id": shapes.node_id("PullRequest", pull.id),
            "url": f"{api}/pulls/{issue.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{issue.number}",
            "commits_url": f"{api}/pulls/{issue.number}/commits",
            "review_comments_url": f"{api}/pulls/{issue.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{issue.number}/comments",
            "statuses_url": f"{api}/statuses/{pull.head_sha}",
            "head": side(pull.head_ref, pull.head_sha),
            "base": side(pull.base_ref, pull.base_sha),
            "_links": links,
            "draft": pull.draft,
            "merged_at": None,
            "merge_commit_sha": None,
            "auto_merge": None,
            "requested_reviewers": [],
            "requested_teams": [],
        }
    )
    if full:
        files = await gitrepo.diff_files(repo.bare_path, pull.base_sha, pull.head_sha)
        count = await gitrepo.git(repo.bare_path, "rev-list", "--count", f"{pull.base_sha}..{pull.head_sha}")
        body.update(
            {
                "merged": pull.merged,
                "mergeable": True,
                "rebaseable": True,
                "mergeable_state": "clean",
                "merged_by": None,
                "comments": sum(1 for c in repo.comments.values() if c.issue_number == issue.number),
                "review_comments": sum(1 for c in repo.review_comments.values() if c.pull_number == issue.number),
                "maintainer_can_modify": pull.maintainer_can_modify,
                "commits": int(count.decode().strip() or 0),
                "additions": sum(int(f["additions"]) for f in files),  # type: ignore[call-overload]
                "deletions": sum(int(f["deletions"]) for f in files),  # type: ignore[call-overload]
                "changed_files": len(files),
            }
        )
    return body


@operation("pulls/create")
async def create_pull(call: Call) -> Reply:
    repo = call.repo()
    body = call.json
    head = str(body.get("head", ""))
    head_ref = head.split(":", 1)[1] if ":" in head else head
    base_ref = str(body.get("base", ""))
    head_sha = await gitrepo.resolve(repo.bare_path, f"refs/heads/{head_ref}")
    base_sha = await gitrepo.resolve(repo.bare_path, f"refs/heads/{base_ref}")
    invalid = [
        {"resource": "PullRequest", "field": field, "code": "invalid"}
        for field, sha in (("head", head_sha), ("base", base_sha))
        if sha is None
    ]
    if invalid:
        raise unprocessable("Validation Failed", *invalid)
    assert head_sha is not None and base_sha is not None
    if head_sha == base_sha or not await gitrepo.git(repo.bare_path, "rev-list", f"{base_sha}..{head_sha}"):
        raise unprocessable("Validation Failed", {"resource": "PullRequest", "code": "custom", "message": f"No commits between {base_ref} and {head_ref}"})
    for other in repo.issues.values():
        if other.pull and other.state == "open" and other.pull.head_ref == head_ref and other.pull.base_ref == base_ref:
            raise unprocessable("Validation Failed", {"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for {repo.owner}:{head_ref}."})
    state = call.twin.state
    number = repo.next_number()
    pull = Pull(number, state.next_id(), head_ref, head_sha, base_ref, base_sha,
                draft=bool(body.get("draft", False)),
                maintainer_can_modify=bool(body.get("maintainer_can_modify", False)))
    issue = Issue(number, state.next_id(), body.get("title") or head_ref, body.get("body"), bot_login(call), pull=pull)
    repo.issues[number] = issue
    return Reply(201, await pull_body(call, repo, issue))


@operation("pulls/get")
async def get_pull(call: Call) -> Reply:
    repo = call.repo()
    return Reply(200, await pull_body(call, repo, pull_of(call, repo)))


@operation("pulls/list")
async def list_pulls(call: Call) -> Reply:
    repo = call.repo()
    state = call.query.get("state", "open")
    head = call.query.get("head")
    base = call.query.get("base")
    found = []
    for issue in sorted(repo.issues.values(), key=lambda i: -i.number):
        pull = issue.pull
        if pull is None or (state != "all" and issue.state != state):
            continue
        if head is not None:
            owner, _, ref = head.partition(":")
            if (ref and (owner.lower() != repo.owner.lower() or ref != pull.head_ref)) or (not ref and owner != pull.head_ref):
                continue
        if base is not None and base != pull.base_ref:
            continue
        found.append(issue)
    return Reply(200, [await pull_body(call, repo, i, full=False) for i in call.page(found)])


@operation("pulls/update")
async def update_pull(call: Call) -> Reply:
    repo = call.repo()
    issue = pull_of(call, repo)
    assert issue.pull is not None
    body = call.json
    if "title" in body:
        issue.title = body["title"]
    if "body" in body:
        issue.body = body["body"]
    if "state" in body and body["state"] != issue.state:
        issue.state = body["state"]
        issue.closed_at = now_iso() if issue.state == "closed" else None
    if "base" in body:
        if await gitrepo.resolve(repo.bare_path, f"refs/heads/{body['base']}") is None:
            raise unprocessable("Validation Failed", {"resource": "PullRequest", "field": "base", "code": "invalid"})
        issue.pull.base_ref = body["base"]
    if "maintainer_can_modify" in body:
        issue.pull.maintainer_can_modify = bool(body["maintainer_can_modify"])
    issue.updated_at = now_iso()
    return Reply(200, await pull_body(call, repo, issue))


@operation("pulls/list-files")
async def list_files(call: Call) -> Reply:
    repo = call.repo()
    pull = pull_of(call, repo).pull
    assert pull is not None
    await _refresh(repo, pull)
    files = await gitrepo.diff_files(repo.bare_path, pull.base_sha, pull.head_sha)
    return Reply(200, [diff_entry(call, repo, pull.head_sha, f) for f in call.page(files)])


@operation("pulls/list-reviews")
async def list_reviews(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    reviews = [r for r in repo.reviews.values() if r.pull_number == number]
    return Reply(200, [shapes.review(call.twin, repo, r) for r in call.page(reviews)])


@operation("pulls/list-comments-for-review")
async def list_review_comments_of_review(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    review_id = call.int_param("review_id")
    if review_id not in repo.reviews:
        raise not_found()
    found = [c for c in repo.review_comments.values() if c.pull_number == number and c.review_id == review_id]
    return Reply(200, [shapes.review_comment(call.twin, repo, c) for c in call.page(found)])


@operation("pulls/list-review-comments")
async def list_review_comments(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    found = [c for c in repo.review_comments.values() if c.pull_number == number]
    return Reply(200, [shapes.review_comment(call.twin, repo, c) for c in call.page(found)])


@operation("pulls/create-reply-for-review-comment")
async def reply_to_review_comment(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    parent = repo.review_comments.get(call.int_param("comment_id"))
    if parent is None or parent.pull_number != number:
        raise not_found()
    top = parent.in_reply_to_id or parent.id
    comment = ReviewComment(
        call.twin.state.next_id(), number, call.json["body"], bot_login(call), parent.path,
        parent.commit_id, parent.line, parent.side, review_id=None, in_reply_to_id=top,
        diff_hunk=parent.diff_hunk,
    )
    repo.review_comments[comment.id] = comment
    return Reply(201, shapes.review_comment(call.twin, repo, comment))


@operation("reactions/create-for-pull-request-review-comment")
async def react_to_review_comment(call: Call) -> Reply:
    comment = call.repo().review_comments.get(call.int_param("comment_id"))
    if comment is None:
        raise ApiError(404, "Not Found")
    return react(call, comment.reactions)
