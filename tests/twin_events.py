"""Webhook payloads that match the twin's state, shaped like GitHub's own.

The envelope comes from GitHub's published example of the event; the objects
in it (issue, pull request, review, comment, label, commits, repository,
sender, installation) are the twin's, so a handler that reads the payload and
then calls the twin sees one world. Every payload built here is checked
against the official webhook schema. Checks, Actions and statuses are in
``twin_events_checks`` (re-exported here).
"""

from __future__ import annotations

from typing import Any

from tests.twin import gitrepo, shapes, shapes_pulls
from tests.twin.server import GitHubTwin
from tests.twin.state import Issue, Repo, now_iso
from tests.twin_events_checks import (  # noqa: F401  (re-exported)
    check_run_event,
    check_suite_completed,
    checked,
    common,
    repo_of,
    status_event,
    workflow_job_event,
    workflow_run_completed,
    workflow_run_event,
)
from tests.webhook_examples import example

ZERO_SHA = "0" * 40


def _label(twin: GitHubTwin, repo: Repo, issue: Issue, label: str, present: bool) -> dict[str, Any]:
    """Put ``label`` on (or take it off) the issue; its JSON."""
    if repo.label(label) is None:
        twin.add_label(repo.full_name, label)
    names = [n for n in issue.labels if n.lower() == label.lower()]
    if present and not names:
        issue.labels.append(label)
    if not present:
        for name in names:
            issue.labels.remove(name)
    if bool(names) != present:  # as GitHub: a label that changes the issue moves its updated_at
        issue.updated_at = now_iso()
    found = repo.label(label)
    assert found is not None
    return shapes.label(twin, repo, found)


def issue_labeled(
    twin: GitHubTwin, full_name: str, number: int, label: str, sender: str, installation_id: int
) -> dict[str, Any]:
    """Labels the issue (creating the label if need be) and returns its `issues.labeled`."""
    repo = repo_of(twin, full_name)
    issue = repo.issues[number]
    payload = example("issues", "labeled")
    payload.update(common(twin, full_name, sender, installation_id))
    payload["label"] = _label(twin, repo, issue, label, True)
    payload["issue"] = shapes.issue(twin, repo, issue)
    return checked("issues", payload)


def issue_unlabeled(
    twin: GitHubTwin, full_name: str, number: int, label: str, sender: str, installation_id: int
) -> dict[str, Any]:
    """Takes the label off the issue (or pull request) and returns its `issues.unlabeled`."""
    repo = repo_of(twin, full_name)
    issue = repo.issues[number]
    payload = example("issues", "unlabeled")
    payload.update(common(twin, full_name, sender, installation_id))
    payload["label"] = _label(twin, repo, issue, label, False)
    payload["issue"] = shapes.issue(twin, repo, issue)
    return checked("issues", payload)


