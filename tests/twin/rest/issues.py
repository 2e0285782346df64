"""Issues, issue comments, labels and reactions."""

from __future__ import annotations

from typing import Any

from .. import shapes
from ..state import Comment, Issue, Label, Reaction, Repo, now_iso
from .base import ApiError, Call, Reply, not_found, operation, unprocessable


def bot_login(call: Call) -> str:
    """Who writes with an installation token: the App's bot user."""
    return f"{call.twin.app_slug}[bot]"


def issue_of(call: Call, repo: Repo) -> Issue:
    issue = repo.issues.get(call.int_param("issue_number"))
    if issue is None:
        raise not_found()
    return issue


def comment_of(call: Call, repo: Repo) -> Comment:
    comment = repo.comments.get(call.int_param("comment_id"))
    if comment is None:
        raise not_found()
    return comment


@operation("issues/get")
async def get_issue(call: Call) -> Reply:
    repo = call.repo()
    return Reply(200, shapes.issue(call.twin, repo, issue_of(call, repo)))


@operation("issues/create")
async def create_issue(call: Call) -> Reply:
    repo = call.repo()
    body = call.json
    title = body.get("title")
    if title is None or str(title) == "":
        raise unprocessable("Validation Failed", {"resource": "Issue", "code": "missing_field", "field": "title"})
    text = body.get("body")
    if isinstance(text, str) and len(text) > 65536:
        raise unprocessable(
            "Validation Failed",
            {
                "resource": "Issue",
                "code": "custom",
                "field": "body",
                "message": "body is too long (maximum is 65536 characters)",
            },
        )
    issue = Issue(repo.next_number(), call.twin.state.next_id(), str(title), text, bot_login(call))
    _add_labels(call.twin, repo, issue, body.get("labels") or [])
    issue.assignees = list(body.get("assignees") or [])
    repo.issues[issue.number] = issue
    return Reply(201, shapes.issue(call.twin, repo, issue))


@operation("issues/list-for-repo")
async def list_issues(call: Call) -> Reply:
    """Issues and pull requests, as GitHub lists them: newest first unless asked otherwise."""
    repo = call.repo()
    q = call.query
    state = q.get("state", "open")
    creator = q.get("creator")
    labels = {name for name in (q.get("labels") or "").split(",") if name}
    since = q.get("since")
    key = "updated_at" if q.get("sort") == "updated" else "created_at"
    found = [
        it
        for it in repo.issues.values()
        if (state == "all" or it.state == state)
        and (creator is None or it.user == creator)
        and labels <= set(it.labels)
        and (since is None or it.updated_at >= since)
    ]
    found.sort(key=lambda it: (getattr(it, key), it.number), reverse=q.get("direction", "desc") != "asc")
    return Reply(200, [shapes.issue(call.twin, repo, it) for it in call.page(found)])


@operation("issues/update")
async def update_issue(call: Call) -> Reply:
    repo = call.repo()
    issue = issue_of(call, repo)
    body = call.json
    if "title" in body and body["title"] is not None:
        issue.title = str(body["title"])
    if "body" in body:
        issue.body = body["body"]
    if "state" in body and body["state"] != issue.state:
        issue.state = body["state"]
        issue.closed_at = now_iso() if issue.state == "closed" else None
        issue.state_reason = body.get("state_reason") or ("completed" if issue.state == "closed" else "reopened")
    if "labels" in body:
        issue.labels = []
        _add_labels(call.twin, repo, issue, body["labels"])
    if "assignees" in body:
        issue.assignees = list(body["assignees"])
    issue.updated_at = now_iso()
    return Reply(200, shapes.issue(call.twin, repo, issue))


@operation("issues/list-comments")
async def list_comments(call: Call) -> Reply:
    repo = call.repo()
    issue = issue_of(call, repo)
    since = call.query.get("since")
    comments = [
        c for c in repo.comments.values() if c.issue_number == issue.number and (since is None or c.updated_at >= since)
    ]
    return Reply(200, [shapes.comment(call.twin, repo, c) for c in call.page(comments)])


