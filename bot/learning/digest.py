"""The periodic digest: `compound report`'s figures for each closed period, as an issue (docs/report.md).

Opt-in: `REPORT_DIGEST_REPO=owner/name` turns it on; `REPORT_DIGEST_INTERVAL`
(default `weekly`) sets the period. Periods are fixed in UTC, the same in
every process: weeks start on Monday 00:00, days at midnight, other lengths
count from Monday 2024-01-01. Once a period has closed, the next check posts
one issue with that period's figures, in the digest repository, with the
token of the installation that has it. Later checks find the issue again by
its marker (`<!-- compound:digest period=START/END -->`, in issues Compound
opened) and edit it if the figures changed (a session of the period whose
outcome was written late), so a restart posts nothing twice. Two processes
(a `serve` and a `worker`, or two workers) take a lock first (an advisory
lock on PostgreSQL, a lock file beside the SQLite database): the one that
does not get it leaves the period to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import http
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bot.learning.report import build_report
from bot.learning.report_table import render as render_tables
from bot.settings import Settings

log = logging.getLogger("compound.digest")

MARKER = "<!-- compound:digest"
# A Monday at midnight UTC: weekly periods start on Mondays, daily ones at midnight.
ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)
# How often a running service checks (at most): the issue appears within this of the period's end.
MAX_TICK = timedelta(hours=1)
# GitHub's limit on an issue body is 65,536 characters.
MAX_BODY = 65_000
# Any constant works; it only has to be the same in every Compound process (and not the migrations').
_LOCK = 0x0C0B0D16
# Issues created this long before the period ended cannot be its digest (room for clock skew).
_SKEW = timedelta(hours=1)


def last_period(now: datetime, length: timedelta) -> tuple[datetime, datetime]:
    """The last period of `length` that has ended by `now`: [start, end)."""
    end = ANCHOR + ((now - ANCHOR) // length) * length
    return end - length, end


def marker(start: datetime, end: datetime) -> str:
    return f"{MARKER} period={start.isoformat()}/{end.isoformat()} -->"


def title(start: datetime, end: datetime) -> str:
    if (end - start) % timedelta(days=1):
        return f"Compound digest: {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
    last_day = end - timedelta(days=1)
    span = f"{start:%Y-%m-%d}" if last_day == start else f"{start:%Y-%m-%d} – {last_day:%Y-%m-%d}"
    return f"Compound digest: {span}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def render(report: dict[str, Any], start: datetime, end: datetime, interval: str) -> str:
    """The issue's body: the marker, the headline figures, and the report's tables."""
    t = report["totals"]
    low_high = t["first_try_interval"]
    span = f" (95 % interval {100 * low_high[0]:.0f}–{100 * low_high[1]:.0f} %)" if low_high else ""
    rounds = "-" if t["mean_rounds"] is None else f"{t['mean_rounds']:.2f}"
    head = [
        marker(start, end),
        f"## {title(start, end)}",
        "",
        f"**{t['sessions']} sessions** ended, **{t['outcomes']['merged']} merged**; "
        f"first try **{_pct(t['first_try_rate'])}**{span}; {rounds} fix rounds per session; "
        f"cost ${t['cost_usd']:.2f}.",
        "",
        f"The figures of `compound report --since {start.isoformat()}` for this period only "
        "(Compound's docs/report.md says how they are computed), posted because `REPORT_DIGEST_REPO` "
        "names this repository "
        f"(`REPORT_DIGEST_INTERVAL={interval}`). If a session of the period is recorded late, "
        "this issue is edited, not posted again.",
        "",
    ]
    tables = render_tables(report)
    room = MAX_BODY - sum(len(x) + 1 for x in head) - 40
    if len(tables) > room:
        tables = tables[:room].rsplit("\n", 1)[0] + "\n… (cut: `compound report --json` has every figure)\n"
    return "\n".join(head) + "```text\n" + tables + "```\n"


class Digest:
    """Posts (or edits) the digest issue of the last closed period; `run()` checks periodically."""

    def __init__(self, settings: Settings, store: Any, github: Any, *, bot_login: str | None = None) -> None:
        assert settings.report_digest_repo, "REPORT_DIGEST_REPO is not set"
        self.repo: str = settings.report_digest_repo
        self.interval = settings.report_digest_interval
        self.length = settings.digest_period
        self.store = store
        self.github = github
        self.bot_login = bot_login
        self.tick = min(self.length / 4, MAX_TICK)
        self._complained: str | None = None  # the last problem logged, so a check each hour does not repeat it

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("digest: could not post the digest to %s", self.repo, extra={"repo": self.repo})
            await asyncio.sleep(self.tick.total_seconds())

    async def run_once(self, now: datetime | None = None) -> str:
        """One check: `created`, `edited`, `unchanged`, `empty` (no session ended in the
        period), `busy` (another process holds the lock) or `not-installed`."""
        start, end = last_period(now or datetime.now(UTC), self.length)
        report = await build_report(self.store.engine, since=start, until=end)
        if not report["totals"]["sessions"]:
            log.debug("digest: no session ended in %s – %s; nothing to post", start, end)
            return "empty"
        installation_id = await self._installation()
        if installation_id is None:
            return "not-installed"
        gh = self.github.repository(installation_id, self.repo, {"issues": "write"})
        body = render(report, start, end, self.interval)
        async with _exclusive(self.store) as mine:
            if not mine:
                return "busy"
            existing = await self._find(gh, marker(start, end), end)
            owner, name = self.repo.split("/", 1)
            if existing is None:
                issue = await gh.post(
                    "/repos/{owner}/{repo}/issues",
                    {"owner": owner, "repo": name},
                    data={"title": title(start, end), "body": body},
                )
                log.info(
                    "digest: posted %s#%s for %s – %s",
                    self.repo,
                    issue["number"],
                    start,
                    end,
                    extra={"repo": self.repo, "issue": issue["number"]},
                )
                return "created"
            if existing.get("body") == body:
                return "unchanged"
            await gh.patch(
                "/repos/{owner}/{repo}/issues/{issue_number}",
                {"owner": owner, "repo": name, "issue_number": existing["number"]},
                data={"body": body},
            )
            log.info(
                "digest: edited %s#%s for %s – %s",
                self.repo,
                existing["number"],
                start,
                end,
                extra={"repo": self.repo, "issue": existing["number"]},
            )
            return "edited"

    async def _installation(self) -> int | None:
        import gidgethub

        owner, name = self.repo.split("/", 1)
        try:
            found = await self.github.app().getitem(
                "/repos/{owner}/{repo}/installation", {"owner": owner, "repo": name}
            )
        except gidgethub.BadRequest as exc:
            if exc.status_code != http.HTTPStatus.NOT_FOUND:
                raise
            problem = (
                f"digest: REPORT_DIGEST_REPO={self.repo}, but Compound is not installed on that repository "
                f"(GET /repos/{self.repo}/installation answered 404); no digest is posted until the App is "
                "installed there"
            )
            if problem != self._complained:
                log.warning(problem, extra={"repo": self.repo})
                self._complained = problem
            return None
        self._complained = None
        return int(found["id"])

    async def _find(self, gh: Any, mark: str, end: datetime) -> dict[str, Any] | None:
        """The period's digest issue, if Compound opened it already (newest issues first)."""
        owner, name = self.repo.split("/", 1)
        url = "/repos/{owner}/{repo}/issues?state=all&sort=created&direction=desc&per_page=100"
        if self.bot_login:
            url += "&creator={creator}"
        async for issue in gh.getiter(url, {"owner": owner, "repo": name, "creator": self.bot_login}):
            created = datetime.fromisoformat(issue["created_at"].replace("Z", "+00:00"))
            if created < end - _SKEW:
                return None
            if (issue.get("user") or {}).get("type") == "Bot" and (issue.get("body") or "").startswith(mark):
                return dict(issue)
        return None


@contextlib.asynccontextmanager
async def _exclusive(store: Any) -> AsyncIterator[bool]:
    """Whether this process may post now: at most one Compound process at a time does."""
    if store.dialect == "postgresql":
        async with store.engine.connect() as conn:
            mine = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK})).scalar())
            await conn.commit()
            try:
                yield mine
            finally:
                if mine:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK})
                    await conn.commit()
        return
    database = store.engine.url.database
    if not database or database == ":memory:":
        yield True  # one process: nothing to share the database with
        return
    with open(Path(f"{database}.digest-lock"), "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
