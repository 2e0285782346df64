"""Session events: a JSON line in `DATA_DIR/events.jsonl` and a row in the store (docs/design.md §6)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
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
    learning loop) hear every event after it is written.

    With `max_bytes`, a line that takes the file to that size or past it
    rotates it: `events.jsonl.1` … `.{keep}`, the oldest dropped (see
    `_rotate`)."""

    def __init__(self, path: Path, store: SessionStore, *, max_bytes: int = 0, keep: int = 5) -> None:
        self.path = path
        self.store = store
        self.listeners: list[Listener] = []
        self.max_bytes = max_bytes
        self.keep = max(1, keep)

    async def record(self, session: SessionRow, type_: str, round_: RoundRow | None = None, **data: Any) -> None:
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
            size = f.tell()  # append mode: the end of the file, our line included
        if self.max_bytes and size >= self.max_bytes:
            try:
                self._rotate()
            except Exception:  # the line is written; a rotation that failed is tried at the next one
                log.warning("could not rotate %s", self.path, exc_info=True)

    def _rotate(self) -> None:
        """Shift `events.jsonl` to `.1` (`.1` to `.2`, …, the last one dropped).

        Renames only, so no line is lost: a writer that opened the file just
        before still appends to it under its new name, and the next one
        creates a fresh file. One rotator at a time (a lock file, across
        processes too); whoever gets the lock second finds the file small
        again and leaves it.
        """
        with open(self.path.with_name(self.path.name + ".rotate-lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_size < self.max_bytes:
                    return
            except FileNotFoundError:
                return  # moved away (logrotate): nothing to do
            for n in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
