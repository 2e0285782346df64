"""What the handlers ask of sessions: who may start one, start, follow up, stop, retry."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.config import RepoConfig, UnknownModelAlias, resolve_model
from bot.events import EventLog
from bot.github.api import can_trigger, comment, own_comment, permission, react
from bot.sessions import escalation, messages
from bot.settings import Settings
from bot.store.base import utcnow
from bot.store.sessions import (
    BYPASS,
    ESCALATED,
    R_FAILED,
    R_QUEUED,
    R_RUNNING,
    R_STOPPED,
    RoundRow,
    SessionRow,
    SessionStore,
)
from bot.store.triggers import AlreadyTriggered, TriggerStore

log = logging.getLogger("compound.sessions")

# A second trigger label this soon after the one that started the session
# (`agent` and `agent:opus` added together) is the same request: no "already running".
LABEL_BURST_SECONDS = 60.0
# What a person's round says asked for it (its trigger's `asked`, shown in its check run).
FIX_CI_COMMAND, RETRY_COMMAND = "`/agent fix-ci`", "`/agent retry`"
RETRY_BUTTON, RERUN = "the Retry button", "a re-run in the Checks tab"

__all__ = ["SessionManager", "comment", "react"]  # handlers post with these


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        events: EventLog,
        worker: Any = None,
        bot_login: str | None = None,
        learning: Any = None,
    ) -> None:
        self.settings = settings
        self.learning = learning
        self.store = store
        self.events = events
        self.worker = worker
        self.bot_login = bot_login
        self.triggers = TriggerStore(store.engine)

    def is_compound(self, login: str) -> bool:
        """Whether a login is Compound's own bot user (its pushes, comments, check runs)."""
        return bool(self.bot_login) and login.lower() == (self.bot_login or "").lower()

    async def report_config_error(self, gh: Any, repo: str, number: int, error: str) -> None:
        """Tell the thread its `.github/compound.yml` is invalid, once per thread and error.

        Every trigger reads the config again; repeating the same report at each
        one (a label, then `/agent status`, then a follow-up) would bury the
        conversation. A changed error, or another thread, gets its own report.
        """
        body = messages.config_invalid(error)
        if await own_comment(gh, repo, number, lambda text: text == body) is None:
            await comment(gh, repo, number, body)

    async def may_trigger(self, gh: Any, repo: str, sender: dict[str, Any], config: RepoConfig) -> bool | None:
        """True: go; False: refuse politely; None: a bot nobody allowed, ignore silently.

        A bot `allowed_bots` lists is admitted as it is: bots are no
        collaborators, so the permission endpoint would never say write.
        """
        login = sender.get("login", "")
        if self.is_compound(login):
            return None  # never its own comments, reviews or labels, even if `allowed_bots` names it
        is_bot = sender.get("type") == "Bot" or login.endswith("[bot]")
        if is_bot:
            return True if config.allows_bot(login) else None
        owner, name = repo.split("/", 1)
        return can_trigger(await permission(gh, owner, name, login))

    async def admit(
        self, gh: Any, repo: str, number: int, sender: dict[str, Any], config: RepoConfig, config_error: str | None
    ) -> bool:
        """May `sender` start work here? A person without write access gets a polite
        refusal; a bot nobody allowed is ignored. An invalid config is reported."""
        allowed = await self.may_trigger(gh, repo, sender, config)
        if allowed is None:
            log.info("%s is a bot the repo does not allow; ignored", sender.get("login"))
            return False
        if not allowed:
            await self.refuse(gh, repo, number, sender["login"])
            return False
        if config_error:
            await self.report_config_error(gh, repo, number, config_error)
        return True

    async def refuse(self, gh: Any, repo: str, number: int, login: str) -> None:
        """Tell someone without write access that they cannot start Compound, at most
        once per REFUSAL_INTERVAL per thread: a crowd of `/agent` comments on a
        popular issue must not turn into a crowd of refusals. Later ones are logged."""
        if not await self.triggers.claim_refusal(repo, number, self.settings.refusal_interval):
            log.info("%s may not trigger Compound on %s#%s; refused already within the interval", login, repo, number)
            return
        await comment(gh, repo, number, messages.refusal(login))

    async def start_task(
        self,
        gh: Any,
        *,
        repo: str,
        installation_id: int,
        issue: dict[str, Any],
        base_branch: str,
        config: RepoConfig,
        sender: dict[str, Any],
        instructions: str = "",
        alias: str | None = None,
        trigger_key: str | None = None,
        by_label: bool = False,
    ) -> SessionRow | None:
        """Start a session on the issue; None if it has one or `trigger_key` started it already.

        `by_label`: a label started it, so a session another trigger label
        started a moment ago (the same burst) is met in silence.
        """
        labels = [label["name"] for label in issue.get("labels") or []]
        try:
            model = resolve_model(config, self.settings.agent_model, labels, alias)
            chosen = resolve_model(config, None, labels, alias)
        except UnknownModelAlias as exc:
            await comment(gh, repo, issue["number"], f"Compound cannot start: {exc}")
            return None
        routing: dict[str, Any] = {}
        if config.routing == "learned" and chosen is None and self.learning is not None:
            learned, why = await self.learning.route(
                repo,
                labels,
                issue.get("title") or "",
                config,
                seed=f"{repo}#{issue['number']}:{utcnow().isoformat()}",
            )
            if learned is not None:
                model = learned
            routing = {"model": model, "why": why}
        try:
            created = await self._create(
                repo=repo,
                installation_id=installation_id,
                issue=issue,
                base_branch=base_branch,
                config=config,
                sender=sender,
                instructions=instructions,
                model=model,
                labels=labels,
                routing=routing,
                trigger_key=trigger_key,
            )
        except AlreadyTriggered:
            log.info("%s started its session already (redelivered); nothing to do", trigger_key)
            return None
        if created is None:
            active = await self.store.for_issue(repo, issue["number"])
            if active is None or not active.active and active.status != ESCALATED:
                log.info("%s#%s: the session that was active has ended meanwhile", repo, issue["number"])
                return None
            if by_label and (utcnow() - active.created_at).total_seconds() < LABEL_BURST_SECONDS:
                log.info(
                    "%s#%s: %s started a moment ago; this label is the same request", repo, issue["number"], active.id
                )
            else:
                await comment(gh, repo, issue["number"], messages.already_running(active))
            if trigger_key is not None:  # answered: the same event again says nothing more
                await self.triggers.claim(trigger_key)
            return None
        session, round_ = created
        await self.events.record(
            session,
            "session.created",
            round_,
            trigger=sender["login"],
            labels=labels,
            **({"routing": routing} if routing else {}),
        )
        self._poke()
        return session

    async def _create(
        self,
        *,
        repo: str,
        installation_id: int,
        issue: dict[str, Any],
        base_branch: str,
        config: RepoConfig,
        sender: dict[str, Any],
        instructions: str,
        model: str | None,
        labels: list[str],
        routing: dict[str, Any],
        trigger_key: str | None,
    ) -> tuple[SessionRow, RoundRow] | None:
        return await self.store.create(
            repo=repo,
            installation_id=installation_id,
            issue_number=issue["number"],
            issue_title=issue.get("title") or "",
            branch=f"compound/issue-{issue['number']}",
            backend=config.agent.backend or self.settings.agent_backend,
            model=model,
            triggered_by=sender["login"],
            config=config.model_dump(mode="json"),
            instructions=instructions,
            # The issue as the trigger's payload shows it: what the maintainer
            # read when they started the session. Later edits are not followed.
            issue_body=issue.get("body") or "",
            context={
                "requested_by_id": sender.get("id"),
                "base_branch": base_branch,
                "labels": labels,
                **({"routing": routing} if routing else {}),
            },
            trigger_key=trigger_key,
        )

    async def follow_up(
        self,
        session: SessionRow,
        *,
        kind: str,
        sender: dict[str, Any],
        instructions: str = "",
        context: dict[str, Any] | None = None,
        trigger: dict[str, Any] | None = None,
        once: str | None = None,
        quota: str | None = None,
    ) -> RoundRow:
        """Queue a round; AlreadyTriggered if `once` (the trigger's key) queued one before."""
        round_ = await self.store.add_round(
            session.id,
            kind=kind,
            requested_by=sender.get("login"),
            instructions=instructions,
            context={"requested_by_id": sender.get("id"), **(context or {})},
            model=session.model,
            trigger=trigger,
            once=once,
            quota=quota,
        )
        await self.events.record(session, "round.queued", round_)
        self._poke()
        return round_

    async def stop(self, session: SessionRow) -> tuple[bool, int]:
        running, cancelled = await self.store.request_stop(session.id)
        if self.worker is not None:
            self.worker.stop_local(session.id)
        await self.events.record(session, "session.stop_requested", running=running, cancelled=cancelled)
        return running is not None, cancelled

    async def release_held(self, session: SessionRow, sender: dict[str, Any]) -> list[RoundRow]:
        """A maintainer's `/agent retry` on a session whose rounds the daily cap holds: run them now."""
        released = await self.store.bypass_held(session.id)
        for round_ in released:
            await self.events.record(session, "round.released", round_, quota="daily", by=sender.get("login"))
        if released:
            self._poke()
        return released

    async def retry(
        self,
        session: SessionRow,
        sender: dict[str, Any],
        gh: Any = None,
        *,
        once: str | None = None,
        bypass: bool = False,
        asked: str = RETRY_COMMAND,
    ) -> RoundRow | None:
        """Queue the last failed or stopped round again; None if there is nothing to retry.

        The new round's trigger names how it was asked for (`asked`: the command,
        or the Retry button) and, under `retry_of`, the round it runs again; an
        escalated session whose rounds all pushed gets one CI round instead,
        with no `retry_of` (no round of it failed).
        `bypass`: a maintainer's `/agent retry`, which goes past the daily cap.
        """
        if once is not None and await self.triggers.seen(once):
            raise AlreadyTriggered(once)
        rounds = await self.store.rounds(session.id)
        if any(r.status in (R_QUEUED, R_RUNNING) for r in rounds):
            return None
        last = next((r for r in reversed(rounds) if r.status in (R_FAILED, R_STOPPED)), None)
        escalated = session.status == ESCALATED
        if last is None and not (escalated and session.pr_number is not None):
            return None
        if escalated:
            await escalation.resume(
                gh, self.store, self.events, session, by=sender.get("login", ""), reset_budget=False
            )
        quota = BYPASS if bypass else None
        if last is None:  # escalated after its fix rounds: one more look at CI
            return await self.fix_ci(None, session, sender, once=once, quota=quota, asked=asked)
        return await self.follow_up(
            session,
            kind=last.kind,
            sender=sender,
            instructions=last.instructions,
            context=last.context_data(),
            trigger={**last.trigger_data(), "asked": asked, "retry_of": last.number},
            once=once,
            quota=quota,
        )

    async def issue_edited(self, gh: Any, session: SessionRow | None, issue: dict[str, Any]) -> None:
        """The issue's text changed after the trigger: say once that the session keeps the old.

        Following an edit silently would let anyone who can edit the issue
        rewrite a task a maintainer already started; ignoring it silently would
        leave the editor expecting the agent to see it.
        """
        if session is None or session.outcome is not None:
            return
        if (issue.get("body") or "") == (session.issue_body or "") and (
            issue.get("title") or ""
        ) == session.issue_title:
            return  # an edit the trigger already saw, or a change back
        if not await self.store.claim_edit_notice(session.id):
            return
        try:
            config = RepoConfig.model_validate(session.config_data())
            await comment(gh, session.repo, session.issue_number, messages.issue_edited(session, config.trigger_label))
        except BaseException:
            await self.store.release_edit_notice(session.id)  # the delivery's retry says it
            raise
        await self.events.record(session, "session.issue_edited")

    # -- healing: what events ask for ---------------------------------------------

    def _may_heal(self, session: SessionRow, what: str) -> bool:
        """Whether an event may start a round by itself on this session now."""
        if session.status == ESCALATED:
            log.info("session %s is escalated: no %s round by itself", session.id, what)
            return False
        if session.held:
            log.info("session %s: %s is someone else's head; no %s round", session.id, session.head_sha, what)
            return False
        return True

    async def _queue(
        self,
        session: SessionRow,
        *,
        kind: str,
        key: str,
        trigger: dict[str, Any],
        delay: float,
        requested_by: str | None = None,
        context: dict[str, Any] | None = None,
        join: bool = False,
    ) -> RoundRow | None:
        round_ = await self.store.queue_automatic(
            session.id,
            kind=kind,
            trigger_key=key,
            trigger=trigger,
            not_before=utcnow() + timedelta(seconds=delay),
            requested_by=requested_by,
            context=context,
            model=session.model,
            join=join,
        )
        if round_ is not None and round_.trigger_key != key:
            # It joined the round already queued: that one handles both.
            await self.events.record(session, "round.joined", round_, trigger=trigger, automatic=True)
        elif round_ is not None:
            await self.events.record(session, "round.queued", round_, trigger=trigger, automatic=True)
        # Also when the round existed: its wait may have been brought forward.
        self._poke()
        return round_

    async def ci_failed(self, session: SessionRow, head: str, *, event: str, settled: bool) -> RoundRow | None:
        """A check failed on the session PR's current head: one `ci_fix` round per head.

        The round waits for the suite to settle (`CI_QUIET_SECONDS` after a lone
        check run; at once after a whole suite or workflow completed) and then
        reads every failing check itself, so many events make one round.
        """
        if head != session.head_sha or not self._may_heal(session, "CI"):
            return None
        delay = 0.0 if settled else self.settings.ci_quiet_seconds
        return await self._queue(
            session,
            kind="ci_fix",
            key=f"ci:{head}",
            trigger={"event": event, "head": head},
            delay=delay,
        )

    async def ci_settled(self, session: SessionRow, head: str) -> None:
        """A suite completed without failing: a CI round waiting on this head need wait no longer."""
        if head == session.head_sha and await self.store.bring_forward(session.id, f"ci:{head}", utcnow()):
            self._poke()

    async def review_feedback(
        self, session: SessionRow, *, review_id: int, reviewer: dict[str, Any], event: str, state: str = "commented"
    ) -> RoundRow | None:
        """A review (or one of its comments) from someone with write access: one round per review.

        A review that arrives while another's round is still queued joins that
        round (one round answers both, in both reviews' threads); while one
        runs, it is queued to run next. No review is dropped for a later one.
        """
        if session.status == ESCALATED:
            log.info("session %s is escalated: no review round by itself", session.id)
            return None
        # The review's own event means its comments are all there; a lone
        # comment event waits a moment for its siblings.
        delay = 0.0 if event == "pull_request_review" else self.settings.review_quiet_seconds
        return await self._queue(
            session,
            kind="review_fix",
            key=f"review:{review_id}",
            trigger={"event": event, "review_id": review_id, "reviewer": reviewer.get("login"), "state": state},
            delay=delay,
            requested_by=reviewer.get("login"),
            context={"requested_by_id": reviewer.get("id")},
            join=True,
        )

    async def base_moved(self, session: SessionRow, *, base_sha: str, event: str = "push") -> RoundRow | None:
        """The PR's base branch moved (a push to it, or GitHub saying the PR no longer
        merges): a `rebase` round, which first asks GitHub whether the PR still
        merges (and does nothing if it does). Once per base and head."""
        if not self._may_heal(session, "rebase"):
            return None
        return await self._queue(
            session,
            kind="rebase",
            key=f"rebase:{base_sha}:{session.head_sha}",
            trigger={"event": event, "base_sha": base_sha, "base_branch": session.base_branch},
            delay=2.0,  # GitHub computes mergeability after the push, not with it
        )

    async def human_pushed(self, session: SessionRow, *, head: str, login: str) -> None:
        """Someone else pushed to the session branch: stand back for that head."""
        await self.store.update_session(session.id, head_sha=head, hold_head=head)
        session.head_sha = session.hold_head = head
        await self.events.record(session, "session.held", head=head, pusher=login)

    async def fix_ci(
        self,
        gh: Any,
        session: SessionRow,
        sender: dict[str, Any],
        *,
        once: str | None = None,
        quota: str | None = None,
        asked: str = FIX_CI_COMMAND,
    ) -> RoundRow:
        """`/agent fix-ci`: one CI round on the current head, whatever the budget or escalation.

        `asked`: what the round's trigger says asked for it (a retry comes here too).
        """
        if once is not None and await self.triggers.seen(once):
            raise AlreadyTriggered(once)  # before resuming: a redelivery changes nothing
        if session.status == ESCALATED:
            await escalation.resume(
                gh, self.store, self.events, session, by=sender.get("login", ""), reset_budget=False
            )
        return await self.follow_up(
            session,
            kind="ci_fix",
            sender=sender,
            trigger={"event": "command", "head": session.head_sha, "asked": asked},
            once=once,
            quota=quota,
        )

    async def unlabeled(self, gh: Any, session: SessionRow | None, sender: dict[str, Any]) -> None:
        """`agent:needs-human` came off the issue or the PR: resume, if a maintainer did it."""
        if session is None or session.status != ESCALATED or self.is_compound(sender.get("login", "")):
            return
        config = RepoConfig.model_validate(session.config_data())
        if not await self.may_trigger(gh, session.repo, sender, config):
            log.info("%s removed the escalation label but may not resume %s", sender.get("login"), session.id)
            return
        await self.label_removed(gh, session, sender)

    async def command(
        self,
        gh: Any,
        session: SessionRow,
        sender: dict[str, Any],
        instructions: str,
        *,
        once: str | None = None,
    ) -> RoundRow:
        """`/agent <instructions>` on the session PR: a follow-up round, resuming an escalated session."""
        if once is not None and await self.triggers.seen(once):
            raise AlreadyTriggered(once)
        if session.status == ESCALATED:
            await escalation.resume(
                gh, self.store, self.events, session, by=sender.get("login", ""), reset_budget=False
            )
        return await self.follow_up(session, kind="command", sender=sender, instructions=instructions, once=once)

    async def label_removed(self, gh: Any, session: SessionRow, sender: dict[str, Any]) -> None:
        """`agent:needs-human` removed by a maintainer: Compound carries on by itself,
        with its rounds anew, starting with a look at the head's CI."""
        if session.status != ESCALATED:
            return
        await escalation.resume(gh, self.store, self.events, session, by=sender.get("login", ""), reset_budget=True)
        if session.pr_number is not None and session.head_sha:
            await self.store.queue_automatic(
                session.id,
                kind="ci_fix",
                trigger_key=f"resume:{utcnow().isoformat()}",
                trigger={"event": "resume", "head": session.head_sha},
                model=session.model,
            )
            self._poke()

    async def set_model(self, session: SessionRow, config: RepoConfig, alias: str) -> str:
        model = resolve_model(config, self.settings.agent_model, [], alias)
        await self.store.update_session(session.id, model=model)
        await self.events.record(session, "session.model_changed", model=model)
        return model or "default"

    def _poke(self) -> None:
        if self.worker is not None:
            self.worker.poke()
