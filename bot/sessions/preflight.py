"""Before a healing round prepares a workspace: is there still work, and what is it?

Events only queue rounds (handlers/ decide cheaply, from the store); the
round itself, when a worker takes it, asks GitHub once what the work is:
which checks failed on the head (and whether the suite has settled), which
comments the review holds, whether the PR still merges. The answer is run,
wait a little longer, drop the round (nothing to do, or the head moved on), or
escalate (the session's rounds are used up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bot.config import RepoConfig
from bot.prompts import CheckFailure, Comment
from bot.sessions import messages
from bot.sessions.ci import ci_state
from bot.sessions.reviews import review_comments, review_entries
from bot.settings import Settings
from bot.store.base import utcnow
from bot.store.sessions import ESCALATED, RoundRow, SessionRow, SessionStore

log = logging.getLogger("compound.sessions")

HEALING = frozenset({"ci_fix", "review_fix", "rebase"})
MERGEABILITY_WAIT = 60.0  # seconds; GitHub computes `mergeable` in the background


@dataclass
class Plan:
    failures: list[CheckFailure] = field(default_factory=list)
    more_failures: int = 0
    review_comments: list[Comment] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)  # whose reviews the comments are
    # Review comments past the prompt's limit: the agent never saw them, so
    # their threads are told so rather than thanked for a fix.
    unshown_review_ids: set[int] = field(default_factory=set)
    base_branch: str | None = None

    @property
    def categories(self) -> list[str]:
        return sorted({f.category for f in self.failures})


@dataclass
class Decision:
    action: str  # run | defer | cancel | escalate
    why: str = ""
    plan: Plan = field(default_factory=Plan)
    comment: str | None = None  # said on the PR when a person asked for the round

    @classmethod
    def run(cls, plan: Plan) -> Decision:
        return cls("run", plan=plan)


def limit_of(kind: str, config: RepoConfig, settings: Settings) -> int:
    if kind == "ci_fix":
        return config.max_ci_rounds if config.max_ci_rounds is not None else settings.max_ci_rounds
    return config.max_review_rounds if config.max_review_rounds is not None else settings.max_review_rounds


class Preflight:
    def __init__(self, settings: Settings, store: SessionStore) -> None:
        self.settings = settings
        self.store = store

    async def decide(self, gh: Any, session: SessionRow, round_: RoundRow, config: RepoConfig) -> Decision:
        if round_.kind not in HEALING:
            return Decision.run(Plan())
        if round_.automatic:
            if session.status == ESCALATED:
                return Decision("cancel", "the session is escalated")
            if session.held:
                return Decision("cancel", "someone else pushed the head")
            head = round_.trigger_data().get("head")
            if head and head != session.head_sha:
                return Decision("cancel", f"the head moved on from {head[:7]}")
        if round_.kind == "ci_fix":
            return await self._ci(gh, session, round_, config)
        if round_.kind == "review_fix":
            return await self._review(gh, session, round_, config)
        return await self._rebase(gh, session, round_)

    def _over_budget(self, session: SessionRow, round_: RoundRow, config: RepoConfig) -> int | None:
        if not round_.automatic:
            return None
        limit = limit_of(round_.kind, config, self.settings)
        used = session.ci_rounds if round_.kind == "ci_fix" else session.review_rounds
        return limit if used >= limit else None

    async def _ci(self, gh: Any, session: SessionRow, round_: RoundRow, config: RepoConfig) -> Decision:
        assert session.head_sha is not None
        state = await ci_state(gh, session.repo, session.head_sha, app_id=self.settings.app_id)
        waited = (utcnow() - round_.created_at).total_seconds()
        if not state.settled:
            if waited < self.settings.ci_settle_timeout:
                return Decision("defer", f"waiting for {', '.join(state.pending[:5])}")
            # Waited long enough: work with what has failed so far.
            state = await ci_state(gh, session.repo, session.head_sha, app_id=self.settings.app_id, settled_only=False)
        if not state.failures:
            comment = None if round_.automatic else messages.ci_not_failing(session.head_sha)
            return Decision("cancel", "nothing fails on the head", comment=comment)
        if round_.automatic and await self.store.count_runs(session.id, "ci_fix", session.head_sha):
            return Decision("cancel", "a CI round already worked on this head")
        limit = self._over_budget(session, round_, config)
        if limit is not None:
            categories = sorted({f.category for f in state.failures})
            return Decision("escalate", messages.ci_limit_reached(limit, categories))
        return Decision.run(Plan(failures=state.failures, more_failures=state.more))

    async def _review(self, gh: Any, session: SessionRow, round_: RoundRow, config: RepoConfig) -> Decision:
        """Every review the round answers: its own and those that joined it while it was queued."""
        trigger = round_.trigger_data()
        entries = review_entries(trigger)
        comments: list[Comment] = []
        reviewers: list[str] = []
        for entry in entries:
            got = await review_comments(gh, session, entry["review_id"])
            # A plain "commented" review (no inline comment) is conversation, not a change request.
            if entry.get("state") == "commented" and not any(c.path for c in got):
                got = []
            comments += got
            reviewer = entry.get("reviewer")
            if got and reviewer and reviewer not in reviewers:
                reviewers.append(reviewer)
        if not comments and entries:
            return Decision("cancel", "the review holds nothing to address")
        limit = self._over_budget(session, round_, config)
        if limit is not None:
            return Decision("escalate", messages.review_limit_reached(limit))
        if not reviewers and trigger.get("reviewer"):
            reviewers.append(trigger["reviewer"])
        return Decision.run(Plan(review_comments=comments, reviewers=reviewers))

    async def _rebase(self, gh: Any, session: SessionRow, round_: RoundRow) -> Decision:
        owner, name = session.owner_name
        pr = await gh.getitem(
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            {"owner": owner, "repo": name, "pull_number": session.pr_number},
        )
        base = (pr.get("base") or {}).get("ref") or session.base_branch
        if pr.get("state") != "open":
            return Decision("cancel", "the pull request is closed")
        if pr.get("mergeable") is None:
            waited = (utcnow() - round_.created_at).total_seconds()
            if waited < MERGEABILITY_WAIT:
                return Decision("defer", "GitHub is still computing mergeability")
            log.info(
                "mergeability of #%s still unknown after %.0f s; merging the base anyway", session.pr_number, waited
            )
        elif pr.get("mergeable") and pr.get("mergeable_state") not in ("dirty", "behind"):
            # "behind": branch protection wants the branch up to date with its base.
            return Decision("cancel", "the pull request still merges cleanly")
        return Decision.run(Plan(base_branch=base))
