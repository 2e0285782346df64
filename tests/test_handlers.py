"""Routing: every published example of every event Compound subscribes to goes through."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from gidgethub import sansio

import handlers
from bot.dispatch import handler_name
from bot.service import Service
from tests.conftest import WEBHOOK_SECRET
from tests.webhook_examples import all_published, example

ROOT = Path(__file__).resolve().parent.parent
APP_YML = yaml.safe_load((ROOT / "app.yml").read_text())
# GitHub sends these to every App, subscribed or not.
ALWAYS_SENT = ["installation", "installation_repositories"]
SUBSCRIBED = APP_YML["default_events"] + ALWAYS_SENT


def test_every_subscribed_event_has_handlers_and_is_stored():
    assert set(SUBSCRIBED) == set(handlers.EVENTS)
    for event in SUBSCRIBED:
        routed = {
            handler_name(cb)
            for _, action, payload in all_published([event])
            for cb in handlers.router.fetch(sansio.Event(payload, event=event, delivery_id="x"))
        }
        assert routed, f"no handler is registered for any published {event} example"


def test_app_yml_asks_for_the_permissions_the_design_needs():
    assert APP_YML["default_permissions"] == {
        "actions": "read",
        "checks": "write",
        "contents": "write",
        "issues": "write",
        "metadata": "read",
        "pull_requests": "write",
        # the `status` event and combined statuses, for CI services that report with them
        "statuses": "read",
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("event", SUBSCRIBED)
async def test_every_published_example_is_accepted_and_routed(event, service: Service, webhook_url, twin):
    url = webhook_url
    payloads = all_published([event])
    assert payloads, f"no published example for {event}"
    statuses = Counter()
    for _, _, payload in payloads:
        status, body = await twin.deliver(url, event, payload, secret=WEBHOOK_SECRET)
        statuses[status] += 1
        assert status == 202, body
    await service.dispatcher.drain()
    assert await service.store.deliveries.count("processed") == len(payloads)
    errors = service.metrics.registry.get_sample_value(
        "compound_deliveries_processed_total", {"outcome": "retrying"}
    )
    assert not errors


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_installation_lifecycle_is_recorded(service: Service, webhook_url, twin):
    url = webhook_url
    created = example("installation", "created")
    iid = created["installation"]["id"]
    await twin.deliver(url, "installation", created, secret=WEBHOOK_SECRET)
    added = example("installation_repositories", "added")
    added["installation"]["id"] = iid
    await twin.deliver(url, "installation_repositories", added, secret=WEBHOOK_SECRET)
    await service.dispatcher.drain()
    repos = {r.full_name for r in await service.store.installations.repositories(iid)}
    expected = {r["full_name"] for r in created["repositories"] + added["repositories_added"]}
    assert repos == expected

    removed = example("installation_repositories", "removed")
    removed["installation"]["id"] = iid
    removed["repositories_removed"] = [created["repositories"][0]]
    suspended = example("installation", "suspend")
    suspended["installation"]["id"] = iid
    for event, payload in (("installation_repositories", removed), ("installation", suspended)):
        await twin.deliver(url, event, payload, secret=WEBHOOK_SECRET)
        await service.dispatcher.drain()
    repos = {r.full_name for r in await service.store.installations.repositories(iid)}
    assert repos == expected - {created["repositories"][0]["full_name"]}
    installation = await service.store.installations.get(iid)
    assert installation is not None and installation.suspended

    deleted = example("installation", "deleted")
    deleted["installation"]["id"] = iid
    await twin.deliver(url, "installation", deleted, secret=WEBHOOK_SECRET)
    await service.dispatcher.drain()
    installation = await service.store.installations.get(iid)
    assert installation is not None and installation.deleted
    assert await service.store.installations.repositories(iid) == []
