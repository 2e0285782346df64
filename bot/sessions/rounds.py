"""One round, from the claim to the push: preflight, workspace, prompt, agent, commit, PR.

Every kind runs through here: `task` (a new PR), `command` (`/agent …` on
the PR), and the healing kinds `ci_fix`, `review_fix` and `rebase`, which
first ask GitHub what there is to do (bot/sessions/preflight.py). A round
whose agent fails on every attempt (`AGENT_ATTEMPTS`), a healing round that
changes nothing, a merge whose conflicts stay, and fix rounds used up all
end the same way: the session is escalated (bot/sessions/escalation.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from bot.agents import AgentRequest, AgentResult, AgentRunner, get_backend
from bot.agents.base import AgentUsage
from bot.checks import CheckRun, RoundFigures
from bot.config import RepoConfig, is_forbidden
from bot.events import EventLog
from bot.github.api import comment
from bot.learning import RoundPlan
from bot.learning.lessons import review_kinds
from bot.prompts import MAX_REVIEW_COMMENTS, Comment, PromptContext, Prompts
from bot.sessions import escalation, messages
from bot.sessions.commenters import Commenters
from bot.sessions.identity import co_author
from bot.sessions.preflight import HEALING, Decision, Plan, Preflight
from bot.sessions.reviews import reply, request_rereview, thread_roots
from bot.settings import Settings
from bot.store.base import utcnow
from bot.store.sessions import (
    AWAITING,
    FAILED,
    PREPARING,
    PUSHING,
    QUEUED,
    R_CANCELLED,
    R_DONE,
    R_FAILED,
    R_STOPPED,
    RUNNING,
    STOPPED,
    RoundRow,
    SessionRow,
    SessionStore,
)
from bot.workspace import GitError, Trailers, Workspace, Workspaces

log = logging.getLogger("compound.sessions")

DEFER_SECONDS = 5.0

# What a round's REST calls need, on its repository only: comments, labels and
# reactions (issues), the PR, its reviews and reviewers (pull_requests), the
# Compound check run (checks), CI results and job logs (checks, statuses,
# actions), branches and commits (contents). Never contents:write: the push
# goes through git, with its own token (`GitHub.push_token`).
ROUND_PERMISSIONS = {
    "actions": "read",
    "checks": "write",
    "contents": "read",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "read",
}


def round_client(github: Any, session: SessionRow) -> Any:
    """The GitHub client for a round: a token that reaches the session's repository only."""
    return github.repository(session.installation_id, session.repo, ROUND_PERMISSIONS)


class RoundFailed(Exception):
    """Ends a round with a message for the issue or PR (not a crash)."""


class RoundRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        github: Any,
        workspaces: Workspaces,
        prompts: Prompts,
        events: EventLog,
        identity: Any,
        runner: AgentRunner,
        stops: dict[str, asyncio.Event],
        learning: Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.workspaces = workspaces
        self.prompts = prompts
        self.events = events
        self.identity = identity
        self.runner = runner
        self.preflight = Preflight(settings, store)
        self.learning = learning
        self._stops = stops

    # -- the round ------------------------------------------------------------

    async def run(self, session: SessionRow, round_: RoundRow) -> None:
        gh = round_client(self.github, session)
        config = RepoConfig.model_validate(session.config_data())
        decision = await self.preflight.decide(gh, session, round_, config)
        if decision.action != "run":
            await self._without_agent(gh, session, round_, decision)
            return
        plan = decision.plan
        if round_.automatic:
            await self.store.bump_budget(session.id, round_.kind)
        trigger = self._describe(round_, plan)
        round_.trigger = json.dumps(trigger)
        round_.categories = json.dumps(plan.categories) if plan.failures else None
        await self.store.update_round(round_.id, trigger=round_.trigger, categories=round_.categories)
        stop = asyncio.Event()
        self._stops[session.id] = stop
        watcher = asyncio.create_task(self._watch_stop(round_.id, stop))
        check: CheckRun | None = None
        workspace: Workspace | None = None
        started = time.monotonic()
        await self.store.update_session(session.id, status=PREPARING)
        await self.events.record(
            session,
            "round.started",
            round_,
            attempt=round_.attempts,
            trigger=trigger,
            categories=plan.categories or None,
        )
        try:
            # Fetching the mirror: the push token (one repository, contents only).
            token = await self.github.push_token(session.installation_id, session.repo)
            follow_up = session.head_sha is not None
            workspace = await self.workspaces.open(
                session.repo,
                session.id,
                session.branch,
                token,
                start_from=session.branch if follow_up else None,
                also=(plan.base_branch,) if plan.base_branch else (),
            )
            if session.head_sha is not None:
                # A follow-up round works on an existing head: show it live there.
                check = CheckRun(gh, session.repo, external_id=session.id)
                await check.start(
                    session.head_sha,
                    messages.round_title(round_, "agent working"),
                    messages.round_intro(session, round_, plan, self.runner.sandbox.describe()),
                )
                await self.store.update_round(round_.id, check_run_id=check.id, head_before=session.head_sha)
            conflicts: list[str] = []
            merging: str | None = None
            if round_.kind == "rebase":
                merging, conflicts = await self._start_merge(gh, session, workspace, plan)
                if conflicts:  # what the learning loop mines conflicts from
                    trigger["conflicts"] = conflicts[:50]
                    round_.trigger = json.dumps(trigger)
                    await self.store.update_round(round_.id, trigger=round_.trigger)
                if not conflicts:
                    result = _merged_cleanly(plan.base_branch)
                    await self._finish(gh, session, round_, config, workspace, result, check, started, plan, merging)
                    return
            prompt = await self._prompt(gh, session, round_, config, plan, conflicts)
            await self.store.update_round(round_.id, prompt_variant=prompt.variant)
            round_.prompt_variant = prompt.variant
            await self.store.update_session(session.id, status=RUNNING)
            result, tries = await self._run_agent(session, round_, config, workspace, prompt.text, stop, check)
            await self._finish(
                gh,
                session,
                round_,
                config,
                workspace,
                result,
                check,
                started,
                plan,
                merging,
                conflicts,
                tries,
            )
        except RoundFailed as exc:
            await self._fail(gh, session, round_, str(exc), check, status=FAILED)
        except GitError as exc:  # a refused push or merge: no round gets past it alone, so a person is called
            await self._fail(gh, session, round_, messages.git_failed(exc), check, status=FAILED, escalate=True)
        finally:
            watcher.cancel()
            self._stops.pop(session.id, None)
            if workspace is not None:
                try:
                    await self.workspaces.close(workspace)
                except Exception:
                    log.warning("could not remove workspace of %s", session.id, exc_info=True)

    async def _without_agent(self, gh: Any, session: SessionRow, round_: RoundRow, decision: Decision) -> None:
        """A healing round that waits, is not needed, or finds the session's rounds used up."""
        if decision.action == "defer":
            await self.store.defer(round_.id, DEFER_SECONDS)
            log.debug("round %s of %s waits: %s", round_.number, session.id, decision.why)
            return
        await self.store.update_round(round_.id, status=R_CANCELLED, finished_at=utcnow())
        await self.events.record(session, "round.cancelled", round_, reason=decision.why)
        if session.status == QUEUED:  # a person's round: the session waits again
            await self.store.update_session(session.id, status=AWAITING if session.pr_number else FAILED)
        if decision.comment and session.pr_number:
            await comment(gh, session.repo, session.pr_number, decision.comment)
        if decision.action == "escalate":
            await escalation.escalate(gh, self.store, self.events, session, decision.why)
        log.info("round %s (%s) of %s not run: %s", round_.number, round_.kind, session.id, decision.why)

    @staticmethod
    def _describe(round_: RoundRow, plan: Plan) -> dict[str, Any]:
        trigger = round_.trigger_data()
        if plan.failures:
            trigger["checks"] = [
                {
                    "name": f.name,
                    "conclusion": f.conclusion,
                    "category": f.category,
                    "url": f.url,
                    **({"command": f.command} if f.command else {}),
                }
                for f in plan.failures
            ]
        if plan.review_comments:
            trigger["comments"] = len(plan.review_comments)
            trigger["review_kinds"] = review_kinds(c.body for c in plan.review_comments)
            trigger["comment_ids"] = thread_roots(plan.review_comments)
        if plan.base_branch:
            trigger["base_branch"] = plan.base_branch
        return trigger

    async def _watch_stop(self, round_id: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            try:
                if await self.store.stop_requested(round_id):
                    stop.set()
            except Exception:
                log.warning("could not read the stop flag", exc_info=True)

    async def _start_merge(
        self, gh: Any, session: SessionRow, workspace: Workspace, plan: Plan
    ) -> tuple[str, list[str]]:
        assert plan.base_branch is not None
        base = await workspace.resolve(f"refs/remotes/origin/{plan.base_branch}")
        if base is None:
            raise RoundFailed(f"The base branch `{plan.base_branch}` is gone, so there is nothing to merge.")
        identity = await self.identity.resolve(gh)
        conflicts = await workspace.merge(base, identity)
        return base, conflicts

    # -- prompt and agent ---------------------------------------------------------

    async def _prompt(
        self, gh: Any, session: SessionRow, round_: RoundRow, config: RepoConfig, plan: Plan, conflicts: list[str]
    ) -> Any:
        own = f"{self.identity.slug}[bot]"
        commenters = Commenters(gh, session.repo, config, own_login=own)
        comments: list[Comment] = []
        left_out = 0
        if round_.kind == "task":
            owner, name = session.owner_name
            raw = await gh.getitem(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                {"owner": owner, "repo": name, "issue_number": session.issue_number},
            )
            comments, left_out = await commenters.screen(
                [
                    Comment(author=c["user"]["login"], body=c.get("body") or "")
                    for c in raw
                    if c["user"]["login"] != own  # Compound's own notes are not the task
                ]
            )
        review_comments, left_out_review = await commenters.screen(plan.review_comments)
        plan.unshown_review_ids = {c.id for c in review_comments[MAX_REVIEW_COMMENTS:] if c.id is not None}
        prompt_context = PromptContext(
            kind=round_.kind,
            repo=session.repo,
            issue_number=session.issue_number,
            issue_title=session.issue_title,
            issue_body=await self._issue_body(session),
            comments=comments,
            left_out_comments=left_out,
            instructions=round_.instructions,
            pr_number=session.pr_number,
            branch=session.branch,
            config=config,
            failures=plan.failures,
            review_comments=review_comments,
            left_out_review_comments=left_out_review,
            base_branch=plan.base_branch or session.base_branch,
            conflicts=conflicts,
        )
        learned = await self._learning_plan(session, round_, config, prompt_context)
        prompt_context.lessons = [lesson.text for lesson in learned.lessons]
        return self.prompts.render(prompt_context, variant=learned.variant)

    async def _learning_plan(
        self, session: SessionRow, round_: RoundRow, config: RepoConfig, context: PromptContext
    ) -> RoundPlan:
        """The variant and lessons the learning loop picks, recorded on the round."""
        variants = self.prompts.variants(round_.kind)
        if self.learning is None:
            return RoundPlan(variant=variants[0])
        learned = await self.learning.plan(
            session,
            round_,
            config,
            variants,
            f"{context.issue_title}\n{context.issue_body}\n{context.instructions}",
        )
        round_.lessons = json.dumps(learned.lesson_record())
        round_.choice = json.dumps(learned.choice)
        await self.store.update_round(round_.id, lessons=round_.lessons, choice=round_.choice)
        await self.events.record(
            session,
            "round.prompt",
            round_,
            variant=learned.variant,
            lessons=[x.id for x in learned.lessons],
            held_out=[x.id for x in learned.held_out],
            choice=learned.choice,
        )
        return learned

    async def _issue_body(self, session: SessionRow) -> str:
        """The issue's description as the trigger saw it, never as it reads now
        (handlers/issues.py tells the issue when it is edited since)."""
        if session.issue_body is not None:
            return session.issue_body
        # A session created by a Compound from before migration 0006 (a rolling
        # upgrade) kept it in its first round's context only.
        first = (await self.store.rounds(session.id))[0]
        return str(first.context_data().get("issue_body", ""))

    async def _run_agent(
        self,
        session: SessionRow,
        round_: RoundRow,
        config: RepoConfig,
        workspace: Workspace,
        prompt: str,
        stop: asyncio.Event,
        check: CheckRun | None,
    ) -> tuple[AgentResult, int]:
        """The agent (and how many tries it took), tried up to `AGENT_ATTEMPTS` times while it fails or times out.

        Each try starts from the round's workspace as the last one left it: a
        crash halfway often leaves useful work, and a clean restart would need
        a new worktree. A stop or a CLI that cannot start is not tried again.
        """
        backend_name = config.agent.backend or self.settings.agent_backend
        backend = get_backend(backend_name, command=self.settings.agent_command)
        request = AgentRequest(
            workspace=workspace.path,
            prompt=prompt,
            session_id=session.id,
            task_kind=round_.kind,
            model=round_.model or session.model,
            timeout=config.agent.timeout or self.settings.agent_timeout,
            args=list(config.agent.args),
            env_passthrough=self.settings.agent_passthrough_names(),
            git_common_dir=workspace.mirror,
            git_dir=workspace.git_dir,
            on_output=check.progress if check is not None else None,
            settle=workspace.settle_index,
        )
        await workspace.hand_to_agent()
        attempts = self.settings.agent_attempts
        for attempt in range(1, attempts + 1):
            await self.events.record(session, "agent.started", round_, agent_attempt=attempt)
            result = await self.runner.run(backend, request, stop)
            if result.ok or result.stopped or result.exit_code is None or attempt == attempts:
                return result, attempt
            await self.events.record(
                session,
                "agent.failed",
                round_,
                agent_attempt=attempt,
                exit_code=result.exit_code,
                timed_out=result.timed_out,
                duration=result.duration,
            )
            log.info("agent attempt %s of %s failed in %s; trying again", attempt, attempts, session.id)
        raise AssertionError("unreachable")

    # -- after the agent ------------------------------------------------------------

    async def _finish(
        self,
        gh: Any,
        session: SessionRow,
        round_: RoundRow,
        config: RepoConfig,
        workspace: Workspace,
        result: AgentResult,
        check: CheckRun | None,
        started: float,
        plan: Plan,
        merging: str | None = None,
        conflicts: list[str] | None = None,
        tries: int = 1,
    ) -> None:
        figures = RoundFigures(
            model=result.usage.model or round_.model or session.model,
            backend=session.backend,
            session_id=session.id,
            round_number=round_.number,
            kind=round_.kind,
            sandbox=self.runner.sandbox.describe(),
            duration=result.duration,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cost_usd=result.usage.cost_usd,
        )
        await self.store.update_round(
            round_.id,
            exit_code=result.exit_code,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cost_usd=result.usage.cost_usd,
            log_tail=result.log_tail[-20000:],
            summary=result.final_message,
        )
        await self.events.record(
            session,
            "agent.finished",
            round_,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            stopped=result.stopped,
            duration=result.duration,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cost_usd=result.usage.cost_usd,
            agent_attempts=tries,
        )
        if result.stopped:
            await self._fail(gh, session, round_, messages.stopped(round_), check, status=STOPPED, result=result)
            return
        if not result.ok:
            why = messages.agent_failed(result, self.settings, tries)
            await self._fail(gh, session, round_, why, check, status=FAILED, result=result, escalate=True)
            return
        await self.store.update_session(session.id, status=PUSHING)
        identity = await self.identity.resolve(gh)
        context = round_.context_data()
        trailers = Trailers(
            model=figures.model or "default",
            backend=session.backend,
            session=session.id,
            co_author=co_author(round_.requested_by or session.triggered_by, context.get("requested_by_id")),
        )
        message = messages.commit_message(session, round_, result)
        if merging is not None:
            left = await workspace.markers_left(conflicts or [])
            if left:
                why = messages.conflict_unresolved(left)
                await self._fail(gh, session, round_, why, check, status=FAILED, result=result, escalate=True)
                return
            head: str | None = await workspace.commit_merge(
                message, identity, trailers, self._forbidden(session, config), merging
            )
        else:
            head = await workspace.commit(message, identity, trailers, self._forbidden(session, config))
        if head is None:
            await self._fail(
                gh,
                session,
                round_,
                messages.no_changes(round_, result),
                check,
                status=FAILED,
                result=result,
                escalate=round_.kind in HEALING,
            )
            return
        paths, insertions, deletions = await workspace.changes()
        files = len(paths)
        figures.files_changed, figures.insertions, figures.deletions = files, insertions, deletions
        # Asked for now, not at the round's start: the agent may have run for most of a token's hour.
        head = await workspace.push(await self.github.push_token(session.installation_id, session.repo))
        owner, name = session.owner_name
        pr_number = session.pr_number
        if pr_number is not None:
            # The new head first: CI's events for it may arrive while the rest is posted.
            await self.store.update_session(session.id, head_sha=head, hold_head=None)
            session.head_sha = head
            if not round_.automatic:  # a person asked: answer in the conversation (CI rounds show in Checks)
                await comment(gh, session.repo, pr_number, messages.round_done(round_, result, figures, head, plan))
        else:
            pr = await gh.post(
                "/repos/{owner}/{repo}/pulls",
                {"owner": owner, "repo": name},
                data={
                    "title": session.issue_title or f"Resolve #{session.issue_number}",
                    "head": session.branch,
                    "base": context.get("base_branch") or "main",
                    "body": messages.pr_body(session, round_, result, figures),
                },
            )
            pr_number = pr["number"]
            await self.store.update_session(
                session.id,
                pr_number=pr_number,
                base_branch=pr["base"]["ref"],
                head_sha=head,
                hold_head=None,
            )
            session.pr_number, session.head_sha = pr_number, head
            await comment(gh, session.repo, session.issue_number, messages.pr_opened(session, pr))
        if round_.kind == "review_fix":
            shown = [c for c in plan.review_comments if c.id not in plan.unshown_review_ids]
            roots = thread_roots(shown)
            await reply(gh, session, roots, messages.review_reply(round_, head, result))
            unshown = [c for c in plan.review_comments if c.id in plan.unshown_review_ids]
            rest = [root for root in thread_roots(unshown) if root not in roots]
            await reply(gh, session, rest, messages.review_not_shown(round_, MAX_REVIEW_COMMENTS))
            await request_rereview(gh, session, plan.reviewers)
        summary = messages.check_summary(round_, result, figures, plan)
        title = messages.round_title(round_, f"{figures.files_changed} files changed")
        final = CheckRun(gh, session.repo, external_id=session.id)
        await final.create_completed(head, "success", title, summary, messages.log_text(result))
        if check is not None:
            await check.complete("neutral", f"Superseded by {head[:7]}", summary)
        await self.store.update_round(
            round_.id,
            status=R_DONE,
            head_after=head,
            files_changed=files,
            check_run_id=final.id,
            finished_at=utcnow(),
        )
        await self.store.update_session(session.id, status=AWAITING, error=None)
        await self.events.record(
            session,
            "round.pushed",
            round_,
            head=head,
            files_changed=files,
            pr=pr_number,
            categories=plan.categories or None,
            files=paths[:200],
        )

    @staticmethod
    def _forbidden(session: SessionRow, config: RepoConfig) -> Callable[[str], bool]:
        """Paths never pushed: the repo's `forbidden_paths`, and the CLI's own scratch
        files (aider leaves `.aider.tags.cache.v*` and friends in the worktree)."""
        patterns = list(config.forbidden_paths)
        if session.backend == "aider":
            patterns.append(".aider*")
        return lambda path: is_forbidden(path, patterns)

    async def fail(self, gh: Any, session: SessionRow, round_: RoundRow, why: str, *, status: str) -> None:
        await self._fail(gh, session, round_, why, None, status=status)

    async def _fail(
        self,
        gh: Any,
        session: SessionRow,
        round_: RoundRow,
        why: str,
        check: CheckRun | None,
        *,
        status: str,
        result: AgentResult | None = None,
        escalate: bool = False,
    ) -> None:
        """End the round with a comment saying why; escalate if Compound stops trying.

        A first round that fails ends the session as `failed`; a failed
        follow-up leaves the PR as it was. With `escalate`, the escalation
        comment (which says why) stands in for the failure comment.
        """
        round_status = R_STOPPED if status == STOPPED else R_FAILED
        await self.store.update_round(round_.id, status=round_status, finished_at=utcnow())
        session_status = status if session.pr_number is None else AWAITING
        if status == STOPPED:
            session_status = STOPPED
        await self.store.update_session(session.id, status=session_status, error=why[:4000])
        try:
            if escalate:
                await escalation.escalate(gh, self.store, self.events, session, why)
            else:
                await comment(gh, session.repo, session.pr_number or session.issue_number, why)
            if round_.kind == "review_fix" and session.pr_number is not None:
                plan_ids = [c for c in round_.trigger_data().get("comment_ids", [])]
                if plan_ids:
                    await reply(gh, session, plan_ids, messages.review_reply_failed(round_, why))
            if check is not None:
                conclusion = "cancelled" if status == STOPPED else "failure"
                await check.complete(
                    conclusion,
                    messages.round_title(round_, conclusion),
                    why,
                    messages.log_text(result) if result else "",
                )
        finally:
            await self.events.record(session, f"round.{round_status}", round_, reason=why[:500])
            if session_status in (FAILED, STOPPED) and not escalate:
                # The session ends here: the learning loop writes its outcome and retrospective.
                await self.events.record(session, f"session.{session_status}", reason=why[:500])


def _merged_cleanly(base: str | None) -> AgentResult:
    """The result of a merge git did by itself: no agent ran."""
    return AgentResult(
        exit_code=0,
        timed_out=False,
        stopped=False,
        duration=0.0,
        final_message=f"Merged `{base}` into the branch; git merged every file by itself, so no agent ran.",
        usage=AgentUsage(),
        log_tail="",
    )
