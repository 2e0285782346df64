"""A review's comments for the agent, and Compound's answers in the review threads."""

from __future__ import annotations

import logging
from typing import Any

import gidgethub

from bot.prompts import Comment
from bot.store.sessions import SessionRow

log = logging.getLogger("compound.sessions")

# What a review round keeps of each review it answers (docs/healing.md).
_ENTRY_FIELDS = ("event", "review_id", "reviewer", "state")


def review_entries(trigger: dict[str, Any]) -> list[dict[str, Any]]:
    """The reviews a review round answers: its own, then each that joined it while
    it was queued (`trigger["joined"]`, bot/store/sessions.py), once each."""
    entries: list[dict[str, Any]] = []
    seen: set[int] = set()
    for entry in [trigger, *trigger.get("joined", [])]:
        review_id = entry.get("review_id")
        if not review_id or review_id in seen:
            continue
        seen.add(review_id)
        entries.append({k: entry[k] for k in _ENTRY_FIELDS if k in entry})
    return entries


async def review_comments(gh: Any, session: SessionRow, review_id: int) -> list[Comment]:
    """The review's text and its inline comments, each with the thread comment it answers.

    Everything here was written by the reviewer, whom the handler checked for
    write access; the earlier comment a reply answers may be anyone's, and the
    prompt quotes it only if `prompt_comments` lets its author in
    (bot/sessions/commenters.py).
    """
    owner, name = session.owner_name
    where = {"owner": owner, "repo": name, "pull_number": session.pr_number}
    review: dict[str, Any] | None = None
    async for r in gh.getiter("/repos/{owner}/{repo}/pulls/{pull_number}/reviews?per_page=100", where):
        if r.get("id") == review_id:
            review = r
    found: list[Comment] = []
    if review is not None and (review.get("body") or "").strip():
        author = (review.get("user") or {}).get("login") or "reviewer"
        found.append(Comment(author=author, body=review["body"]))
    inline = [
        c
        async for c in gh.getiter(
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments?per_page=100",
            {**where, "review_id": review_id},
        )
    ]
    parents: dict[int, dict[str, Any]] = {}
    if any(c.get("in_reply_to_id") for c in inline):
        async for c in gh.getiter("/repos/{owner}/{repo}/pulls/{pull_number}/comments?per_page=100", where):
            parents[c["id"]] = c
    for c in inline:
        thread = _thread_of(c, parents)
        parent = parents.get(c.get("in_reply_to_id") or 0)
        found.append(
            Comment(
                author=(c.get("user") or {}).get("login") or "reviewer",
                body=c.get("body") or "",
                path=c.get("path"),
                line=c.get("line") or c.get("original_line"),
                diff_hunk=c.get("diff_hunk") or "",
                id=c.get("id"),
                in_reply_to=Comment(
                    author=(parent.get("user") or {}).get("login") or "someone",
                    body=parent.get("body") or "",
                    id=parent.get("id"),
                )
                if parent
                else None,
                thread=thread if thread != c.get("id") else None,
            )
        )
    return found


def _thread_of(comment: dict[str, Any], comments: dict[int, dict[str, Any]]) -> int | None:
    """The id of the top-level comment of `comment`'s thread (its own id if it starts one).

    GitHub points a reply's `in_reply_to_id` at the thread's first comment;
    the chain is followed all the same, in case it names another reply.
    """
    current: int | None = comment.get("id")
    parent = comment.get("in_reply_to_id")
    seen: set[int] = set()
    while parent and parent not in seen:
        seen.add(parent)
        current = parent
        parent = (comments.get(parent) or {}).get("in_reply_to_id")
    return current


def thread_roots(comments: list[Comment]) -> list[int]:
    """One comment id per review thread the round answers: the thread's top-level
    comment, which is where GitHub takes replies (POST …/comments/{id}/replies
    refuses a reply's id). Several comments of one thread get one reply."""
    roots: list[int] = []
    for c in comments:
        root = c.thread if c.thread is not None else c.id
        if root is not None and root not in roots:
            roots.append(root)
    return roots


async def reply(gh: Any, session: SessionRow, comment_ids: list[int], body: str) -> int:
    """One reply in each thread; how many were posted (a thread deleted since is skipped)."""
    owner, name = session.owner_name
    posted = 0
    for comment_id in comment_ids:
        try:
            await gh.post(
                "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
                {"owner": owner, "repo": name, "pull_number": session.pr_number, "comment_id": comment_id},
                data={"body": body},
            )
            posted += 1
        except gidgethub.BadRequest as exc:
            log.warning("could not reply to review comment %s: %s", comment_id, exc)
    return posted


async def request_rereview(gh: Any, session: SessionRow, reviewers: list[str]) -> None:
    """Ask each reviewer the round answered for another review (one request each:
    GitHub refuses the whole list for one reviewer who is no longer a collaborator)."""
    owner, name = session.owner_name
    for reviewer in reviewers:
        try:
            await gh.post(
                "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
                {"owner": owner, "repo": name, "pull_number": session.pr_number},
                data={"reviewers": [reviewer]},
            )
        except gidgethub.BadRequest as exc:  # e.g. the reviewer is no longer a collaborator
            log.warning("could not request a review from %s: %s", reviewer, exc)
