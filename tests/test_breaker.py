"""GitHub down: the breaker stops calling it, deliveries wait unspent, and all run when it is back."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import gidgethub
import pytest

from bot.github import GitHub, GitHubUnavailable, RetryPolicy
from bot.github.breaker import CircuitBreaker
from bot.metrics import Metrics
from bot.service import Service
from tests.conftest import FAST, WEBHOOK_SECRET, twin_settings
from tests.twin_events import issue_labeled

REPO = "octo-org/app"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_within_the_window_and_fails_fast():
    clock = Clock()
    b = CircuitBreaker("api.github.com", threshold=3, window=60, cooldown=15, clock=clock)
    b.failure("HTTP 502")
    clock.now += 61  # the first one is out of the window
    b.failure("HTTP 502")
    b.failure("HTTP 502")
    assert b.state == "closed" and b.before() is False
    b.failure("HTTP 502")
    assert b.state == "open"
    with pytest.raises(GitHubUnavailable) as caught:
        b.before()
    assert caught.value.reason == "HTTP 502" and 14 < caught.value.retry_in <= 15


def test_one_probe_after_the_cooldown_doubling_while_github_stays_down():
    clock = Clock()
    b = CircuitBreaker("h", threshold=1, cooldown=15, max_cooldown=40, clock=clock)
    b.failure("ConnectionRefusedError")
    clock.now += 15
    assert b.before() is True  # the probe
    with pytest.raises(GitHubUnavailable):
        b.before()  # only one at a time
    b.failure("ConnectionRefusedError", probe=True)
    assert b.state == "open" and b.retry_in() == 30
    clock.now += 30
    assert b.before() is True
    b.failure("ConnectionRefusedError", probe=True)
    assert b.retry_in() == 40  # capped
    clock.now += 40
    assert b.before() is True
    b.success(probe=True)
    assert b.state == "closed" and b.before() is False
    b.failure("x")
    assert b.retry_in() == 15  # the cooldown starts over


def test_an_answer_clears_the_failures():
    b = CircuitBreaker("h", threshold=2, clock=Clock())
    b.failure("HTTP 502")
    b.success()
    b.failure("HTTP 502")
    assert b.state == "closed"


async def test_a_request_counts_once_after_the_clients_retries(twin):
    twin.fail_next("GET", "/app$", status=502, times=1000)
    async with aiohttp.ClientSession() as session:
        github = GitHub(
            session,
            api_base_url=twin.api_url,
            auth=__import__("bot.github.auth", fromlist=["AppAuth"]).AppAuth(twin.app_id, twin.private_key_pem),
            metrics=Metrics(),
            retry=RetryPolicy(attempts=3, backoff=0.01),
            breaker=CircuitBreaker(twin.host, threshold=2),
        )
        for _ in range(2):
            with pytest.raises(gidgethub.GitHubBroken):
                await github.app().getitem("/app")
        seen = len(twin.requests)
        assert seen == 6  # two requests, three tries each: two failures for the breaker
        with pytest.raises(GitHubUnavailable):
            await github.app().getitem("/app")
        assert len(twin.requests) == seen  # failed fast: nothing reached GitHub


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_deliveries_wait_out_an_outage_unspent_and_all_run_when_github_is_back(
    tmp_path,
    twin,
    database_url,
    caplog,
):
    iid = twin.add_installation(account="octo-org")
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "# app\n"})
    numbers = [twin.add_issue(REPO, title=f"issue {n}", body="", user="alice") for n in range(12)]
    settings = twin_settings(
        tmp_path,
        twin,
        DATABASE_URL=database_url,
        AGENT_BACKEND="command",
        AGENT_COMMAND="true",
        AGENT_SANDBOX="none",
        GITHUB_BREAKER_THRESHOLD=3,
        GITHUB_BREAKER_COOLDOWN=1,
    )
    service = Service(settings, policy=FAST)
    await service.start()
    service.github.retry = RetryPolicy(attempts=2, backoff=0.01)
    try:
        from tests.conftest import serving

        async with serving(service) as listener:
            url = f"http://127.0.0.1:{listener.port}{settings.webhook_path}"
            twin.fail_next("*", ".", status=502, times=10**6)  # GitHub down from here
            caplog.set_level(logging.DEBUG, logger="compound")
            for n in numbers:  # a label that is not a trigger: the handler reads the repo config
                status, _ = await twin.deliver(
                    url, "issues", issue_labeled(twin, REPO, n, "bug", "alice", iid), secret=WEBHOOK_SECRET
                )
                assert status == 202
            store = service.store.deliveries
            async with asyncio.timeout(30):
                while service.github.breaker.state == "closed":
                    await asyncio.sleep(0.05)
            await asyncio.sleep(2.5)  # the held deliveries meet the open breaker again, and its probes fail
            assert await store.count("failed") == 0
            assert await store.count("pending") == len(numbers)
            async with service.store.engine.connect() as conn:
                from sqlalchemy import text

                attempts = [r[0] for r in await conn.execute(text("SELECT attempts FROM deliveries"))]
                errors = [r[0] for r in await conn.execute(text("SELECT last_error FROM deliveries"))]
            # At most the `threshold` deliveries that met GitHub before the breaker opened spent one.
            assert sum(attempts) <= 3 and max(attempts) <= 1, attempts
            assert sum(1 for e in errors if e and "held: GitHub unavailable" in e) >= len(numbers) - 3
            held = [r for r in caplog.records if "deliveries held" in r.getMessage()]
            assert len(held) == 1, [r.getMessage() for r in held]  # once per interval, with the count
            assert not [
                r
                for r in caplog.records
                if r.exc_info and r.name == "compound.dispatch" and "GitHubUnavailable" in str(r.exc_info[1].__class__)
            ]

            twin._faults.clear()  # GitHub is back
            async with asyncio.timeout(60):
                while await store.count("processed") < len(numbers):
                    await asyncio.sleep(0.1)
            assert await store.count("failed") == 0 and service.github.breaker.state == "closed"
    finally:
        await service.stop()
    assert twin.violations == []


async def test_when_github_answers_again_every_held_delivery_runs_at_once(tmp_path, twin, caplog):
    """Held deliveries each wait on a timer of up to 1.25 × the cooldown (2 minutes at most);
    the probe that finds GitHub back wakes them all, rather than leaving them to their timers."""
    iid = twin.add_installation(account="octo-org")
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "# app\n"})
    numbers = [twin.add_issue(REPO, title=f"issue {n}", body="", user="alice") for n in range(8)]
    settings = twin_settings(
        tmp_path,
        twin,
        AGENT_SANDBOX="none",
        GITHUB_BREAKER_THRESHOLD=3,
        GITHUB_BREAKER_COOLDOWN=3,
    )
    service = Service(settings, policy=FAST)
    await service.start()
    service.github.retry = RetryPolicy(attempts=2, backoff=0.01)
    still_waiting: list[int] = []
    loop = asyncio.get_running_loop()
    service.github.breaker.on_close.append(
        lambda: still_waiting.append(
            sum(1 for h in service.dispatcher._retries if not h.cancelled() and h.when() > loop.time())
        )
    )
    try:
        from tests.conftest import serving

        async with serving(service) as listener:
            url = f"http://127.0.0.1:{listener.port}{settings.webhook_path}"
            twin.fail_next("*", ".", status=502, times=10**6)
            caplog.set_level(logging.INFO, logger="compound")
            for n in numbers:
                status, _ = await twin.deliver(
                    url, "issues", issue_labeled(twin, REPO, n, "bug", "alice", iid), secret=WEBHOOK_SECRET
                )
                assert status == 202
            store = service.store.deliveries
            async with asyncio.timeout(30):
                while await store.count("pending") < len(numbers) or service.github.breaker.state == "closed":
                    await asyncio.sleep(0.05)
            twin._faults.clear()  # GitHub is back; the next probe finds it
            async with asyncio.timeout(60):
                while await store.count("processed") < len(numbers):
                    await asyncio.sleep(0.05)
    finally:
        await service.stop()
    assert still_waiting == [0]  # none left to its timer when the breaker closed
    resumed = [r.getMessage() for r in caplog.records if "held deliveries resume" in r.getMessage()]
    assert len(resumed) == 1 and int(resumed[0].split(": ")[1].split()[0]) >= 1, resumed
    assert twin.violations == []
