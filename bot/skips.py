"""Deliveries that cannot be acted on: recorded `skipped` with the reason, never run.

A delivery with no `installation` (GitHub sends some, e.g. for events of the
App itself), for an installation that was deleted or is suspended, or for a
repository the App was removed from, has nothing to act with: a handler would
call GitHub with the App's JWT, be refused (401/404), be retried and end up
parked as `failed`. The dispatcher asks `DeliveryGate.reason` first, and a
delivery with a reason is marked `skipped` once, without a call to GitHub.

What the gate knows comes from the store, which the `installation` and
`installation_repositories` handlers keep (those two events always run: they
are how the store learns). An installation the store has never seen (its
`installation.created` was sent while Compound was not listening, or before
this database existed) is looked up once with `GET /app/installations/{id}`:
found, it is recorded and the delivery runs; not found (404), it is recorded
as deleted and this delivery and every later one for it are skipped. With no
App configured nothing is looked up (the handlers do nothing then anyway).

Answers are kept in memory for `TTL` seconds, and dropped at once when an
installation event of this process changes the installation.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gidgethub

if TYPE_CHECKING:
    from bot.store import Store
    from bot.store.deliveries import DeliveryRecord

log = logging.getLogger("compound.skips")

# The events that keep the store's installations: they run whatever it says.
ALWAYS_RUN = frozenset({"installation", "installation_repositories"})
TTL = 30.0
_UNKNOWN_ACCOUNT = "(unknown)"


class DeliveryGate:
    def __init__(self, store: Store, github: Any = None, *, ttl: float = TTL) -> None:
        self.store = store
        self.github = github  # bot.github.GitHub, or None with no App configured
        self.ttl = ttl
        self._installations: dict[int, tuple[float, str | None]] = {}
        self._repos: dict[tuple[int, str], tuple[float, bool]] = {}
        self.lookups = 0  # GET /app/installations/{id} made (for tests and metrics)

    def forget(self, installation_id: int) -> None:
        """The installation changed (an installation event ran here): ask the store again."""
        self._installations.pop(installation_id, None)
        for key in [k for k in self._repos if k[0] == installation_id]:
            del self._repos[key]

    async def reason(self, record: DeliveryRecord) -> str | None:
        """Why this delivery cannot be acted on, or None when the handlers should run.

        Raises what the GitHub lookup raised (an outage holds the delivery, as
        any handler's would).
        """
        if record.event in ALWAYS_RUN:
            return None
        installation_id = record.installation_id
        if not installation_id:
            return "no installation in the payload: nothing to act with"
        why = await self._installation(installation_id)
        if why is not None:
            return why
        if record.repo and await self._repo_removed(installation_id, record.repo):
            return f"repository {record.repo} was removed from installation {installation_id}"
        return None

    async def _installation(self, installation_id: int) -> str | None:
        now = time.monotonic()
        kept = self._installations.get(installation_id)
        if kept is not None and now - kept[0] < self.ttl:
            return kept[1]
        why = await self._installation_state(installation_id)
        self._installations[installation_id] = (time.monotonic(), why)
        return why

    async def _installation_state(self, installation_id: int) -> str | None:
        inst = await self.store.installations.get(installation_id)
        if inst is None:
            if self.github is None:
                return None
            inst = await self._look_up(installation_id)
            if inst is None:
                return f"installation {installation_id} is unknown to GitHub (deleted)"
        if inst.deleted and inst.account_login == _UNKNOWN_ACCOUNT:
            return f"installation {installation_id} is unknown to GitHub (deleted)"
        if inst.deleted:
            return f"installation {installation_id} was deleted"
        if inst.suspended:
            return f"installation {installation_id} is suspended"
        return None

    async def _look_up(self, installation_id: int) -> Any:
        """Ask GitHub about an installation the store has never seen, and record the answer."""
        self.lookups += 1
        try:
            found = await self.github.app().getitem(f"/app/installations/{installation_id}")
        except gidgethub.BadRequest as exc:
            if exc.status_code != 404:
                raise
            log.info("installation %d is not known to GitHub; its deliveries are skipped", installation_id)
            await self.store.installations.upsert(
                installation_id,
                account_login=_UNKNOWN_ACCOUNT,
                account_type=None,
                repository_selection=None,
                deleted=True,
            )
            return None
        account = found.get("account") or {}
        login = account.get("login") or account.get("slug") or account.get("name") or _UNKNOWN_ACCOUNT
        await self.store.installations.upsert(
            installation_id,
            account_login=login,
            account_type=account.get("type"),
            repository_selection=found.get("repository_selection"),
            suspended=bool(found.get("suspended_at")),
        )
        log.info("installation %d (%s) learned from GitHub", installation_id, login)
        return await self.store.installations.get(installation_id)

    async def _repo_removed(self, installation_id: int, full_name: str) -> bool:
        key = (installation_id, full_name.lower())
        now = time.monotonic()
        kept = self._repos.get(key)
        if kept is not None and now - kept[0] < self.ttl:
            return kept[1]
        removed = await self.store.installations.repository_removed(installation_id, full_name)
        self._repos[key] = (time.monotonic(), removed)
        return removed
