"""End to end: `compound serve` as a subprocess, the twin as GitHub, real deliveries."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import pytest

from bot.store import Store
from tests.conftest import WEBHOOK_SECRET
from tests.service_process import ServiceProcess, base_env
from tests.twin.webhooks import delivery_headers
from tests.webhook_examples import example

PATH = "/api/github/webhooks"


def installed(twin) -> int:
    """The App installed on the example payload's repository, as GitHub knows it."""
    if not twin.state.installations:
        iid = twin.add_installation(account="Codertocat", account_type="User")
        twin.add_repo(example("issues", "labeled")["repository"]["full_name"], installation_id=iid)
    return next(iter(twin.state.installations))


def service_env(tmp_path, database_url, twin, **extra) -> dict[str, str]:
    installed(twin)
    env = {
        "APP_ID": twin.app_id,
        "PRIVATE_KEY": twin.private_key_pem,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GHE_HOST": twin.host,
        "GHE_PROTOCOL": "http",
        "DATABASE_URL": database_url,
        "DATA_DIR": tmp_path / "data",
        "DELIVERY_LEASE_SECONDS": 1,
        "LOG_LEVEL": "debug",
    }
    return base_env(**{**env, **extra})


async def burst(url: str, count: int, twin) -> list[str]:
    """POST `count` signed deliveries at once; every one must be answered 202."""
    payload = example("issues", "labeled")
    payload["installation"] = {"id": installed(twin), "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    body = json.dumps(payload).encode()
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with aiohttp.ClientSession() as session:

        async def post(delivery: str) -> int:
            headers = delivery_headers("issues", body, WEBHOOK_SECRET, 1, delivery)
            async with session.post(url + PATH, data=body, headers=headers) as r:
                return r.status

        statuses = await asyncio.gather(*(post(d) for d in ids))
    assert statuses == [202] * count
    return ids


async def wait_processed(store: Store, total: int, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while await store.deliveries.count("processed") < total:
            await asyncio.sleep(0.1)


async def test_kill_9_right_after_202_then_restart_processes_every_delivery(tmp_path, database_url, store, twin):
    env = service_env(tmp_path, database_url, twin)
    sent: list[str] = []
    for _ in range(3):  # until the kill catches deliveries not yet processed
        proc = ServiceProcess(tmp_path, env)
        await proc.start()
        sent += await burst(proc.url, 100, twin)
        await proc.kill()
        if await store.deliveries.count("pending"):
            break
    pending = await store.deliveries.count("pending")
    assert pending > 0, "every delivery was processed before the kill; nothing was tested"
    # Nothing that was answered 202 is missing.
    assert await store.deliveries.count() == len(sent)

    proc = ServiceProcess(tmp_path, env)
    await proc.start()
    try:
        await wait_processed(store, len(sent))
    finally:
        assert await proc.stop() == 0, proc.logs()
    for delivery in sent:
        stored = await store.deliveries.get(delivery)
        assert stored is not None and stored.status == "processed"
    assert "claimed" in proc.logs()


async def test_sigterm_hands_pending_work_to_the_next_start(tmp_path, database_url, store, twin):
    env = service_env(tmp_path, database_url, twin, DELIVERY_LEASE_SECONDS=600)
    proc = ServiceProcess(tmp_path, env)
    await proc.start()
    sent = await burst(proc.url, 50, twin)
    assert await proc.stop() == 0, proc.logs()
    # A clean stop releases claims: the next start needs no lease to lapse (600 s here).
    proc = ServiceProcess(tmp_path, env)
    await proc.start()
    try:
        await wait_processed(store, len(sent), timeout=20)
    finally:
        await proc.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_installation_events_are_recorded(tmp_path, database_url, store, twin):
    proc = ServiceProcess(tmp_path, service_env(tmp_path, database_url, twin))
    await proc.start()
    try:
        payload = example("installation", "created")
        status, _ = await twin.deliver(proc.url + PATH, "installation", payload, secret=WEBHOOK_SECRET)
        assert status == 202
        await wait_processed(store, 1)
    finally:
        await proc.stop()
    installation_id = payload["installation"]["id"]
    recorded = await store.installations.get(installation_id)
    assert recorded is not None
    assert recorded.account_login == payload["installation"]["account"]["login"]
    repos = await store.installations.repositories(installation_id)
    assert sorted(r.full_name for r in repos) == sorted(r["full_name"] for r in payload["repositories"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_restart_processes_what_was_left_at_once(tmp_path, database_url, store, twin):
    """Deliveries stored but unclaimed (a web-only process took them) are picked up
    by the next start right away, not at the first periodic sweep."""
    env = service_env(tmp_path, database_url, twin, DELIVERY_LEASE_SECONDS=30)
    web = ServiceProcess(tmp_path, env, args=("--no-workers",))
    await web.start()
    sent = await burst(web.url, 20, twin)
    await web.stop()
    assert await store.deliveries.count("pending") == len(sent)
    started = asyncio.get_running_loop().time()
    proc = ServiceProcess(tmp_path, env)
    await proc.start()
    try:
        await wait_processed(store, len(sent), timeout=20)
    finally:
        await proc.stop()
    assert asyncio.get_running_loop().time() - started < 8