@operation("issues/create-comment")
async def create_comment(call: Call) -> Reply:
    repo = call.repo()
    issue = issue_of(call, repo)
    text = call.json.get("body")
    if not isinstance(text, str) or not text:
        raise unprocessable("Validation Failed", {"resource": "IssueComment", "code": "missing_field", "field": "body"})
    if len(text) > 65536:
        raise unprocessable(
            "Validation Failed",
            {
                "resource": "IssueComment",
                "code": "custom",
                "field": "body",
                "message": "body is too long (maximum is 65536 characters)",
            },
        )
    comment = Comment(call.twin.state.next_id(), issue.number, text, bot_login(call))
    repo.comments[comment.id] = comment
    issue.updated_at = now_iso()
    return Reply(201, shapes.comment(call.twin, repo, comment))


@operation("issues/get-comment")
async def get_comment(call: Call) -> Reply:
    repo = call.repo()
    return Reply(200, shapes.comment(call.twin, repo, comment_of(call, repo)))


@operation("issues/update-comment")
async def update_comment(call: Call) -> Reply:
    repo = call.repo()
    comment = comment_of(call, repo)
    comment.body = call.json["body"]
    comment.updated_at = now_iso()
    return Reply(200, shapes.comment(call.twin, repo, comment))


def _label_names(payload: Any) -> list[str]:
    """Label names from any shape issues/add-labels accepts."""
    if isinstance(payload, dict):
        payload = payload.get("labels", [])
    if isinstance(payload, str):
        payload = [payload]
    names = []
    for item in payload or []:
        names.append(item["name"] if isinstance(item, dict) else str(item))
    return names


def _add_labels(twin: Any, repo: Repo, issue: Issue, payload: Any) -> None:
    for name in _label_names(payload):
        label = repo.label(name)
        if label is None:  # GitHub creates unknown labels on the fly
            label = Label(twin.state.next_id(), name)
            repo.labels[name] = label
        if label.name not in issue.labels:
            issue.labels.append(label.name)


@operation("issues/add-labels")
async def add_labels(call: Call) -> Reply:
    repo = call.repo()
    issue = issue_of(call, repo)
    _add_labels(call.twin, repo, issue, call.json)
    issue.updated_at = now_iso()
    labels = [repo.label(n) for n in issue.labels]
    return Reply(200, [shapes.label(call.twin, repo, lb) for lb in labels if lb])


@operation("issues/remove-label")
async def remove_label(call: Call) -> Reply:
    repo = call.repo()
    issue = issue_of(call, repo)
    name = call.params["name"]
    present = [n for n in issue.labels if n.lower() == name.lower()]
    if not present:
        raise ApiError(404, "Label does not exist")
    issue.labels.remove(present[0])
    issue.updated_at = now_iso()
    labels = [repo.label(n) for n in issue.labels]
    return Reply(200, [shapes.label(call.twin, repo, lb) for lb in labels if lb])


@operation("issues/list-labels-for-repo")
async def list_labels(call: Call) -> Reply:
    repo = call.repo()
    labels = sorted(repo.labels.values(), key=lambda lb: lb.name.lower())
    return Reply(200, [shapes.label(call.twin, repo, lb) for lb in call.page(labels)])


@operation("issues/create-label")
async def create_label(call: Call) -> Reply:
    repo = call.repo()
    body = call.json
    name = body["name"]
    if repo.label(name) is not None:
        raise unprocessable("Validation Failed", {"resource": "Label", "code": "already_exists", "field": "name"})
    label = Label(call.twin.state.next_id(), name, body.get("color", "ededed").lstrip("#"), body.get("description"))
    repo.labels[name] = label
    return Reply(201, shapes.label(call.twin, repo, label))


def react(call: Call, reactions: list[Reaction]) -> Reply:
    """201 for a new reaction; 200 with the existing one if already there."""
    content = call.json["content"]
    login = bot_login(call)
    for existing in reactions:
        if existing.user == login and existing.content == content:
            return Reply(200, shapes.reaction(call.twin, existing))
    reaction = Reaction(call.twin.state.next_id(), login, content)
    reactions.append(reaction)
    return Reply(201, shapes.reaction(call.twin, reaction))


@operation("reactions/create-for-issue")
async def react_to_issue(call: Call) -> Reply:
    return react(call, issue_of(call, call.repo()).reactions)


@operation("reactions/create-for-issue-comment")
async def react_to_comment(call: Call) -> Reply:
    return react(call, comment_of(call, call.repo()).reactions)
