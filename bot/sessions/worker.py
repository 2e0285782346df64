"""Runs queued rounds: workspace, prompt, agent, commit, push, PR, check run.

A worker claims a session (and so its branch) from the store, runs its next
round, and lets go. `MAX_CONCURRENT_SESSIONS` rounds run at once per process.
A stop request (the `/agent stop` command or the check run's Stop button) is
seen within a second, wherever the round runs: the flag lives in the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.agents import AgentRequest, AgentResult, AgentRunner, get_backend
from bot.agents.orphans import reap_orphans
from bot.checks import CheckRun, RoundFigures
from bot.config import RepoConfig, is_forbidden
from bot.events import EventLog
from bot.logs import log_context
from bot.prompts import Comment, PromptContext, Prompts
from bot.sessions import messages
from bot.settings import Settings
from bot.store.base import utcnow
from bot.store.sessions import (
    AWAITING,
    FAILED,
    PREPARING,
    PUSHING,
    QUEUED,
    R_DONE,
    R_FAILED,
    R_QUEUED,
    R_STOPPED,
    RUNNING,
    STOPPED,
    RoundRow,
    SessionRow,
    SessionStore,
)
from bot.workspace import CommitIdentity, GitError, Trailers, Workspace, Workspaces

log = logging.getLogger("compound.sessions")

# Tries of a round that ends in an unexpected error (not an agent failure).
MAX_ROUND_ATTEMPTS = 3


@dataclass
class BotIdentity:
    """Who Compound's commits are by: the App's bot user."""

    slug: str
    user_id: int | None = None

    @property
    def login(self) -> str:
        return f"{self.slug}[bot]"

    @property
    def commit_identity(self) -> CommitIdentity:
        return co_author(self.login, self.user_id)

    async def resolve(self, gh: Any) -> CommitIdentity:
        """The identity with the bot user's id, looked up once.

        GitHub links a commit to an account by its noreply address, and a bot's
        is `<id>+<slug>[bot]@users.noreply.github.com`; without the id the
        commit shows an unlinked author. A failed look-up is tried again on the
        next commit and does not hold this one up.
        """
        if self.user_id is None:
            try:
                user = await gh.getitem("/users/{username}", url_vars={"username": self.login})
                self.user_id = int(user["id"])
            except Exception as exc:
                log.warning("could not look up the bot user %s (%s); committing without its id", self.login, exc)
        return self.commit_identity


def co_author(login: str, user_id: int | None) -> CommitIdentity:
    """A GitHub account as git identity: its noreply address, with the id when known."""
    prefix = f"{user_id}+" if user_id else ""
    return CommitIdentity(name=login, email=f"{prefix}{login}@users.noreply.github.com")


class RoundFailed(Exception):
    """Ends a round with a message for the issue or PR (not a crash)."""


class SessionWorker:
    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        github: Any,
        workspaces: Workspaces,
        prompts: Prompts,
        events: EventLog,
        owner: str,
        identity: BotIdentity,
        lease: float = 30.0,
        poll_interval: float = 2.0,
        runner: AgentRunner | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.workspaces = workspaces
        self.prompts = prompts
        self.events = events
        self.owner = owner
        self.identity = identity
        self.lease = lease
        self.poll_interval = poll_interval
        self.runner = runner or AgentRunner()
        self._slots = asyncio.Semaphore(settings.max_concurrent_sessions)
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stops: dict[str, asyncio.Event] = {}
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="session-worker")

    def poke(self) -> None:
        self._wakeup.set()

    def stop_local(self, session_id: str) -> bool:
        """Stop a round running in this process at once (the store flag covers the others)."""
        event = self._stops.get(session_id)
        if event is not None:
            event.set()
            return True
        return False

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for event in self._stops.values():
            event.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        heartbeat_every = self.lease / 3
        next_heartbeat = 0.0
        while True:
            try:
                if time.monotonic() >= next_heartbeat:
                    await self.store.renew(self.owner, self.lease)
                    next_heartbeat = time.monotonic() + heartbeat_every
                    # Agents of a Compound process that died on this machine stop here.
                    await asyncio.to_thread(reap_orphans)
                await self._claim_what_fits()
            except Exception:
                log.exception("session worker loop failed; trying again")
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(self.poll_interval, heartbeat_every))
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def _claim_what_fits(self) -> None:
        while not self._slots.locked():
            claimed = await self.store.claim(self.owner, self.lease, limit=1)
            if not claimed:
                return
            session, round_ = claimed[0]
            await self._slots.acquire()
            task = asyncio.create_task(self._run_and_release(session, round_), name=f"round-{session.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_and_release(self, session: SessionRow, round_: RoundRow) -> None:
        try:
            with log_context(session=session.id, repo=session.repo, round=round_.number):
                await self.run_round(session, round_)
        except Exception as exc:
            log.exception("round crashed", extra={"session": session.id})
            await self._after_crash(session, round_, exc)
        finally:
            await self.store.release(session.id, self.owner)
            self._slots.release()
            self._wakeup.set()

    async def _after_crash(self, session: SessionRow, round_: RoundRow, exc: Exception) -> None:
        """An unexpected error (GitHub down past its retries, the store…): try again
        a few times, then give up with a comment rather than loop forever."""
        try:
            if round_.attempts < MAX_ROUND_ATTEMPTS:
                await self.store.update_round(round_.id, status=R_QUEUED)
                await self.store.update_session(session.id, status=QUEUED, error=str(exc)[:4000])
                return
            gh = self.github.installation(session.installation_id)
            why = messages.crashed(round_, exc)
            await self._fail(gh, session, round_, why, None, status=FAILED)
        except Exception:
            log.exception("could not record the crash of %s", session.id)

    # -- one round -------------------------------------------------------------

    async def run_round(self, session: SessionRow, round_: RoundRow) -> None:
        gh = self.github.installation(session.installation_id)
        config = RepoConfig.model_validate(session.config_data())
        stop = asyncio.Event()
        self._stops[session.id] = stop
        watcher = asyncio.create_task(self._watch_stop(round_.id, stop))
        check: CheckRun | None = None
        workspace: Workspace | None = None
        started = time.monotonic()
        await self.store.update_session(session.id, status=PREPARING)
        await self.events.record(session, "round.started", round_, attempt=round_.attempts)
        try:
            token = await self.github.tokens.get(session.installation_id)
            follow_up = session.head_sha is not None
            workspace = await self.workspaces.open(
                session.repo, session.id, session.branch, token,
                start_from=session.branch if follow_up else None,
            )
            if follow_up:
                # A follow-up round works on an existing head: show it live there.
                check = CheckRun(gh, session.repo, external_id=session.id)
                await check.start(
                    session.head_sha, f"Round {round_.number}: {round_.kind} — agent working",
                    messages.round_intro(session, round_),
                )
                await self.store.update_round(round_.id, check_run_id=check.id, head_before=session.head_sha)
            prompt = await self._prompt(gh, session, round_, config)
            await self.store.update_round(round_.id, prompt_variant=prompt.variant)
            round_.prompt_variant = prompt.variant
            await self.store.update_session(session.id, status=RUNNING)
            result = await self._run_agent(session, round_, config, workspace, prompt.text, stop, check)
            await self._finish(gh, session, round_, config, workspace, result, check, started, token)
        except RoundFailed as exc:
            await self._fail(gh, session, round_, str(exc), check, status=FAILED)
        except GitError as exc:
            await self._fail(gh, session, round_, messages.git_failed(exc), check, status=FAILED)
        finally:
            watcher.cancel()
            self._stops.pop(session.id, None)
            if workspace is not None:
                try:
                    await self.workspaces.close(workspace)
                except Exception:
                    log.warning("could not remove workspace of %s", session.id, exc_info=True)

    async def _watch_stop(self, round_id: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            try:
                if await self.store.stop_requested(round_id):
                    stop.set()
            except Exception:
                log.warning("could not read the stop flag", exc_info=True)

    async def _prompt(self, gh: Any, session: SessionRow, round_: RoundRow, config: RepoConfig) -> Any:
        context = round_.context_data()
        if "issue_body" not in context:  # follow-up rounds: the issue as the task round saw it
            first = (await self.store.rounds(session.id))[0]
            context["issue_body"] = first.context_data().get("issue_body", "")
        owner, name = session.owner_name
        comments: list[Comment] = []
        if round_.kind == "task":
            raw = await gh.getitem(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                {"owner": owner, "repo": name, "issue_number": session.issue_number},
            )
            own = f"{self.identity.slug}[bot]"
            comments = [
                Comment(author=c["user"]["login"], body=c.get("body") or "")
                for c in raw
                if c["user"]["login"] != own  # Compound's own notes are not the task
            ]
        prompt_context = PromptContext(
            kind=round_.kind,
            repo=session.repo,
            issue_number=session.issue_number,
            issue_title=session.issue_title,
            issue_body=context.get("issue_body", ""),
            comments=comments,
            instructions=round_.instructions,
            pr_number=session.pr_number,
            branch=session.branch,
            config=config,
        )
        variants = self.prompts.variants(round_.kind)
        return self.prompts.render(prompt_context, variant=variants[0])

    async def _run_agent(
        self,
        session: SessionRow,
        round_: RoundRow,
        config: RepoConfig,
        workspace: Workspace,
        prompt: str,
        stop: asyncio.Event,
        check: CheckRun | None,
    ) -> AgentResult:
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
            on_output=check.progress if check is not None else None,
        )
        await self.events.record(session, "agent.started", round_)
        return await self.runner.run(backend, request, stop)

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
        token: str,
    ) -> None:
        figures = RoundFigures(
            model=result.usage.model or round_.model or session.model,
            backend=session.backend,
            session_id=session.id,
            round_number=round_.number,
            kind=round_.kind,
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
            session, "agent.finished", round_, exit_code=result.exit_code, timed_out=result.timed_out,
            stopped=result.stopped, duration=result.duration,
            input_tokens=result.usage.input_tokens, output_tokens=result.usage.output_tokens,
            cost_usd=result.usage.cost_usd,
        )
        if result.stopped:
            await self._fail(gh, session, round_, messages.stopped(round_), check, status=STOPPED, result=result)
            return
        if not result.ok:
            await self._fail(
                gh, session, round_, messages.agent_failed(result, self.settings), check,
                status=FAILED, result=result,
            )
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
        head = await workspace.commit(message, identity, trailers, self._forbidden(session, config))
        if head is None:
            await self._fail(gh, session, round_, messages.no_changes(round_, result), check, status=FAILED, result=result)
            return
        files, insertions, deletions = await workspace.diffstat()
        figures.files_changed, figures.insertions, figures.deletions = files, insertions, deletions
        head = await workspace.push(token)
        owner, name = session.owner_name
        pr_number = session.pr_number
        if pr_number is None:
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
            await self.store.update_session(session.id, pr_number=pr_number, base_branch=pr["base"]["ref"])
            session.pr_number = pr_number
            await gh.post(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                {"owner": owner, "repo": name, "issue_number": session.issue_number},
                data={"body": messages.pr_opened(session, pr)},
            )
        else:
            await gh.post(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                {"owner": owner, "repo": name, "issue_number": pr_number},
                data={"body": messages.round_done(round_, result, figures, head)},
            )
        summary = messages.check_summary(round_, result, figures)
        title = f"Round {round_.number} ({round_.kind}): {figures.files_changed} files changed"
        final = CheckRun(gh, session.repo, external_id=session.id)
        await final.create_completed(head, "success", title, summary, messages.log_text(result))
        if check is not None:
            await check.complete("neutral", f"Superseded by {head[:7]}", summary)
        await self.store.update_round(
            round_.id, status=R_DONE, head_after=head, files_changed=files,
            check_run_id=final.id, finished_at=utcnow(),
        )
        await self.store.update_session(session.id, status=AWAITING, head_sha=head, error=None)
        session.head_sha = head
        await self.events.record(session, "round.pushed", round_, head=head, files_changed=files, pr=pr_number)

    @staticmethod
    def _forbidden(session: SessionRow, config: RepoConfig) -> Callable[[str], bool]:
        """Paths never pushed: the repo's `forbidden_paths`, and the CLI's own scratch
        files (aider leaves `.aider.tags.cache.v*` and friends in the worktree)."""
        patterns = list(config.forbidden_paths)
        if session.backend == "aider":
            patterns.append(".aider*")
        return lambda path: is_forbidden(path, patterns)

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
    ) -> None:
        """End the round (and, for a first round, the session) with a comment saying why."""
        round_status = R_STOPPED if status == STOPPED else R_FAILED
        await self.store.update_round(round_.id, status=round_status, finished_at=utcnow())
        # A follow-up round that failed leaves the PR as it was: the session waits again.
        session_status = status if session.pr_number is None else AWAITING
        if status == STOPPED:
            session_status = STOPPED
        await self.store.update_session(session.id, status=session_status, error=why[:4000])
        owner, name = session.owner_name
        target = session.pr_number or session.issue_number
        try:
            await gh.post(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                {"owner": owner, "repo": name, "issue_number": target},
                data={"body": why},
            )
            if check is not None:
                conclusion = "cancelled" if status == STOPPED else "failure"
                await check.complete(
                    conclusion, f"Round {round_.number}: {conclusion}", why,
                    messages.log_text(result) if result else "",
                )
        finally:
            await self.events.record(session, f"round.{round_status}", round_, reason=why[:500])
