"""Local webhooks through a smee-style channel (bot/proxy.py), end to end on loopback."""

from __future__ import annotations

import asyncio
import logging
import uuid

import aiohttp
import orjson
import pytest

from bot.proxy import Backoff, parse_message
from bot.reachability import reachability_advice, unreachable_reason
from bot.service import Service
from tests.conftest import FAST, WEBHOOK_SECRET, make_settings, serving
from tests.smee_relay import SmeeRelay
from tests.twin.webhooks import delivery_headers
from tests.webhook_examples import example


def labeled(number: int) -> bytes:
    payload = example("issues", "labeled")
    payload["installation"] = {"id": 4242, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="}
    payload["issue"]["number"] = number
    payload["issue"]["title"] = "Ünïcode — as GitHub sends it"
    return orjson.dumps(payload)  # compact UTF-8 JSON, as GitHub sends


@pytest.fixture
async def relay():
    relay = SmeeRelay(ping_every=0.2)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


@pytest.fixture
async def proxied(tmp_path, database_url, relay):
    svc = Service(
        make_settings(tmp_path, DATABASE_URL=database_url, WEBHOOK_PROXY_URL=relay.channel()),
        policy=FAST,
        read_proxy=True,
    )
    await svc.start()
    svc.proxy.backoff = Backoff(first=0.05, cap=0.2)
    try:
        async with asyncio.timeout(10):
            await svc.proxy.connected.wait()
        yield svc
    finally:
        await svc.stop()


async def post(url: str, body: bytes, delivery: str, secret: str = WEBHOOK_SECRET) -> int:
    headers = delivery_headers("issues", body, secret, app_id=1, delivery_id=delivery)
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as r:
        return r.status


async def answered(svc: Service, count: int) -> list[tuple[str, int]]:
    async with asyncio.timeout(10):
        while len(svc.proxy.answers) < count:
            await asyncio.sleep(0.02)
    return svc.proxy.answers


def runs(svc: Service) -> float:
    value = svc.metrics.registry.get_sample_value(
        "compound_handler_results_total",
        {"event": "issues", "handler": "handlers.issues.on_issues_labeled", "outcome": "ok"},
    )
    return value or 0.0


async def test_a_delivery_through_the_channel_is_verified_stored_and_processed_as_a_direct_one(proxied, relay):
    svc = proxied
    via_channel, direct = str(uuid.uuid4()), str(uuid.uuid4())
    assert await post(relay.channel(), labeled(7), via_channel) == 200
    assert await answered(svc, 1) == [(via_channel, 202)]
    async with serving(svc) as listener:
        assert await post(listener.url + svc.settings.webhook_path, labeled(7), direct) == 202
    await svc.dispatcher.drain()
    a = await svc.store.deliveries.get(via_channel)
    b = await svc.store.deliveries.get(direct)
    assert a is not None and b is not None
    fields = lambda r: (r.event, r.action, r.installation_id, r.repo, r.payload, r.status)  # noqa: E731
    assert fields(a) == fields(b)
    assert a.payload == labeled(7)  # the bytes GitHub signed
    assert a.status == "processed" and runs(svc) == 2

    # The same delivery again through the channel: a duplicate, not processed twice.
    assert await post(relay.channel(), labeled(7), via_channel) == 200
    assert (await answered(svc, 2))[1] == (via_channel, 200)
    await svc.dispatcher.drain()
    assert runs(svc) == 2 and await svc.store.deliveries.count() == 2


async def test_a_forged_delivery_through_the_channel_is_refused(proxied, relay):
    svc = proxied
    forged = str(uuid.uuid4())
    assert await post(relay.channel(), labeled(8), forged, secret="not-the-secret") == 200
    assert await answered(svc, 1) == [(forged, 401)]
    assert await svc.store.deliveries.get(forged) is None
    assert runs(svc) == 0


async def test_the_channel_is_read_again_after_it_drops(proxied, relay, caplog):
    caplog.set_level(logging.DEBUG)
    svc = proxied
    assert relay.streams_opened == 1
    relay.drop()
    async with asyncio.timeout(10):
        while relay.listeners() == 0 or svc.proxy.connections < 2:
            await asyncio.sleep(0.02)
    delivery = str(uuid.uuid4())
    assert await post(relay.channel(), labeled(9), delivery) == 200
    assert await answered(svc, 1) == [(delivery, 202)]
    assert relay.streams_opened == 2
    assert "reconnecting" in caplog.text and "127.0.0.1:" in caplog.text
    # The channel's key (its path) stays out of Compound's logs and its HTTP client's.
    ours = [r for r in caplog.records if not r.name.startswith("aiohttp")]  # the relay's own access log aside
    assert not [r.getMessage() for r in ours if "compound-test" in r.getMessage()]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_relay_that_is_down_at_start_is_retried_with_backoff(tmp_path, database_url):
    relay = SmeeRelay()
    await relay.start()
    port = relay.port
    await relay.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/compound-test"
    svc = Service(
        make_settings(tmp_path, DATABASE_URL=database_url, WEBHOOK_PROXY_URL=url), policy=FAST, read_proxy=True
    )
    await svc.start()
    svc.proxy.backoff = Backoff(first=0.05, cap=0.1)
    relay = SmeeRelay()
    try:
        await asyncio.sleep(0.5)
        assert not svc.proxy.connected.is_set() and svc.proxy.connections == 0
        await relay.start(port)
        async with asyncio.timeout(10):
            await svc.proxy.connected.wait()
        delivery = str(uuid.uuid4())
        assert await post(url, labeled(10), delivery) == 200
        assert await answered(svc, 1) == [(delivery, 202)]
    finally:
        await svc.stop()
        await relay.close()


def test_ready_and_ping_carry_nothing_and_a_message_maps_headers_and_body():
    assert parse_message("{}") is None and parse_message("not json") is None
    body, headers = parse_message(
        '{"x-github-event":"issues","X-GitHub-Delivery":"d1","body":{"a":1,"b":"é"},"query":{}}'
    )
    assert body == '{"a":1,"b":"é"}'.encode() and headers == {"x-github-event": "issues", "x-github-delivery": "d1"}


@pytest.mark.parametrize(
    "url,why",
    [
        ("http://localhost:3000/api/github/webhooks", "this machine"),
        ("http://127.0.0.1:3000/x", "loopback"),
        ("http://[::1]:3000/x", "loopback"),
        ("http://192.168.1.20/x", "private"),
        ("http://10.0.0.5/x", "private"),
        ("http://myhost.local/x", "local network"),
        ("https://compound.example.com/api/github/webhooks", None),
        ("https://140.82.112.3/x", None),
    ],
)
def test_which_webhook_urls_github_cannot_reach(url, why):
    reason = unreachable_reason(url)
    assert (reason is None) if why is None else (why in reason)


def test_the_advice_names_both_ways_out_and_is_silent_with_a_channel():
    advice = reachability_advice("http://127.0.0.1:3000/api/github/webhooks", proxy_url=None)
    assert "WEBHOOK_PROXY_URL" in advice and "smee.io/new" in advice and "public" in advice
    assert reachability_advice("http://127.0.0.1:3000/x", proxy_url="https://smee.io/abc") is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_compound_serve_reads_the_channel_and_a_worker_does_not(tmp_path, database_url, relay, twin):
    from bot.settings import async_database_url
    from bot.store import Store
    from tests.service_process import ServiceProcess, base_env

    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATABASE_URL=database_url,
        DATA_DIR=tmp_path / "data",
        WEBHOOK_PROXY_URL=relay.channel(),
        AGENT_SANDBOX="none",
        LOG_FORMAT="text",
    )
    worker = ServiceProcess(tmp_path, env, command="worker")
    await worker.start()
    serve = ServiceProcess(tmp_path, env)
    await serve.start()
    try:
        async with asyncio.timeout(15):
            while relay.listeners() < 1:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert relay.listeners() == 1  # the serve process only
        assert "webhooks come through the proxy channel on 127.0.0.1:" in serve.logs()
        delivery = str(uuid.uuid4())
        assert await post(relay.channel(), labeled(11), delivery) == 200
        store = Store.connect(async_database_url(database_url))
        try:
            async with asyncio.timeout(15):
                while (await store.deliveries.get(delivery)) is None:
                    await asyncio.sleep(0.05)
        finally:
            await store.close()
    finally:
        assert await serve.stop() == 0, serve.logs()
        await worker.stop()
    assert "compound-test" not in serve.logs()
