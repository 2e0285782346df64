"""Session events: a JSON line in `DATA_DIR/events.jsonl` and a row in the store (docs/design.md §6)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bot.store.base import utcnow
from bot.store.sessions import RoundRow, SessionRow, SessionStore

log = logging.getLogger("compound.events")

# The version of the event schema (docs/events.md); bumped on any change that
# is not adding an optional field.
SCHEMA_VERSION = 1


Listener = Callable[[SessionRow, str, dict[str, Any]], Awaitable[None]]


class EventLog:
    """Writing an event never breaks a session: a failed write is logged and the
    session goes on. The file is opened for each line, so it can be rotated
    (renamed, or moved by logrotate) while the service runs. Listeners (the
    learning loop) hear every event after it is written."""

    def __init__(self, path: Path, store: SessionStore) -> None:
        self.path = path
        self.store = store
        self.listeners: list[Listener] = []

    async def record(
        self, session: SessionRow, type_: str, round_: RoundRow | None = None, **data: Any
    ) -> None:
        line: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "ts": utcnow().isoformat(timespec="milliseconds"),
            "type": type_,
            "session": session.id,
            "repo": session.repo,
            "issue": session.issue_number,
            "pr": session.pr_number,
            "model": (round_.model if round_ and round_.model else session.model),
            "backend": session.backend,
        }
        if round_ is not None:
            line.update(round=round_.number, kind=round_.kind, prompt_variant=round_.prompt_variant)
        line.update(data)
        stored = {k: v for k, v in line.items() if k not in {"ts", "type", "session"}}
        try:
            await self.store.add_event(session.id, type_, stored)
        except Exception:
            log.warning("could not store event %s of %s", type_, session.id, exc_info=True)
        try:
            encoded = orjson.dumps(line, default=str) + b"\n"
            # One write of one line in append mode: lines from several processes never interleave.
            await asyncio.to_thread(self._append, encoded)
        except Exception:
            log.warning("could not write event %s of %s to %s", type_, session.id, self.path, exc_info=True)
        log.info("session %s: %s", session.id, type_, extra={"session": session.id, "repo": session.repo})
        for listener in self.listeners:
            try:
                await listener(session, type_, stored)
            except Exception:
                log.warning("an event listener failed on %s of %s", type_, session.id, exc_info=True)

    def _append(self, encoded: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(encoded)
