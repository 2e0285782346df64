"""`issues.labeled`: the trigger label (or `agent:<alias>`) starts a task session;
`issues.unlabeled` of `agent:needs-human` resumes it; `issues.edited` after the
trigger is answered once: the session keeps the text it was started on."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.config import model_label_alias
from bot.context import Context, needs_github, skip
from bot.sessions.escalation import LABEL
from bot.sessions.manager import react

router = routing.Router()
log = logging.getLogger("compound.handlers.issues")


@router.register("issues", action="labeled")
@needs_github
async def on_issues_labeled(event: sansio.Event, gh: Any, ctx: Context) -> None:
    data = event.data
    issue = data["issue"]
    label = (data.get("label") or {}).get("name", "")
    if "pull_request" in issue or not label:
        return skip("a pull request's label, or no label")
    repo = data["repository"]["full_name"]
    config, error = await ctx.configs.get(gh, repo)  # from GitHub at most once per CONFIG_CACHE_SECONDS
    alias = model_label_alias(config, label)
    if label != config.trigger_label and alias is None:
        return skip(f"label {label!r} is not a trigger (the trigger label is {config.trigger_label!r})")
    key = label_key(issue, label)
    if key is not None and await ctx.store.triggers.seen(key):
        return skip(f"{key} started its session already (the same event delivered again)")
    if not await ctx.sessions.admit(gh, repo, issue["number"], data["sender"], config, error):
        return skip(f"{data['sender'].get('login')} may not start work here (no write permission, or a bot)")
    await react(gh, repo, issue_number=issue["number"])
    await ctx.sessions.start_task(
        gh,
        repo=repo,
        installation_id=data["installation"]["id"],
        issue=issue,
        base_branch=data["repository"].get("default_branch") or "main",
        config=config,
        sender=data["sender"],
        alias=alias,
        trigger_key=key,
        by_label=True,
    )


def label_key(issue: dict[str, Any], label: str) -> str | None:
    """What GitHub identifies a label event by: the issue, the label, and when it
    was applied (the issue's `updated_at`, which the labelling set). The same in
    every delivery of the event, whatever its delivery id; another labelling
    later (removed and added again) has another time."""
    when = issue.get("updated_at")
    if not when or issue.get("id") is None:
        return None
    return f"label:{issue['id']}:{label}:{when}"


@router.register("issues", action="unlabeled")
@needs_github
async def on_issues_unlabeled(event: sansio.Event, gh: Any, ctx: Context) -> None:
    """Removing `agent:needs-human` from the issue resumes its escalated session."""
    data = event.data
    if (data.get("label") or {}).get("name") != LABEL or "pull_request" in data["issue"]:
        return
    session = await ctx.store.sessions.for_issue(data["repository"]["full_name"], data["issue"]["number"])
    await ctx.sessions.unlabeled(gh, session, data["sender"])


@router.register("issues", action="edited")
@needs_github
async def on_issues_edited(event: sansio.Event, gh: Any, ctx: Context) -> None:
    data = event.data
    changes = data.get("changes") or {}
    if "pull_request" in data["issue"] or not ({"body", "title"} & changes.keys()):
        return
    session = await ctx.store.sessions.for_issue(data["repository"]["full_name"], data["issue"]["number"])
    await ctx.sessions.issue_edited(gh, session, data["issue"])