def issue_edited(
    twin: GitHubTwin,
    full_name: str,
    number: int,
    sender: str,
    installation_id: int,
    *,
    body: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Edits the issue's body and/or title in the twin and returns its `issues.edited`."""
    repo = repo_of(twin, full_name)
    issue = repo.issues[number]
    payload = example("issues", "edited")
    payload.update(common(twin, full_name, sender, installation_id))
    changes: dict[str, Any] = {}
    if body is not None:
        changes["body"] = {"from": issue.body or ""}
        issue.body = body
    if title is not None:
        changes["title"] = {"from": issue.title}
        issue.title = title
    issue.updated_at = now_iso()
    payload["changes"] = changes
    payload["issue"] = shapes.issue(twin, repo, issue)
    return checked("issues", payload)


def comment_created(
    twin: GitHubTwin, full_name: str, number: int, body: str, sender: str, installation_id: int
) -> dict[str, Any]:
    """Adds the comment to the twin (as `sender`) and returns its `issue_comment.created`."""
    repo = repo_of(twin, full_name)
    comment = twin.add_comment(full_name, number, body, user=sender)
    payload = example("issue_comment", "created")
    payload.update(common(twin, full_name, sender, installation_id))
    payload["issue"] = shapes.issue(twin, repo, repo.issues[number])  # PRs are issues too
    payload["comment"] = shapes.comment(twin, repo, comment) | {"performed_via_github_app": None}
    return checked("issue_comment", payload)


def check_run_action(
    twin: GitHubTwin, full_name: str, run_id: int, action: str | None, sender: str, installation_id: int
) -> dict[str, Any]:
    """`check_run.requested_action` (a button press) or, with action None, `check_run.rerequested`."""
    kind = "requested_action" if action else "rerequested"
    return check_run_event(twin, full_name, run_id, kind, sender, installation_id, requested_action=action)


# --- pull requests and reviews ------------------------------------------------------


def _pull_json(twin: GitHubTwin, repo: Repo, number: int, computing: bool = False) -> dict[str, Any]:
    """The full pull request; ``computing``: mergeability not known yet (after a push)."""
    issue = repo.issues[number]
    assert issue.pull is not None, f"#{number} is not a pull request"
    stats, mergeable = shapes_pulls.pull_stats_sync(repo, issue)
    body = shapes_pulls.pull(twin, repo, issue, stats, None if computing else mergeable)
    return body | {"active_lock_reason": None}


def pull_request_event(
    twin: GitHubTwin,
    full_name: str,
    number: int,
    action: str,
    sender: str,
    installation_id: int,
    label: str | None = None,
    before: str | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """`pull_request.<action>`: opened, synchronize (``before``/``after``, default: the head's
    parent and the head), closed and reopened (applied to the twin's pull request), labeled and
    unlabeled (``label``, applied too), …
    """
    repo = repo_of(twin, full_name)
    issue = repo.issues[number]
    payload = example("pull_request", action)
    payload.update(common(twin, full_name, sender, installation_id))
    payload["number"] = number
    if action in ("labeled", "unlabeled"):
        if label is None:
            raise ValueError(f"pull_request.{action} needs a label")
        payload["label"] = _label(twin, repo, issue, label, action == "labeled")
    if action in ("closed", "reopened"):
        issue.state = "closed" if action == "closed" else "open"
        issue.closed_at = now_iso() if action == "closed" else None
    if action == "synchronize":
        assert issue.pull is not None
        after = after or issue.pull.head_sha
        before = before or gitrepo.resolve_sync(repo.bare_path, f"{after}^") or ZERO_SHA
        payload.update(before=before, after=after)
    payload["pull_request"] = _pull_json(twin, repo, number, computing=action == "synchronize")
    return checked("pull_request", payload)


def review_submitted(
    twin: GitHubTwin,
    full_name: str,
    number: int,
    review_id: int,
    sender: str | int | None = None,
    installation_id: int | None = None,
) -> dict[str, Any]:
    """`pull_request_review.submitted` for a review the twin holds (sender: its author).

    ``review_submitted(twin, repo, number, review_id, iid)`` works too: an int
    in the sender's place is the installation id.
    """
    if isinstance(sender, int):
        sender, installation_id = None, sender
    repo = repo_of(twin, full_name)
    review = repo.reviews[review_id]
    payload = example("pull_request_review", "submitted")
    payload.update(common(twin, full_name, sender or review.user, installation_id or repo.installation_id))
    payload["review"] = payload["review"] | shapes.review(twin, repo, review)
    payload["pull_request"] = _pull_json(twin, repo, number)
    return checked("pull_request_review", payload)


def review_comment_created(
    twin: GitHubTwin, full_name: str, number: int, comment_id: int, installation_id: int
) -> dict[str, Any]:
    """`pull_request_review_comment.created` for a twin review comment (sender: its author)."""
    repo = repo_of(twin, full_name)
    comment = repo.review_comments[comment_id]
    payload = example("pull_request_review_comment", "created")
    payload.update(common(twin, full_name, comment.user, installation_id))
    shaped = shapes.review_comment(twin, repo, comment)
    shaped.update(start_line=None, original_start_line=None, start_side=None, subject_type="line")
    payload["comment"] = shaped
    payload["pull_request"] = _pull_json(twin, repo, number)
    return checked("pull_request_review_comment", payload)


# --- pushes -------------------------------------------------------------------------


def _git_lines(repo: Repo, *args: str) -> list[str]:
    return shapes_pulls._git_sync(repo, *args).stdout.decode().splitlines()


def _push_commit(twin: GitHubTwin, repo: Repo, sha: str, distinct: bool = True) -> dict[str, Any]:
    c = gitrepo.commit_sync(repo.bare_path, sha)
    changes = {"A": [], "D": [], "M": []}  # type: dict[str, list[str]]
    for line in _git_lines(repo, "diff-tree", "--root", "--no-commit-id", "--no-renames", "--name-status", "-r", sha):
        kind, _, path = line.partition("\t")
        changes.get(kind[:1], changes["M"]).append(path)
    return {
        "id": c.sha,
        "tree_id": c.tree,
        "distinct": distinct,
        "message": c.message,
        "timestamp": c.committer_date,
        "url": f"{twin.git_url}/{repo.full_name}/commit/{c.sha}",
        "author": {"name": c.author_name, "email": c.author_email},
        "committer": {"name": c.committer_name, "email": c.committer_email},
        "added": changes["A"],
        "removed": changes["D"],
        "modified": changes["M"],
    }


def push_event(
    twin: GitHubTwin, full_name: str, ref: str, before: str | None, after: str, sender: str, installation_id: int
) -> dict[str, Any]:
    """`push` for a ref the twin moved from ``before`` to ``after`` (zeros: created/deleted).

    ``before`` None: the parent of ``after`` (one commit made with ``twin.commit``).
    """
    repo = repo_of(twin, full_name)
    if before is None:
        before = gitrepo.resolve_sync(repo.bare_path, f"{after}^") or ZERO_SHA
    created, deleted = before == ZERO_SHA, after == ZERO_SHA
    if deleted:
        shas: list[str] = []
    elif created:
        others = [s for r, s in gitrepo.refs_sync(repo.bare_path).items() if r.startswith("refs/heads/") and r != ref]
        shas = _git_lines(repo, "rev-list", "--reverse", "--max-count=20", after, "--not", *others)
    else:
        shas = _git_lines(repo, "rev-list", "--reverse", f"{before}..{after}")[-20:]
    commits = [_push_commit(twin, repo, s) for s in shas]
    payload = example("push")
    payload.update(common(twin, full_name, sender, installation_id))
    repository = payload["repository"]
    login = repository["owner"]["login"]
    repository["owner"] |= {"name": login, "email": None}
    repository.update(stargazers=0, master_branch=repo.default_branch)
    html = f"{twin.git_url}/{repo.full_name}"
    payload.update(
        {
            "ref": ref,
            "before": before,
            "after": after,
            "created": created,
            "deleted": deleted,
            "forced": bool(
                not created and not deleted and _git_lines(repo, "rev-list", "--max-count=1", f"{after}..{before}")
            ),
            "base_ref": None,
            "compare": f"{html}/compare/{before[:12]}...{after[:12]}",
            "commits": commits,
            "head_commit": None if deleted else (commits[-1] if commits else _push_commit(twin, repo, after, False)),
            "pusher": {"name": sender, "email": f"{twin.state.user_id(sender)}+{sender}@users.noreply.github.com"},
        }
    )
    return checked("push", payload)
