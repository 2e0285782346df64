"""The periodic digest (docs/report.md): end to end against the GitHub twin, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bot.github import GitHub
from bot.learning.digest import Digest, last_period, marker, title
from bot.metrics import Metrics
from bot.service import Service
from bot.store.learning import Outcome
from tests.conftest import make_settings, twin_settings

DIGEST_REPO = "octo/reports"
WORK_REPO = "octo/app"


def ended(n: int, at: datetime, *, first_try: bool) -> Outcome:
    return Outcome(
        session_id=f"s{n}",
        repo=WORK_REPO,
        installation_id=1,
        issue_number=n,
        pr_number=100 + n,
        outcome="merged",
        first_try=first_try,
        ci_rounds=0 if first_try else 1,
        review_rounds=0,
        rebase_rounds=0,
        started_at=at - timedelta(hours=2),
        ended_at=at,
        pr_opened_at=at - timedelta(hours=1),
        backend="command",
        task_kind="bug",
        cost_usd=1.5,
        prompt_template="task",
        prompt_variant="default",
    )


def settings_for(tmp_path, twin, database_url, **env):
    return twin_settings(
        tmp_path,
        twin,
        DATABASE_URL=database_url,
        AGENT_BACKEND="command",
        AGENT_COMMAND="true",
        AGENT_SANDBOX="none",
        **{"REPORT_DIGEST_REPO": DIGEST_REPO, **env},
    )


def digests(twin) -> list:
    repo = twin.state.repos[DIGEST_REPO]
    return [it for it in repo.issues.values() if (it.body or "").startswith("<!-- compound:digest")]


async def wait_for(check, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found


def test_periods_are_fixed_in_utc():
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # a Saturday
    start, end = last_period(now, timedelta(weeks=1))
    assert (start, end) == (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))  # Monday to Monday
    assert title(start, end) == "Compound digest: 2026-11-23 – 2026-11-29"
    assert last_period(now, timedelta(days=1)) == (datetime(2026, 12, 4, tzinfo=UTC), datetime(2026, 12, 5, tzinfo=UTC))
    assert title(*last_period(now, timedelta(days=1))) == "Compound digest: 2026-12-04"
    assert last_period(now, timedelta(hours=12))[1] == datetime(2026, 12, 5, 12, tzinfo=UTC)


async def test_the_service_posts_the_digest_once_and_edits_it_after_a_restart(tmp_path, twin, database_url, store):
    iid = twin.add_installation(account="octo")
    twin.add_repo(DIGEST_REPO, installation_id=iid, files={"README.md": "reports\n"})
    settings = settings_for(tmp_path, twin, database_url)
    start, end = last_period(datetime.now(UTC), settings.digest_period)
    # Three sessions ended in the last closed week (two first try), one before it and one after it.
    for n, at, ok in (
        (1, start + timedelta(days=1), True),
        (2, start + timedelta(days=2), True),
        (3, end - timedelta(minutes=1), False),
        (4, start - timedelta(minutes=1), True),
        (5, end + timedelta(seconds=1), True),
    ):
        await store.learning.save_outcome(ended(n, at, first_try=ok))

    service = Service(settings)
    await service.start()
    try:
        [issue] = await wait_for(lambda: digests(twin))
    finally:
        await service.stop()
    assert issue.title == title(start, end)
    assert issue.user == f"{twin.app_slug}[bot]"
    assert issue.body.startswith(marker(start, end))
    assert "**3 sessions** ended, **3 merged**; first try **66.7 %**" in issue.body
    assert "cost $4.50" in issue.body
    created = [r for r in twin.requests if r.operation_id == "issues/create"]
    assert len(created) == 1

    # A session of that week recorded late, then a restart: the same issue, edited; no second one.
    await store.learning.save_outcome(ended(6, start + timedelta(days=3), first_try=True))
    service = Service(settings)
    await service.start()
    try:
        await wait_for(lambda: "**4 sessions**" in (digests(twin)[0].body or ""))
    finally:
        await service.stop()
    assert [it.number for it in digests(twin)] == [issue.number]
    assert "first try **75.0 %**" in digests(twin)[0].body
    assert len([r for r in twin.requests if r.operation_id == "issues/create"]) == 1
    assert [r for r in twin.requests if r.operation_id == "issues/update"]


async def test_two_processes_post_one_issue_and_a_rerun_changes_nothing(tmp_path, twin, database_url, store):
    iid = twin.add_installation(account="octo")
    twin.add_repo(DIGEST_REPO, installation_id=iid, files={"README.md": "reports\n"})
    settings = settings_for(tmp_path, twin, database_url, REPORT_DIGEST_INTERVAL="daily")
    now = datetime.now(UTC)
    start, end = last_period(now, settings.digest_period)
    await store.learning.save_outcome(ended(1, start + timedelta(hours=3), first_try=True))
    async with aiohttp.ClientSession() as http:
        github = GitHub.from_settings(http, settings, Metrics())
        # Two workers, each with its own connection to the database, at once.
        one = Digest(settings, store, github, bot_login=f"{twin.app_slug}[bot]")
        other_store = type(store).connect(settings.resolved_database_url)
        try:
            two = Digest(settings, other_store, github, bot_login=f"{twin.app_slug}[bot]")
            results = await asyncio.gather(one.run_once(now), two.run_once(now))
        finally:
            await other_store.close()
        assert "created" in results and set(results) <= {"created", "busy", "unchanged"}
        assert len(digests(twin)) == 1
        assert await one.run_once(now) == "unchanged"
        # The next day: that day's issue, beside the first.
        await store.learning.save_outcome(ended(2, end + timedelta(hours=1), first_try=False))
        assert await one.run_once(now + timedelta(days=1)) == "created"
    assert sorted(it.title for it in digests(twin)) == sorted([title(start, end), title(end, end + timedelta(days=1))])


async def test_a_repo_compound_is_not_installed_on_is_a_clear_log_line(tmp_path, twin, database_url, store, caplog):
    iid = twin.add_installation(account="octo")
    twin.add_repo(WORK_REPO, installation_id=iid, files={"README.md": "app\n"})
    settings = settings_for(tmp_path, twin, database_url, REPORT_DIGEST_REPO="someone-else/reports")
    start, end = last_period(datetime.now(UTC), settings.digest_period)
    await store.learning.save_outcome(ended(1, start + timedelta(hours=3), first_try=True))
    caplog.set_level(logging.WARNING, logger="compound.digest")
    async with aiohttp.ClientSession() as http:
        digest = Digest(settings, store, GitHub.from_settings(http, settings, Metrics()), bot_login="x[bot]")
        assert await digest.run_once() == "not-installed"
        assert await digest.run_once() == "not-installed"  # said once, not every hour
    lines = [r.getMessage() for r in caplog.records if r.name == "compound.digest"]
    assert lines == [
        "digest: REPORT_DIGEST_REPO=someone-else/reports, but Compound is not installed on that repository "
        "(GET /repos/someone-else/reports/installation answered 404); "
        "no digest is posted until the App is installed there"
    ]
    assert [r.operation_id for r in twin.requests if r.operation_id.startswith("issues/")] == []


async def test_no_session_in_the_period_posts_nothing(tmp_path, twin, database_url, store):
    iid = twin.add_installation(account="octo")
    twin.add_repo(DIGEST_REPO, installation_id=iid, files={"README.md": "reports\n"})
    settings = settings_for(tmp_path, twin, database_url)
    async with aiohttp.ClientSession() as http:
        digest = Digest(settings, store, GitHub.from_settings(http, settings, Metrics()))
        assert await digest.run_once() == "empty"
    assert digests(twin) == [] and twin.requests == []


@pytest.mark.parametrize("value", ["30m", "hourly", "0d"])
def test_a_bad_interval_is_a_settings_error(tmp_path, value):
    with pytest.raises(Exception, match="REPORT_DIGEST_INTERVAL"):
        make_settings(tmp_path, REPORT_DIGEST_INTERVAL=value)
