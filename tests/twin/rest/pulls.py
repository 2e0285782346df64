"""Pull requests, their files and mergeability (reviews: ``reviews.py``)."""

from __future__ import annotations

from typing import Any

from .. import gitrepo, shapes_pulls
from ..state import Issue, Pull, Repo, now_iso
from .base import Call, Reply, not_found, operation, unprocessable
from .issues import bot_login
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


async def _mergeable(call: Call, repo: Repo, pull: Pull) -> bool | None:
    """Computed with real git; None while GitHub would still be computing it.

    A new pull request's first answer has not been computed yet, and
    ``twin.mergeability_pending`` holds back the next GETs.
    """
    if call.operation_id == "pulls/create" or pull.merged:
        return None
    if call.operation_id == "pulls/get" and pull.mergeability_pending > 0:
        pull.mergeability_pending -= 1
        return None
    return await gitrepo.merges_cleanly(repo.bare_path, pull.base_sha, pull.head_sha)


async def pull_body(call: Call, repo: Repo, issue: Issue, full: bool = True) -> dict[str, Any]:
    """The pull request JSON (``full``: `pull-request`, else `pull-request-simple`)."""
    pull = issue.pull
    assert pull is not None
    await _refresh(repo, pull)
    if not full:
        return shapes_pulls.pull(call.twin, repo, issue)
    files = await gitrepo.diff_files(repo.bare_path, pull.base_sha, pull.head_sha)
    count = await gitrepo.git(repo.bare_path, "rev-list", "--count", f"{pull.base_sha}..{pull.head_sha}")
    stats = shapes_pulls.PullStats(
        commits=int(count.decode().strip() or 0),
        additions=sum(int(f["additions"]) for f in files),  # type: ignore[call-overload]
        deletions=sum(int(f["deletions"]) for f in files),  # type: ignore[call-overload]
        changed_files=len(files),
    )
    mergeable = await _mergeable(call, repo, pull)
    state = None
    if mergeable and pull.base_ref in repo.up_to_date_branches:
        ancestor = await gitrepo.git(repo.bare_path, "rev-list", "--count", f"{pull.head_sha}..{pull.base_sha}")
        if int(ancestor.decode().strip() or 0):
            state = "behind"
    return shapes_pulls.pull(call.twin, repo, issue, stats, mergeable, state)


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
        raise unprocessable(
            "Validation Failed",
            {"resource": "PullRequest", "code": "custom", "message": f"No commits between {base_ref} and {head_ref}"},
        )
    for other in repo.issues.values():
        if other.pull and other.state == "open" and other.pull.head_ref == head_ref and other.pull.base_ref == base_ref:
            raise unprocessable(
                "Validation Failed",
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"A pull request already exists for {repo.owner}:{head_ref}.",
                },
            )
    state = call.twin.state
    number = repo.next_number()
    pull = Pull(
        number,
        state.next_id(),
        head_ref,
        head_sha,
        base_ref,
        base_sha,
        draft=bool(body.get("draft", False)),
        maintainer_can_modify=bool(body.get("maintainer_can_modify", False)),
    )
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
            if (ref and (owner.lower() != repo.owner.lower() or ref != pull.head_ref)) or (
                not ref and owner != pull.head_ref
            ):
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
