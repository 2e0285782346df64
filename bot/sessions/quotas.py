"""Per-installation quotas: what one installation may take of a shared deployment.

Two bounds (docs/operations.md#quotas). `MAX_SESSIONS_PER_INSTALLATION`
rounds run at once; the claim (bot/store/sessions.py) leaves the rest queued
and serves the other installations, round-robin. Past
`MAX_ROUNDS_PER_INSTALLATION_PER_DAY` rounds started in a UTC day, the claim
takes none of the installation's queued rounds; this module marks them
`held` so the thread is told once (and when it resets) instead of wondering,
records `round.held`, and when the day rolls releases them (`round.released`).
A maintainer's `/agent retry` marks them `bypass`, past the cap.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.events import EventLog
from bot.github.api import comment
from bot.sessions import messages
from bot.settings import Settings
from bot.store.base import utcnow
from bot.store.sessions import Quotas, SessionRow, SessionStore, day_start

log = logging.getLogger("compound.sessions.quotas")


def quotas_of(settings: Settings) -> Quotas:
    per_day = settings.max_rounds_per_installation_per_day
    return Quotas(running=settings.max_sessions_per_installation, per_day=per_day or None)


def resets_at(now: datetime | None = None) -> datetime:
    return day_start(now or utcnow()) + timedelta(days=1)


class QuotaKeeper:
    """Holds and releases rounds by the daily cap; the worker runs `sweep` before it claims."""

    def __init__(self, settings: Settings, store: SessionStore, events: EventLog, client: Any) -> None:
        self.quotas = quotas_of(settings)
        self.store = store
        self.events = events
        self.client = client  # session -> its GitHub client (rounds.round_client)

    async def sweep(self) -> None:
        per_day = self.quotas.per_day
        for session, round_, _ in await self.store.release_held(per_day):
            await self.events.record(session, "round.released", round_, quota="daily", by="day")
        if per_day is None:
            return
        until = resets_at()
        for session, round_, first in await self.store.hold_over_cap(per_day):
            await self.events.record(
                session,
                "round.held",
                round_,
                quota="daily",
                limit=per_day,
                resets_at=until.isoformat(),
            )
            if first:
                await self._tell(session, per_day, until)

    async def _tell(self, session: SessionRow, limit: int, until: datetime) -> None:
        """One comment on the session's thread; a failure to post is logged (the round is held anyway)."""
        number = session.pr_number or session.issue_number
        try:
            await comment(self.client(session), session.repo, number, messages.daily_limit(session, limit, until))
        except Exception:
            log.warning("could not tell %s#%s its round is held", session.repo, number, exc_info=True)
