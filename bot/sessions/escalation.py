"""Calling a human in, and handing the session back to Compound afterwards.

Whenever Compound stops trying on its own (fix rounds used up, an agent that
failed every attempt, a conflict it could not resolve), the session is
escalated: the label `agent:needs-human` on the issue and the PR, and one
comment listing each round. A later escalation of the same session edits that
comment rather than adding another. Nothing starts by itself while the
session is escalated; `/agent fix-ci`, `/agent retry` or removing the label
resumes it.
"""

from __future__ import annotations

import http
import logging
from typing import Any

import gidgethub

from bot.events import EventLog
from bot.github.api import comment, own_comment
from bot.sessions import messages
from bot.store.base import utcnow
from bot.store.sessions import AWAITING, ESCALATED, FAILED, SessionRow, SessionStore

log = logging.getLogger("compound.sessions")

LABEL = "agent:needs-human"
LABEL_COLOR = "d93f0b"
LABEL_DESCRIPTION = "Compound stopped trying on its own; a person needs to look"


async def escalate(gh: Any, store: SessionStore, events: EventLog, session: SessionRow, why: str) -> None:
    await store.update_session(session.id, status=ESCALATED, escalated_at=utcnow(), error=why[:4000])
    session.status = ESCALATED
    owner, name = session.owner_name
    where = {"owner": owner, "repo": name}
    try:
        await gh.post(
            "/repos/{owner}/{repo}/labels",
            where,
            data={
                "name": LABEL,
                "color": LABEL_COLOR,
                "description": LABEL_DESCRIPTION,
            },
        )
    except gidgethub.BadRequest as exc:  # 422: it exists already
        if exc.status_code != http.HTTPStatus.UNPROCESSABLE_ENTITY:
            raise
    for number in _threads(session):
        await gh.post(
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
            {**where, "issue_number": number},
            data={"labels": [LABEL]},
        )
    rounds = await store.rounds(session.id)
    body = messages.escalation(session, rounds, why)
    target = session.pr_number or session.issue_number
    mark = messages.ESCALATION_MARK.format(id=session.id)
    earlier = await own_comment(gh, session.repo, target, lambda text: mark in text)
    if earlier is not None:
        await gh.patch(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            {**where, "comment_id": earlier["id"]},
            data={"body": body},
        )
    else:
        await comment(gh, session.repo, target, body)
    await events.record(session, "session.escalated", reason=why[:500])
    log.info("session %s escalated: %s", session.id, why.splitlines()[0] if why else "")


async def resume(
    gh: Any | None,
    store: SessionStore,
    events: EventLog,
    session: SessionRow,
    *,
    by: str,
    reset_budget: bool,
) -> None:
    """Take an escalated session back: no longer escalated, the label gone.

    `reset_budget` (the label was removed: "go on by yourself") gives the
    session its CI and review rounds anew; a single `/agent fix-ci` or
    `/agent retry` runs its one round and keeps the count.
    """
    values: dict[str, Any] = {"escalated_at": None}
    if session.status == ESCALATED:
        values["status"] = AWAITING if session.pr_number is not None else FAILED
    if reset_budget:
        values.update(ci_rounds=0, review_rounds=0)
    await store.update_session(session.id, **values)
    session.escalated_at = None
    session.status = values.get("status", session.status)
    if gh is not None:
        owner, name = session.owner_name
        for number in _threads(session):
            try:
                await gh.delete(
                    "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
                    {"owner": owner, "repo": name, "issue_number": number, "name": LABEL},
                )
            except gidgethub.BadRequest as exc:  # 404: not (or no longer) labelled
                if exc.status_code != http.HTTPStatus.NOT_FOUND:
                    raise
    await events.record(session, "session.resumed", by=by, reset_budget=reset_budget)


def _threads(session: SessionRow) -> list[int]:
    return [n for n in (session.issue_number, session.pr_number) if n is not None]
