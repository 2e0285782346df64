"""Runs queued rounds (bot/sessions/rounds.py does one): the claim loop and its slots.

A worker claims a session (and so its branch) from the store, runs its next
round, and lets go. `MAX_CONCURRENT_SESSIONS` rounds run at once per process;
the claim itself keeps to each installation's quotas and serves installations
in turn (bot/sessions/quotas.py), so the slots are shared fairly.
A stop request (the `/agent stop` command or the check run's Stop button) is
seen within a second, wherever the round runs: the flag lives in the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot.agents import AgentRunner
from bot.agents.orphans import RunRecords, reap_orphans
from bot.events import EventLog
from bot.logs import log_context
from bot.prompts import Prompts
from bot.sessions import messages
from bot.sessions.identity import BotIdentity, co_author
from bot.sessions.quotas import QuotaKeeper
from bot.sessions.rounds import RoundFailed, RoundRunner, round_client
from bot.settings import Settings
from bot.store.sessions import FAILED, QUEUED, R_QUEUED, RoundRow, SessionRow, SessionStore
from bot.workspace import Workspaces

__all__ = ["BotIdentity", "RoundFailed", "SessionWorker", "co_author"]

log = logging.getLogger("compound.sessions")

# Tries of a round that ends in an unexpected error (not an agent failure).
MAX_ROUND_ATTEMPTS = 3


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
        learning: Any = None,
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
        self.runner = runner or AgentRunner(records=RunRecords(settings.data_dir / "agents"))
        self._slots = asyncio.Semaphore(settings.max_concurrent_sessions)
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stops: dict[str, asyncio.Event] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self.quotas = QuotaKeeper(settings, store, events, lambda session: round_client(github, session))
        self.rounds = RoundRunner(
            settings=settings,
            store=store,
            github=github,
            workspaces=workspaces,
            prompts=prompts,
            events=events,
            identity=identity,
            runner=self.runner,
            stops=self._stops,
            learning=learning,
        )

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
                    if self.runner.records is not None:
                        await asyncio.to_thread(reap_orphans, self.runner.records)
                await self._claim_what_fits()
            except Exception:
                log.exception("session worker loop failed; trying again")
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(self.poll_interval, heartbeat_every))
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def _claim_what_fits(self) -> None:
        try:
            await self.quotas.sweep()
        except Exception:  # the claim keeps to the cap anyway; only the telling waits
            log.exception("could not hold or release rounds by the daily quota")
        while not self._slots.locked():
            claimed = await self.store.claim(self.owner, self.lease, limit=1, quotas=self.quotas.quotas)
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
            gh = round_client(self.github, session)
            why = messages.crashed(round_, exc)
            await self.rounds.fail(gh, session, round_, why, status=FAILED)
        except Exception:
            log.exception("could not record the crash of %s", session.id)

    # -- one round -------------------------------------------------------------

    async def run_round(self, session: SessionRow, round_: RoundRow) -> None:
        await self.rounds.run(session, round_)
