"""Routing: every published example of every event Compound subscribes to goes through."""

from __future__ import annotations

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
    """No App configured: each is stored and ends processed, or skipped when a handler
    would act on it with no installation to act for (GitHub's examples for
    repository webhooks carry none); one no handler takes is processed as it is."""
    url = webhook_url
    payloads = all_published([event])
    assert payloads, f"no published example for {event}"
    for _, _, payload in payloads:
        status, body = await twin.deliver(url, event, payload, secret=WEBHOOK_SECRET)
        assert status == 202, body
    await service.dispatcher.drain()
    without = sum(
        1
        for _, _, p in payloads
        if not p.get("installation") and handlers.router.fetch(sansio.Event(p, event=event, delivery_id="x"))
    )
    assert await service.store.deliveries.count("processed") == len(payloads) - without
    assert await service.store.deliveries.count("skipped") == without
    errors = service.metrics.registry.get_sample_value("compound_deliveries_processed_total", {"outcome": "retrying"})
    assert not errors


def _as_the_app_gets_it(payload: dict, installation_id: int) -> dict:
    """A published example as GitHub sends it to an App installed on its repository:
    with the `installation` (repository webhooks' examples have none)."""
    payload = dict(payload)
    payload["installation"] = {
        "id": installation_id,
        "node_id": f"MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{installation_id}",
    }
    return payload


# The installation events are not rewritten: they would delete or suspend the installation the others use.
APP_EVENTS = [e for e in SUBSCRIBED if e not in ALWAYS_SENT]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_published_example_reaches_its_handlers_with_an_app_configured(tmp_path, database_url, twin):
    """Issue #11 part 8: with an App configured every published example gets past the
    skip check to the handlers (those that start sessions too), and none fails."""
    from bot.dispatch import handler_name
    from tests.conftest import FAST, serving, twin_settings

    iid = twin.add_installation(account="Codertocat", account_type="User")
    payloads = all_published(APP_EVENTS)
    for full_name in sorted({p["repository"]["full_name"] for _, _, p in payloads if p.get("repository")}):
        if twin.state.repo(*full_name.split("/")) is None:
            twin.add_repo(full_name, installation_id=iid, private=False)
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
    try:
        async with serving(service) as listener:
            url = listener.url + settings.webhook_path
            ids = []
            for event, _, payload in payloads:
                delivery_id = f"example-{len(ids)}"
                status, body = await twin.deliver(
                    url, event, _as_the_app_gets_it(payload, iid), delivery_id=delivery_id, secret=WEBHOOK_SECRET
                )
                assert status == 202, body
                ids.append((delivery_id, event, payload.get("action")))
            await service.dispatcher.drain(timeout=120)
            ended = {}
            for delivery_id, event, action in ids:
                stored = await service.store.deliveries.get(delivery_id)
                assert stored is not None
                ended[(delivery_id, event, action)] = (stored.status, stored.last_error, stored.skip_reason)
            assert {k: v for k, v in ended.items() if v[0] != "processed"} == {}
            registry = service.metrics.registry
            for event in APP_EVENTS:
                names = {
                    handler_name(cb)
                    for _, _, p in all_published([event])
                    for cb in handlers.router.fetch(sansio.Event(p, event=event, delivery_id="x"))
                }
                for name in names:
                    ran = registry.get_sample_value(
                        "compound_handler_results_total", {"event": event, "handler": name, "outcome": "ok"}
                    )
                    assert ran, f"{name} never ran for {event}"
            assert service.gate.lookups == 1  # the installation, learned once from GitHub
    finally:
        await service.stop()


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
