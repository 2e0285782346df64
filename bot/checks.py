"""The `Compound` check run: what a round did, live, in the PR's Checks tab.

Output always fits GitHub's limits (summary and text ≤ 65,535 characters, at
most three actions, labels ≤ 20 and descriptions ≤ 40 characters) and passes
through the log redactor, so no token or key reaches the Checks tab.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.logs import redactor

log = logging.getLogger("compound.checks")

CHECK_NAME = "Compound"
MAX_OUTPUT = 65_535
_MARK = "\n[… earlier output truncated …]\n"

RETRY = {"label": "Retry", "description": "Run this round again", "identifier": "retry"}
STOP = {"label": "Stop", "description": "Stop the agent", "identifier": "stop"}


def clip(text: str, limit: int = MAX_OUTPUT, *, keep: str = "tail") -> str:
    """Redact, then cut to `limit` characters keeping the tail (logs) or the head."""
    text = redactor(text)
    if len(text) <= limit:
        return text
    if keep == "tail":
        return _MARK + text[-(limit - len(_MARK)) :]
    return text[: limit - len(_MARK)] + _MARK


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RoundFigures:
    """What the summary table shows."""

    model: str | None
    backend: str
    session_id: str
    round_number: int
    kind: str
    duration: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    files_changed: int | None = None
    insertions: int | None = None
    deletions: int | None = None
    sandbox: str | None = None  # what isolated the agent (bot/agents/sandbox.py)

    def table(self) -> str:
        def show(value: Any, fmt: str = "{}") -> str:
            return "—" if value is None else fmt.format(value)

        tokens = (
            "—"
            if self.input_tokens is None and self.output_tokens is None
            else f"{self.input_tokens or 0:,} in / {self.output_tokens or 0:,} out"
        )
        files = show(self.files_changed)
        if self.files_changed is not None and self.insertions is not None:
            files += f" (+{self.insertions} −{self.deletions or 0})"
        rows = [
            ("Model", f"`{self.model}`" if self.model else "backend default"),
            ("Backend", self.backend),
            ("Round", f"{self.round_number} ({self.kind})"),
            ("Duration", show(self.duration, "{:.1f} s")),
            ("Tokens", tokens),
            ("Cost", show(self.cost_usd, "${:.4f}")),
            ("Files changed", files),
            ("Session", f"`{self.session_id}`"),
        ]
        if self.sandbox:
            rows.append(("Sandbox", self.sandbox))
        return "| | |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


class CheckRun:
    """One `Compound` check run on one commit; progress updates are throttled."""

    def __init__(self, gh: Any, repo: str, *, external_id: str, min_interval: float = 5.0) -> None:
        self.gh = gh
        self.repo = repo
        self.external_id = external_id
        self.min_interval = min_interval
        self.id: int | None = None
        self._lines: deque[str] = deque(maxlen=400)
        self._last_update = 0.0
        self._pending: asyncio.Task[None] | None = None
        self._title = ""
        self._summary = ""

    async def start(self, head_sha: str, title: str, summary: str) -> int:
        self._title, self._summary = title, summary
        data = await self.gh.post(
            f"/repos/{self.repo}/check-runs",
            data={
                "name": CHECK_NAME,
                "head_sha": head_sha,
                "status": "in_progress",
                "started_at": now_iso(),
                "external_id": self.external_id,
                "output": {"title": clip(title, 255, keep="head"), "summary": clip(summary, keep="head")},
                "actions": [STOP],
            },
        )
        self.id = data["id"]
        self._last_update = time.monotonic()
        return self.id

    def progress(self, line: str) -> None:
        """Called for every output line of the agent; pushes the tail now and then."""
        self._lines.append(line.rstrip("\n"))
        if self.id is None or self._pending is not None:
            return
        wait = self.min_interval - (time.monotonic() - self._last_update)
        self._pending = asyncio.get_running_loop().create_task(self._flush(max(wait, 0.0)))

    async def _flush(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._last_update = time.monotonic()
            text = "```\n" + "\n".join(self._lines) + "\n```"
            await self.gh.patch(
                f"/repos/{self.repo}/check-runs/{self.id}",
                data={"output": {"title": self._title, "summary": self._summary, "text": clip(text)}},
            )
        except Exception as exc:  # progress is best effort; the final update matters
            log.warning("check run progress update failed: %s", exc)
        finally:
            self._pending = None

    async def _settle(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
            self._pending = None

    async def complete(self, conclusion: str, title: str, summary: str, text: str = "") -> None:
        await self._settle()
        if self.id is None:
            return
        await self.gh.patch(
            f"/repos/{self.repo}/check-runs/{self.id}",
            data=completed_fields(conclusion, title, summary, text),
        )

    async def create_completed(self, head_sha: str, conclusion: str, title: str, summary: str, text: str = "") -> int:
        data = await self.gh.post(
            f"/repos/{self.repo}/check-runs",
            data={
                "name": CHECK_NAME,
                "head_sha": head_sha,
                "external_id": self.external_id,
                **completed_fields(conclusion, title, summary, text),
            },
        )
        self.id = data["id"]
        return self.id


def completed_fields(conclusion: str, title: str, summary: str, text: str) -> dict[str, Any]:
    output = {"title": clip(title, 255, keep="head"), "summary": clip(summary, keep="head")}
    if text:
        output["text"] = clip(text)
    return {
        "status": "completed",
        "conclusion": conclusion,
        "completed_at": now_iso(),
        "output": output,
        "actions": [RETRY],
    }
