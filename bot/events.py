"""Session events: a JSON line in `DATA_DIR/events.jsonl` and a row in the store (DESIGN §6)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson

from bot.store.base import utcnow
from bot.store.sessions import RoundRow, SessionRow, SessionStore

log = logging.getLogger("compound.events")


class EventLog:
    def __init__(self, path: Path, store: SessionStore) -> None:
        self.path = path
        self.store = store

    async def record(
        self, session: SessionRow, type_: str, round_: RoundRow | None = None, **data: Any
    ) -> None:
        line: dict[str, Any] = {
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
        await self.store.add_event(session.id, type_, {k: v for k, v in line.items() if k not in {"ts", "type", "session"}})
        encoded = orjson.dumps(line, default=str) + b"\n"
        # One write of one line in append mode: lines from several processes never interleave.
        await asyncio.to_thread(self._append, encoded)
        log.info("session %s: %s", session.id, type_, extra={"session": session.id, "repo": session.repo})

    def _append(self, encoded: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(encoded)
