"""Dispatching stored deliveries: isolation, bounded retries, recovery, several processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from gidgethub import routing
from sqlalchemy import update

from bot.dispatch import Dispatcher, DispatchPolicy
from bot.metrics import Metrics
from bot.store import Store
from bot.store.base import utcnow
from bot.store.deliveries import DeliveryRecord
from bot.store.schema import deliveries

POLICY = DispatchPolicy(lease=1.0, max_attempts=3, backoff=0.02, sweep_interval=0.1)


class Recorder:
    """A router whose handlers record each call; some fail on purpose."""

    def __init__(self, fail_times: int = 0) -> None:
        self.router = routing.Router()
        self.calls: Counter[str] = Counter()
        self.fail_times = fail_times
        self.running = 0
        self.max_running = 0

        @self.router.register("issues", action="labeled")
        async def good(event, gh, ctx):
            self.calls["good", event.delivery_id] += 1

        @self.router.register("issues", action="labeled")
        async def flaky(event, gh, ctx):
            self.calls["flaky", event.delivery_id] += 1
            if self.calls["flaky", event.delivery_id] <= self.fail_times:
                raise RuntimeError("flaky handler failed")

        @self.router.register("issues", action="opened")
        async def slow(event, gh, ctx):
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            await asyncio.sleep(0.02)
            self.running -= 1
            self.calls["slow", event.delivery_id] += 1


def record(action: str = "labeled") -> DeliveryRecord:
    payload = {"action": action, "issue": {"number": 1}, "installation": {"id": 7}}
    return DeliveryRecord(
        delivery_id=str(uuid.uuid4()),
        event="issues",
        action=action,
        installation_id=7,
        repo="o/r",
        payload=json.dumps(payload).encode(),
    )


def dispatcher(store: Store, recorder: Recorder, owner: str = "proc-a", **policy) -> Dispatcher:
    return Dispatcher(
        router=recorder.router,
        store=store.deliveries,
        metrics=Metrics(),
        owner=owner,
        context=None,
        client_for=lambda installation_id: None,
        policy=DispatchPolicy(**{**POLICY.__dict__, **policy}),
    )


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_failing_handler_neither_stops_others_nor_loses_the_delivery(store: Store):
    rec = Recorder(fail_times=1)
    d = dispatcher(store, rec)
    r = record()
    await store.deliveries.insert_new([r], d.owner, POLICY.lease)
    d.start()
    assert d.reserve()
    d.submit(r, None)

    async def processed() -> bool:
        got = await store.deliveries.get(r.delivery_id)
        return got is not None and got.status == "processed"

    await until(processed)
    await d.stop()
    # The good handler ran once; only the failed one was retried.
    assert rec.calls["good", r.delivery_id] == 1
    assert rec.calls["flaky", r.delivery_id] == 2
    stored = await store.deliveries.get(r.delivery_id)
    assert stored is not None and stored.attempts == 2


async def test_retries_are_bounded_then_the_delivery_is_parked(store: Store, caplog):
    rec = Recorder(fail_times=100)
    d = dispatcher(store, rec)
    r = record()
    await store.deliveries.insert_new([r], d.owner, POLICY.lease)
    d.start()
    d.reserve()
    d.submit(r, None)

    async def failed() -> bool:
        got = await store.deliveries.get(r.delivery_id)
        return got is not None and got.status == "failed"

    await until(failed)
    await d.stop()
    assert rec.calls["flaky", r.delivery_id] == POLICY.max_attempts
    assert rec.calls["good", r.delivery_id] == 1
    stored = await store.deliveries.get(r.delivery_id)
    assert stored is not None
    assert "flaky handler failed" in (stored.last_error or "")
    assert stored.pending_handlers == [f"{__name__}.Recorder.__init__.<locals>.flaky"]
    # Every failure was logged with the delivery id.
    failures = [x for x in caplog.records if x.getMessage().startswith("handler ")]
    assert len(failures) == POLICY.max_attempts
    assert all(x.context["delivery"] == r.delivery_id for x in failures)


async def test_unprocessed_deliveries_are_recovered_after_a_restart(store: Store):
    """A process stored deliveries, then died: a new process takes them over."""
    rec = Recorder()
    dead = [record() for _ in range(5)]
    await store.deliveries.insert_new(dead, "dead-process", lease=0.2)
    fresh = dispatcher(store, rec, owner="new-process")
    fresh.start()

    async def all_processed() -> bool:
        return await store.deliveries.count("processed") == 5

    await until(all_processed)
    await fresh.stop()
    assert all(rec.calls["good", r.delivery_id] == 1 for r in dead)


async def test_live_claims_are_not_taken_by_another_process(store: Store):
    rec = Recorder()
    held = record()
    await store.deliveries.insert_new([held], "alive", lease=30)
    other = dispatcher(store, rec, owner="other")
    assert await other.sweep() == 0
    # A retry that is not due yet is not taken either, even unclaimed.
    later = record()
    await store.deliveries.insert_new([later], None, lease=30)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.delivery_id == later.delivery_id)
            .values(next_attempt_at=utcnow() + timedelta(seconds=60))
        )
    assert await other.sweep() == 0


async def test_two_processes_share_the_store_and_process_each_delivery_once(store: Store):
    rec = Recorder()
    records = [record("opened") for _ in range(60)]
    await store.deliveries.insert_new(records, None, lease=1.0)
    a = dispatcher(store, rec, owner="a", concurrency=4, capacity=20)
    b = dispatcher(store, rec, owner="b", concurrency=4, capacity=20)
    a.start()
    b.start()

    async def done() -> bool:
        return await store.deliveries.count("processed") == len(records)

    await until(done, timeout=30)
    await asyncio.gather(a.stop(), b.stop())
    assert sorted(rec.calls.values()) == [1] * len(records)
    assert rec.max_running <= 8


async def test_stop_releases_claims_for_the_next_process(store: Store):
    rec = Recorder()
    d = dispatcher(store, rec, owner="stopping")
    r = record()
    await store.deliveries.insert_new([r], "stopping", lease=30)
    await d.stop()  # never started: holds the claim only in the store
    claimed = await store.deliveries.claim_due("next", lease=30)
    assert [x.delivery_id for x in claimed] == [r.delivery_id]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_handler_errors_reach_sentry(store: Store, aiohttp_server):
    """With SENTRY_DSN set, a handler error arrives at Sentry with the delivery id."""
    import sentry_sdk
    from aiohttp import web

    from bot.logs import redact_event

    envelopes: list[bytes] = []

    async def ingest(request: web.Request) -> web.Response:
        envelopes.append(await request.read())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/1/envelope/", ingest)
    server = await aiohttp_server(app)
    sentry_sdk.init(dsn=f"http://public@127.0.0.1:{server.port}/1", before_send=redact_event)
    try:
        rec = Recorder(fail_times=100)
        d = dispatcher(store, rec, max_attempts=1)
        r = record()
        await store.deliveries.insert_new([r], d.owner, POLICY.lease)
        await d.process(r, None)
        await asyncio.to_thread(sentry_sdk.flush, 5)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()
    raw = b"".join(envelopes)
    import gzip

    texts = []
    for blob in envelopes:
        try:
            texts.append(gzip.decompress(blob).decode())
        except OSError:
            texts.append(blob.decode(errors="replace"))
    text = "\n".join(texts)
    assert raw, "nothing reached the Sentry endpoint"
    assert "flaky handler failed" in text
    assert r.delivery_id in text


async def test_the_payload_is_parsed_only_when_a_handler_reads_it(store: Store):
    """Routing reads the stored action; the payload's objects are built on first use of `data`."""
    router = routing.Router()
    seen: list[object] = []

    @router.register("issues", action="labeled")
    async def reads(event, gh, ctx):
        seen.append(event.data["issue"]["number"])

    @router.register("issues", action="closed")
    async def looks_away(event, gh, ctx):
        seen.append("no data needed")

    rec = Recorder()
    rec.router = router
    d = dispatcher(store, rec, max_attempts=1)
    # Well-formed JSON that orjson refuses (a number past a double's range): it
    # can only be processed if nobody parses it.
    unparsable = b'{"action": "%s", "issue": {"number": 1e999}}'
    records = {}
    for action in ("opened", "closed", "labeled"):
        r = record(action)
        r.payload = unparsable % action.encode()
        records[action] = r
        await store.deliveries.insert_new([r], d.owner, POLICY.lease)
        await d.process(r, None)
    statuses = {a: (await store.deliveries.get(r.delivery_id)).status for a, r in records.items()}
    # Nobody routed (opened) or nobody reading (closed): processed. A reader: its error, parked.
    assert statuses == {"opened": "processed", "closed": "processed", "labeled": "failed"}
    assert seen == ["no data needed"]
    failed = await store.deliveries.get(records["labeled"].delivery_id)
    assert "JSONDecodeError" in (failed.last_error or "")
    # A readable payload is parsed when read.
    good = record("labeled")
    await store.deliveries.insert_new([good], d.owner, POLICY.lease)
    await d.process(good, None)
    assert seen == ["no data needed", 1]


async def test_routes_on_other_fields_than_action_still_work(store: Store):
    """gidgethub routes on any top-level field; for one other than `action` the payload is read."""
    router = routing.Router()
    seen: list[str] = []

    @router.register("issues", state="open")
    async def by_state(event, gh, ctx):
        seen.append(event.delivery_id)

    rec = Recorder()
    rec.router = router
    d = dispatcher(store, rec)
    hits, misses = record("edited"), record("edited")
    hits.payload = b'{"action": "edited", "state": "open"}'
    misses.payload = b'{"action": "edited", "state": "closed"}'
    for r in (hits, misses):
        await store.deliveries.insert_new([r], d.owner, POLICY.lease)
        await d.process(r, None)
    assert seen == [hits.delivery_id]
