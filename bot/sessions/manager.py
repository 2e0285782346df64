"""What the handlers ask of sessions: who may start one, start, follow up, stop, retry."""

from __future__ import annotations

import logging
from typing import Any

from bot.config import RepoConfig, UnknownModelAlias, resolve_model
from bot.events import EventLog
from bot.github.api import can_trigger, permission
from bot.sessions import messages
from bot.settings import Settings
from bot.store.sessions import (
    R_FAILED,
    R_QUEUED,
    R_RUNNING,
    R_STOPPED,
    RoundRow,
    SessionRow,
    SessionStore,
)

log = logging.getLogger("compound.sessions")


async def comment(gh: Any, repo: str, number: int, body: str) -> None:
    owner, name = repo.split("/", 1)
    await gh.post(
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        {"owner": owner, "repo": name, "issue_number": number},
        data={"body": body},
    )


async def react(gh: Any, repo: str, *, issue_number: int | None = None, comment_id: int | None = None) -> None:
    """👀 on the comment (or the issue) that asked for work: "seen, on it"."""
    owner, name = repo.split("/", 1)
    if comment_id is not None:
        url, params = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", {"comment_id": comment_id}
    else:
        url, params = "/repos/{owner}/{repo}/issues/{issue_number}/reactions", {"issue_number": issue_number}
    await gh.post(url, {"owner": owner, "repo": name, **params}, data={"content": "eyes"})


class SessionManager:
    def __init__(self, settings: Settings, store: SessionStore, events: EventLog, worker: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.worker = worker

    async def report_config_error(self, gh: Any, repo: str, number: int, error: str) -> None:
        """Tell the thread its `.github/compound.yml` is invalid, once per thread and error.

        Every trigger reads the config again; repeating the same report at each
        one (a label, then `/agent status`, then a follow-up) would bury the
        conversation. A changed error, or another thread, gets its own report.
        """
        body = messages.config_invalid(error)
        owner, name = repo.split("/", 1)
        async for earlier in gh.getiter(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            {"owner": owner, "repo": name, "issue_number": number},
        ):
            if earlier.get("body") == body and (earlier.get("user") or {}).get("type") == "Bot":
                return
        await comment(gh, repo, number, body)

    async def may_trigger(self, gh: Any, repo: str, sender: dict[str, Any], config: RepoConfig) -> bool | None:
        """True: go; False: refuse politely; None: a bot nobody allowed, ignore silently."""
        login = sender.get("login", "")
        is_bot = sender.get("type") == "Bot" or login.endswith("[bot]")
        if is_bot and not config.allows_bot(login):
            return None
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
            await comment(gh, repo, number, messages.refusal(sender["login"]))
            return False
        if config_error:
            await self.report_config_error(gh, repo, number, config_error)
        return True

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
    ) -> SessionRow | None:
        labels = [label["name"] for label in issue.get("labels") or []]
        try:
            model = resolve_model(config, self.settings.agent_model, labels, alias)
        except UnknownModelAlias as exc:
            await comment(gh, repo, issue["number"], f"Compound cannot start: {exc}")
            return None
        created = await self.store.create(
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
            context={
                "issue_body": issue.get("body") or "",
                "requested_by_id": sender.get("id"),
                "base_branch": base_branch,
            },
        )
        if created is None:
            active = await self.store.for_issue(repo, issue["number"])
            assert active is not None
            await comment(gh, repo, issue["number"], messages.already_running(active))
            return None
        session, round_ = created
        await self.events.record(session, "session.created", round_, trigger=sender["login"])
        self._poke()
        return session

    async def follow_up(
        self,
        session: SessionRow,
        *,
        kind: str,
        sender: dict[str, Any],
        instructions: str = "",
        context: dict[str, Any] | None = None,
    ) -> RoundRow:
        round_ = await self.store.add_round(
            session.id,
            kind=kind,
            requested_by=sender.get("login"),
            instructions=instructions,
            context={"requested_by_id": sender.get("id"), **(context or {})},
            model=session.model,
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

    async def retry(self, session: SessionRow, sender: dict[str, Any]) -> RoundRow | None:
        """Queue the last failed or stopped round again; None if there is nothing to retry."""
        rounds = await self.store.rounds(session.id)
        if any(r.status in (R_QUEUED, R_RUNNING) for r in rounds):
            return None
        last = next((r for r in reversed(rounds) if r.status in (R_FAILED, R_STOPPED)), None)
        if last is None:
            return None
        return await self.follow_up(
            session, kind=last.kind, sender=sender, instructions=last.instructions,
            context=last.context_data(),
        )

    async def set_model(self, session: SessionRow, config: RepoConfig, alias: str) -> str:
        model = resolve_model(config, self.settings.agent_model, [], alias)
        await self.store.update_session(session.id, model=model)
        await self.events.record(session, "session.model_changed", model=model)
        return model or "default"

    def _poke(self) -> None:
        if self.worker is not None:
            self.worker.poke()
