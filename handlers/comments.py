"""`issue_comment.created`: `/agent …` commands on issues and on Compound's PRs."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.config import UnknownModelAlias, load_repo_config
from bot.context import Context, needs_github, skip
from bot.sessions import messages
from bot.sessions.commands import parse_command
from bot.sessions.manager import comment, react
from bot.store.triggers import AlreadyTriggered

router = routing.Router()
log = logging.getLogger("compound.handlers.comments")


@router.register("issue_comment", action="created")
@needs_github
async def on_issue_comment_created(event: sansio.Event, gh: Any, ctx: Context) -> None:
    data = event.data
    command = parse_command(data["comment"].get("body"))
    if command is None:
        return skip("not a trigger: the comment holds no /agent command")
    repo = data["repository"]["full_name"]
    owner, name = repo.split("/", 1)
    issue = data["issue"]
    number = issue["number"]
    sender = data["sender"]
    # What GitHub identifies the comment by: a redelivery (under any delivery
    # id) starts nothing twice. Claimed with the round or session it starts.
    key = f"comment:{data['comment']['id']}"
    if await ctx.store.triggers.seen(key):
        return skip(f"{key} was acted on already (the same comment delivered again)")
    config, error = await load_repo_config(gh, owner, name)
    if not await ctx.sessions.admit(gh, repo, number, sender, config, error):
        return skip(f"{sender.get('login')} may not command the agent here (no write permission, or a bot)")
    await react(gh, repo, comment_id=data["comment"]["id"])
    on_pr = "pull_request" in issue
    store = ctx.store.sessions
    session = await (store.for_pr(repo, number) if on_pr else store.for_issue(repo, number))
    try:
        await _command(ctx, gh, command, data, session, config, key)
    except AlreadyTriggered:
        return skip(f"{key} was acted on already (the same comment delivered again)")
    # Commands that start no round (help, status, stop…) are claimed once done:
    # a retry of a delivery that failed half way says it again, a redelivery does not.
    await ctx.store.triggers.claim(key)


async def _command(
    ctx: Context, gh: Any, command: Any, data: dict[str, Any], session: Any, config: Any, key: str
) -> None:
    """Do what the command asks; AlreadyTriggered if its round or session was started before."""
    repo = data["repository"]["full_name"]
    issue = data["issue"]
    number = issue["number"]
    sender = data["sender"]
    on_pr = "pull_request" in issue
    store = ctx.store.sessions

    if command.name == "help":
        await comment(gh, repo, number, messages.HELP)
    elif command.name == "status":
        rounds = await store.rounds(session.id) if session else []
        await comment(gh, repo, number, messages.status(session, rounds))
    elif command.name == "stop":
        if session is None or not session.active:
            await comment(gh, repo, number, "Nothing of Compound's is running here.")
            return
        running, cancelled = await ctx.sessions.stop(session)
        what = "Stopping the agent" if running else "No agent is running"
        await comment(gh, repo, number, f"{what}; {cancelled} queued round(s) cancelled.")
    elif command.name == "retry":
        released = await ctx.sessions.release_held(session, sender) if session else []
        if released:
            await comment(
                gh,
                repo,
                number,
                f"Round {released[0].number} starts now, past today's limit of rounds for this installation.",
            )
            return
        retried = await ctx.sessions.retry(session, sender, gh, once=key, bypass=True) if session else None
        await comment(
            gh,
            repo,
            number,
            messages.retrying(retried, session.head_sha)
            if retried
            else "There is no failed or stopped round to retry here.",
        )
    elif command.name == "model":
        if session is None:
            await comment(gh, repo, number, "There is no session here to change the model of.")
            return
        try:
            model = await ctx.sessions.set_model(session, config, command.argument)
        except UnknownModelAlias as exc:
            await comment(gh, repo, number, str(exc))
            return
        await comment(gh, repo, number, f"From the next round on, this session uses `{model}`.")
    elif command.name == "lessons":
        await comment(gh, repo, number, await _lessons(ctx, session, repo, issue, config))
    elif command.name == "fix-ci":
        if session is None or session.pr_number is None or session.outcome is not None:
            await comment(gh, repo, number, "There is no open Compound pull request here whose CI could be fixed.")
            return
        if await store.has_pending_round(session.id):
            await comment(
                gh, repo, number, "A round of this session is already queued or running; it will see the CI too."
            )
            return
        round_ = await ctx.sessions.fix_ci(gh, session, sender, once=key)
        await comment(
            gh, repo, session.pr_number, f"Round {round_.number} will look at CI on {(session.head_sha or '')[:7]}."
        )
    elif on_pr:
        if session is None:
            await comment(
                gh,
                repo,
                number,
                "This pull request is not one of Compound's; `/agent` works on issues and on Compound's PRs.",
            )
            return
        await ctx.sessions.command(gh, session, sender, command.argument, once=key)
    else:
        await ctx.sessions.start_task(
            gh,
            repo=repo,
            installation_id=data["installation"]["id"],
            issue=issue,
            base_branch=data["repository"].get("default_branch") or "main",
            config=config,
            sender=sender,
            instructions=command.argument,
            trigger_key=key,
        )


async def _lessons(ctx: Context, session: Any, repo: str, issue: dict[str, Any], config: Any) -> str:
    learning = ctx.sessions.learning
    if learning is None:
        return messages.lessons_in_scope([], 0.0)
    if session is not None:  # on the PR too: the session's issue decides the scope
        labels = await learning.labels(session)
        title, body = session.issue_title, session.issue_body or ""
    else:
        labels = [label["name"] for label in issue.get("labels") or []]
        title, body = issue.get("title") or "", issue.get("body") or ""
    found = await learning.in_scope(session, repo, labels, title, f"{title}\n{body}")
    return messages.lessons_in_scope(found, learning.holdout_for(config))
