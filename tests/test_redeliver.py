"""Catch-up redelivery (bot/redeliver.py) against the twin's `/app/hook/deliveries`."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.redeliver import catch_up
from bot.service import Service
from bot.store.base import utcnow
from tests.conftest import FAST, make_settings, serving
from tests.webhook_examples import example


def _settings(tmp_path: Path, database_url: str, twin, **extra):
    return make_settings(
        tmp_path,
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=twin.webhook_secret,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATABASE_URL=database_url,
        AGENT_SANDBOX="none",
        **extra,
    )


@asynccontextmanager
async def running(tmp_path, database_url, twin, **extra):
    svc = Service(_settings(tmp_path, database_url, twin, **extra), policy=FAST)
    await svc.start()
    try:
        async with serving(svc) as listener:
            yield svc, listener.url + svc.settings.webhook_path
    finally:
        await svc.stop()


def _payload(n: int) -> dict:
    # Opened, not labeled: stored and routed, and no handler starts a session.
    payload = example("issues", "opened")
    payload["issue"]["number"] = 1000 + n
    return payload


async def _stored(svc: Service, guids) -> set[str]:
    return {g for g in guids if await svc.store.deliveries.get(g) is not None}


async def test_start_up_redelivers_the_failed_and_the_missing_once_even_started_twice(tmp_path, database_url, twin):
    hooks = twin.hook_deliveries
    # Five delivered straight to a running Compound: in its store, listed OK.
    async with running(tmp_path, database_url, twin, REDELIVER="off") as (svc, url):
        delivered = []
        for n in range(5):
            guid = str(uuid.uuid4())
            status, _ = await twin.deliver(url, "issues", _payload(n), delivery_id=guid)
            assert status == 202
            delivered.append(guid)
        assert svc.catch_up is None
    # Three failed while Compound was down; two GitHub shows as answered but the
    # store never received (another deployment answered, or a restored database).
    failed = [hooks.record("issues", _payload(10 + n), status_code=code).guid for n, code in enumerate((0, 502, 503))]
    missing = [hooks.record("issues", _payload(20 + n), status_code=202).guid for n in range(2)]
    # Older than the window: not asked for.
    hooks.record("issues", _payload(30), status_code=0, at=time.time() - 80 * 3600)
    # An event Compound does not handle never reaches the store: not asked for.
    hooks.record("star", {"action": "created"}, status_code=200)
    assert len(hooks.items) == 12

    for _ in range(2):  # started twice: the second start asks for nothing
        async with running(tmp_path, database_url, twin) as (svc, url):
            hooks.target = url
            async with asyncio.timeout(20):
                await svc.catch_up.first_pass.wait()
                await hooks.settle()
            assert sorted(hooks.requests) == sorted(failed + missing)
            assert await _stored(svc, delivered + failed + missing) == set(delivered + failed + missing)
    assert len(hooks.requests) == 5
    # The redelivered attempts are listed as GitHub lists them.
    assert sorted(i.guid for i in hooks.items if i.redelivery) == sorted(failed + missing)
    assert all(i.status_code == 202 for i in hooks.items if i.redelivery)


async def test_a_pass_is_capped_pages_by_cursor_and_leaves_the_rest_for_the_next(tmp_path, database_url, twin, store):
    import aiohttp

    from bot.github import GitHub
    from bot.metrics import Metrics

    hooks = twin.hook_deliveries
    now = time.time()
    guids = [hooks.record("issues", _payload(n), status_code=0, at=now - 3600 + n).guid for n in range(130)]
    settings = _settings(tmp_path, "sqlite://", twin)
    async with aiohttp.ClientSession() as session:
        gh = GitHub.from_settings(session, settings, Metrics()).app()
        first = await catch_up(gh, store.engine, events={"issues"}, since=utcnow() - timedelta(hours=2), cap=100)
        assert first.listed == 130  # two pages of 100, by cursor
        assert [m.guid for m in first.asked] == guids[:100]  # the oldest first
        assert first.over_cap == 30
        second = await catch_up(gh, store.engine, events={"issues"}, since=utcnow() - timedelta(hours=2), cap=100)
        assert [m.guid for m in second.asked] == guids[100:]
        assert second.already_asked == 100
    assert hooks.requests == guids
    listings = [r for r in twin.requests if r.operation_id == "apps/list-webhook-deliveries"]
    assert len(listings) == 4  # two pages a pass
    # The twin's answers are as GitHub's description documents them.
    assert [p for p in twin.response_problems if "hook" in p] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_compound_redeliver_dry_run_then_for_real(tmp_path, database_url, twin, monkeypatch, capsys):
    hooks = twin.hook_deliveries
    old = hooks.record("issues", _payload(1), status_code=0, at=time.time() - 10 * 3600).guid
    recent = hooks.record("issues", _payload(2), status_code=502, at=time.time() - 600).guid
    env = {
        "APP_ID": str(twin.app_id),
        "PRIVATE_KEY": twin.private_key_pem,
        "WEBHOOK_SECRET": twin.webhook_secret,
        "GHE_HOST": twin.host,
        "GHE_PROTOCOL": "http",
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_FORMAT": "text",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(main, ["redeliver", *argv])

    assert await run("--since", "6h", "--dry-run") == 0
    out = capsys.readouterr().out
    assert recent in out and old not in out and "would ask" in out
    assert hooks.requests == []
    assert await run("--since", "6h") == 0
    out, err = capsys.readouterr()
    assert recent in out and "1 asked again" in out
    assert "eyJ" not in out + err  # no JWT (base64 of '{"') in what it prints or logs
    assert hooks.requests == [recent]
    assert await run("--since", "6h") == 0  # asked before: not again
    assert hooks.requests == [recent]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_refused_request_is_not_repeated_and_one_github_could_not_take_is(tmp_path, database_url, twin, store):
    import aiohttp

    from bot.github import GitHub
    from bot.github.client import RetryPolicy
    from bot.metrics import Metrics

    hooks = twin.hook_deliveries
    refused = hooks.record("issues", _payload(1), status_code=0, at=time.time() - 60).guid
    unreachable = hooks.record("issues", _payload(2), status_code=0, at=time.time() - 30).guid
    twin.fail_next("POST", r"/app/hook/deliveries/\d+/attempts", status=422, times=1)  # the oldest first
    twin.fail_next("POST", r"/app/hook/deliveries/\d+/attempts", status=502, times=1)
    since = utcnow() - timedelta(hours=1)
    async with aiohttp.ClientSession() as session:
        gh = GitHub.from_settings(
            session, _settings(tmp_path, "sqlite://", twin), Metrics(), retry=RetryPolicy(attempts=1)
        ).app()
        first = await catch_up(gh, store.engine, events={"issues"}, since=since)
        assert [m.guid for m, _ in first.refused] == [refused, unreachable] and first.asked == []
        second = await catch_up(gh, store.engine, events={"issues"}, since=since)
    # Refused (422): remembered, not asked again. Not taken (502): asked again, and taken.
    assert [m.guid for m in second.asked] == [unreachable] and second.already_asked == 1
    assert hooks.requests == [unreachable]
