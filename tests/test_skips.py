"""Deliveries that cannot be acted on are recorded `skipped` with the reason, once,
without a call to GitHub (issue #11 part 2; bot/skips.py).

A real service with an App configured against the GitHub twin, on SQLite and
PostgreSQL; deliveries signed and POSTed to its webhook as GitHub sends them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.github.client import RetryPolicy
from bot.service import Service
from tests.conftest import FAST, WEBHOOK_SECRET, _empty, serving, twin_settings
from tests.twin.server import GitHubTwin
from tests.twin_events import issue_labeled
from tests.webhook_examples import example

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

REPO = "octo-org/app"
OTHER = "octo-org/other"


@dataclass
class World:
    twin: GitHubTwin
    service: Service
    url: str
    iid: int
    issue: int
    other_issue: int
    sent: int = 0

    async def deliver(self, event: str, payload: dict[str, Any]) -> str:
        self.sent += 1
        delivery_id = f"skip-test-{self.sent}"
        status, body = await self.twin.deliver(self.url, event, payload, delivery_id=delivery_id, secret=WEBHOOK_SECRET)
        assert status == 202, body
        await self.service.dispatcher.drain()
        return delivery_id

    async def label(self, repo: str = REPO, installation_id: int | None = None) -> str:
        number = self.issue if repo == REPO else self.other_issue
        payload = issue_labeled(self.twin, repo, number, "bug", "alice", installation_id or self.iid)
        return await self.deliver("issues", payload)

    async def installation_event(self, event: str, action: str, **changes: Any) -> str:
        payload = example(event, action)
        payload["installation"]["id"] = self.iid
        payload.update(changes)
        return await self.deliver(event, payload)

    async def ended(self, delivery_id: str) -> tuple[str, str | None]:
        stored = await self.service.store.deliveries.get(delivery_id)
        assert stored is not None
        return stored.status, stored.skip_reason

    def calls_since(self, mark: int) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.twin.requests[mark:]]


@pytest.fixture
async def world(tmp_path, database_url, twin) -> AsyncIterator[World]:
    iid = twin.add_installation(account="octo-org")
    repo = twin.add_repo(REPO, installation_id=iid)
    other = twin.add_repo(OTHER, installation_id=iid)
    issue = twin.add_issue(REPO, title="a bug", body="", user="alice")
    other_issue = twin.add_issue(OTHER, title="another", body="", user="alice")
    settings = twin_settings(
        tmp_path,
        twin,
        DATABASE_URL=database_url,
        AGENT_BACKEND="command",
        AGENT_COMMAND="true",
        AGENT_SANDBOX="none",
        REDELIVER="off",
    )
    service = Service(settings, policy=FAST)
    await service.start()
    await _empty(service.store)  # PostgreSQL's database is shared by the tests
    try:
        async with serving(service) as listener:
            w = World(twin, service, listener.url + settings.webhook_path, iid, issue, other_issue)
            # The store learns the installation as GitHub announces it.
            created = example("installation", "created")
            created["installation"]["id"] = iid
            created["repositories"] = [
                {
                    "id": r.id,
                    "node_id": f"R_{r.id}",
                    "name": r.name,
                    "full_name": f"{r.owner}/{r.name}",
                    "private": True,
                }
                for r in (repo, other)
            ]
            assert await w.ended(await w.deliver("installation", created)) == ("processed", None)
            yield w
    finally:
        await service.stop()


async def test_a_delivery_with_no_installation_is_skipped_without_calling_github(world: World):
    payload = example("issues", "labeled")
    payload.pop("installation", None)
    mark = len(world.twin.requests)
    delivery = await world.deliver("issues", payload)
    assert await world.ended(delivery) == ("skipped", "no installation in the payload: nothing to act with")
    assert world.calls_since(mark) == []
    skipped = world.service.metrics.registry.get_sample_value(
        "compound_deliveries_processed_total", {"outcome": "skipped"}
    )
    assert skipped == 1


async def test_the_same_delivery_redelivered_is_skipped_once(world: World):
    payload = example("issues", "labeled")
    payload.pop("installation", None)
    for _ in range(2):
        status, _ = await world.twin.deliver(
            world.url, "issues", payload, delivery_id="same-guid", secret=WEBHOOK_SECRET
        )
        assert status in (200, 202)
        await world.service.dispatcher.drain()
    assert await world.service.store.deliveries.count("skipped") == 1


async def test_an_installation_that_was_deleted_gets_no_work_and_no_calls(world: World):
    assert await world.ended(await world.label()) == ("processed", None)  # installed: the label is looked at
    await world.installation_event("installation", "deleted")
    mark = len(world.twin.requests)
    for _ in range(3):
        assert await world.ended(await world.label()) == ("skipped", f"installation {world.iid} was deleted")
    assert world.calls_since(mark) == []
    assert await world.service.store.deliveries.count("failed") == 0


async def test_a_suspended_installation_is_skipped_until_it_is_unsuspended(world: World):
    await world.installation_event("installation", "suspend")
    mark = len(world.twin.requests)
    assert await world.ended(await world.label()) == ("skipped", f"installation {world.iid} is suspended")
    assert world.calls_since(mark) == []
    await world.installation_event("installation", "unsuspend")
    assert await world.ended(await world.label()) == ("processed", None)


async def test_a_repository_the_app_was_removed_from_is_skipped_the_others_are_not(world: World):
    other = world.twin.state.repo(*OTHER.split("/"))
    await world.installation_event(
        "installation_repositories",
        "removed",
        repositories_removed=[
            {"id": other.id, "node_id": f"R_{other.id}", "name": other.name, "full_name": OTHER, "private": True}
        ],
    )
    mark = len(world.twin.requests)
    delivery = await world.label(OTHER)
    assert await world.ended(delivery) == ("skipped", f"repository {OTHER} was removed from installation {world.iid}")
    assert world.calls_since(mark) == []
    assert await world.ended(await world.label(REPO)) == ("processed", None)


async def test_an_installation_github_does_not_know_is_asked_about_once(world: World):
    stranger = 987654321
    mark = len(world.twin.requests)
    first = await world.label(installation_id=stranger)
    assert await world.ended(first) == ("skipped", f"installation {stranger} is unknown to GitHub (deleted)")
    assert world.calls_since(mark) == [f"GET /app/installations/{stranger}"]
    mark = len(world.twin.requests)
    assert (await world.ended(await world.label(installation_id=stranger)))[0] == "skipped"
    assert world.calls_since(mark) == []  # remembered in the store: never asked again
    assert world.service.gate.lookups == 1


async def test_an_installation_the_store_missed_is_learned_from_github_and_acted_on(world: World):
    # Installed while Compound was not listening: the store never heard of it.
    late = world.twin.add_installation(account="late-org")
    world.twin.add_repo("late-org/app", installation_id=late)
    number = world.twin.add_issue("late-org/app", title="t", body="", user="alice")
    delivery = await world.deliver("issues", issue_labeled(world.twin, "late-org/app", number, "bug", "alice", late))
    assert await world.ended(delivery) == ("processed", None)
    learned = await world.service.store.installations.get(late)
    assert learned is not None and learned.account_login == "late-org" and not learned.deleted


async def test_a_lookup_while_github_is_down_holds_the_delivery_it_does_not_skip_it(world: World):
    late = world.twin.add_installation(account="late-org")
    world.twin.add_repo("late-org/app", installation_id=late)
    number = world.twin.add_issue("late-org/app", title="t", body="", user="alice")
    world.twin.fail_next("GET", f"/app/installations/{late}$", status=502, times=10**6)
    world.service.github.retry = RetryPolicy(attempts=1, backoff=0.01)
    breaker = world.service.github.breaker
    breaker.threshold, breaker.first_cooldown, breaker.cooldown, breaker.max_cooldown = 1, 0.5, 0.5, 1.0
    payload = issue_labeled(world.twin, "late-org/app", number, "bug", "alice", late)
    status, body = await world.twin.deliver(world.url, "issues", payload, delivery_id="held-1", secret=WEBHOOK_SECRET)
    assert status == 202, body

    async def held() -> bool:
        stored = await world.service.store.deliveries.get("held-1")
        return (
            stored is not None
            and stored.status == "pending"
            and (stored.last_error or "").startswith("compound.skips: held: GitHub unavailable")
        )

    await _until(held, "the delivery held for the outage")
    stored = await world.service.store.deliveries.get("held-1")
    assert stored.attempts == 0 and stored.skip_reason is None
    world.twin._faults.clear()  # GitHub is back

    async def processed() -> bool:
        stored = await world.service.store.deliveries.get("held-1")
        return stored is not None and stored.status == "processed"

    await _until(processed, "the held delivery processed once GitHub answers", timeout=60)


async def _until(predicate, what: str, timeout: float = 20.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
