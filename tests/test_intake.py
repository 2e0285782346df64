"""Webhook intake (docs/design.md §4) over real HTTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import uuid

import aiohttp
import pytest
from sqlalchemy import text

from bot.service import Service
from tests.conftest import WEBHOOK_SECRET, make_settings, serving
from tests.twin.webhooks import delivery_headers
from tests.webhook_examples import example

PATH = "/api/github/webhooks"


def labeled_payload() -> dict:
    payload = example("issues", "labeled")
    payload["installation"] = {"id": 4242, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="}
    return payload


def signed(event: str, body: bytes, delivery: str | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    return delivery_headers(event, body, secret, app_id=1, delivery_id=delivery or str(uuid.uuid4()))


def handler_runs(svc: Service, handler: str) -> float:
    value = svc.metrics.registry.get_sample_value(
        "compound_handler_results_total",
        {"event": "issues", "handler": handler, "outcome": "ok"},
    )
    return value or 0.0


@pytest.fixture(params=["front", "aiohttp"])
async def client(request, service: Service, aiohttp_client):
    """The front (what `compound serve` listens with), and the aiohttp route behind it."""
    if request.param == "aiohttp":
        yield await aiohttp_client(service.web_app())
        return
    async with serving(service) as listener, aiohttp.ClientSession(base_url=listener.url) as session:
        yield session


BODY = json.dumps(labeled_payload()).encode()


def _without(headers: dict, *names: str) -> dict:
    return {k: v for k, v in headers.items() if k not in names}


BAD_INPUT = {
    # case: (method, headers, body, status)
    "bad signature": ("POST", {**signed("issues", BODY), "X-Hub-Signature-256": "sha256=" + "0" * 64}, BODY, 401),
    "missing signature": ("POST", _without(signed("issues", BODY), "X-Hub-Signature-256"), BODY, 401),
    "sha1 signature only": ("POST", _without(signed("issues", BODY), "X-Hub-Signature-256"), BODY, 401),
    "wrong secret": ("POST", signed("issues", BODY, secret="not-the-secret"), BODY, 401),
    "signature of another body": ("POST", signed("issues", b"{}"), BODY, 401),
    "non-JSON body": ("POST", signed("issues", b"not json {"), b"not json {", 400),
    "JSON that is not an object": ("POST", signed("issues", b"[1, 2]"), b"[1, 2]", 400),
    "JSON with something after it": ("POST", signed("issues", b'{"a": 1} {}'), b'{"a": 1} {}', 400),
    "a string that is not UTF-8": ("POST", signed("issues", b'{"a": "\xff"}'), b'{"a": "\xff"}', 400),
    "malformed deep inside": (
        "POST",
        signed("issues", b'{"action": "labeled", "x": [{"y": tru}]}'),
        b'{"action": "labeled", "x": [{"y": tru}]}',
        400,
    ),
    "form-encoded body": (
        "POST",
        {
            **signed("issues", b"payload=" + BODY),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        b"payload=" + BODY,
        400,
    ),
    "missing event header": ("POST", _without(signed("issues", BODY), "X-GitHub-Event"), BODY, 400),
    "malformed event header": ("POST", signed("issues; DROP", BODY), BODY, 400),
    "missing delivery header": ("POST", _without(signed("issues", BODY), "X-GitHub-Delivery"), BODY, 400),
    "malformed delivery header": (
        "POST",
        {**signed("issues", BODY), "X-GitHub-Delivery": "x" * 200},
        BODY,
        400,
    ),
    "unknown event": ("POST", signed("star", BODY), BODY, 200),
    "ping": (
        "POST",
        signed("ping", b'{"zen": "Design for failure.", "hook_id": 1}'),
        b'{"zen": "Design for failure.", "hook_id": 1}',
        200,
    ),
    "GET": ("GET", {}, b"", 405),
    "PUT": ("PUT", signed("issues", BODY), BODY, 405),
    "DELETE": ("DELETE", {}, b"", 405),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
async def test_bad_input_is_answered_and_nothing_is_stored(case, client, service: Service):
    method, headers, body, status = BAD_INPUT[case]
    response = await client.request(method, PATH, data=body, headers=headers)
    assert response.status == status, await response.text()
    if status != 405:
        payload = await response.json()
        assert payload.get("error") or payload.get("status") in {"ignored", "pong"}
    assert await service.store.deliveries.count() == 0
    await service.dispatcher.drain()
    assert handler_runs(service, "handlers.issues.on_issues_labeled") == 0


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_oversized_body_is_413_and_not_stored(framing, client, service: Service):
    body = b'{"pad": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    headers = signed("issues", body)
    if framing == "chunked":

        async def chunks():
            for start in range(0, len(body), 1 << 20):
                yield body[start : start + (1 << 20)]

        data = chunks()
    else:
        data = io.BytesIO(body)
        headers["Content-Length"] = str(len(body))
    response = await client.post(PATH, data=data, headers=headers)
    assert response.status == 413
    assert await service.store.deliveries.count() == 0


async def test_valid_delivery_is_stored_before_the_202(client, service: Service):
    delivery = str(uuid.uuid4())
    response = await client.post(PATH, data=BODY, headers=signed("issues", BODY, delivery))
    assert response.status == 202
    assert (await response.json()) == {"status": "accepted", "delivery": delivery}
    # Read right after the answer: the row is there, with what was parsed.
    stored = await service.store.deliveries.get(delivery)
    assert stored is not None
    assert (stored.event, stored.action, stored.installation_id) == ("issues", "labeled", 4242)
    assert stored.repo == labeled_payload()["repository"]["full_name"]
    assert stored.payload == BODY  # byte for byte, as signed
    await service.dispatcher.drain()
    stored = await service.store.deliveries.get(delivery)
    assert stored is not None and stored.status == "processed"
    assert handler_runs(service, "handlers.issues.on_issues_labeled") == 1


async def test_odd_shapes_of_the_fields_read_before_the_202_are_stored_without_them(client, service: Service):
    payload = {**labeled_payload(), "installation": "4242", "repository": ["not", "an", "object"]}
    body = json.dumps(payload).encode()
    delivery = str(uuid.uuid4())
    response = await client.post(PATH, data=body, headers=signed("issues", body, delivery))
    assert response.status == 202
    stored = await service.store.deliveries.get(delivery)
    assert stored is not None
    assert (stored.action, stored.installation_id, stored.repo) == ("labeled", None, None)


async def test_redelivery_is_answered_200_and_processed_once(client, service: Service):
    delivery = str(uuid.uuid4())
    first = await client.post(PATH, data=BODY, headers=signed("issues", BODY, delivery))
    await service.dispatcher.drain()
    again = await client.post(PATH, data=BODY, headers=signed("issues", BODY, delivery))
    assert (first.status, again.status) == (202, 200)
    assert (await again.json())["status"] == "duplicate"
    await service.dispatcher.drain()
    assert handler_runs(service, "handlers.issues.on_issues_labeled") == 1
    assert await service.store.deliveries.count() == 1


async def test_concurrent_redeliveries_are_processed_once(client, service: Service):
    import asyncio

    delivery = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(client.post(PATH, data=BODY, headers=signed("issues", BODY, delivery)) for _ in range(10))
    )
    assert sorted(r.status for r in responses) == [200] * 9 + [202]
    await service.dispatcher.drain()
    assert handler_runs(service, "handlers.issues.on_issues_labeled") == 1


async def test_store_failure_answers_503_so_github_can_redeliver(client, service: Service):
    # A real failure of the store: the table is gone while a delivery arrives.
    async with service.store.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE deliveries RENAME TO deliveries_away"))
    try:
        response = await client.post(PATH, data=BODY, headers=signed("issues", BODY))
    finally:
        async with service.store.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE deliveries_away RENAME TO deliveries"))
    assert response.status == 503
    assert "redeliver" in (await response.json())["error"]
    assert await service.store.deliveries.count() == 0
    # The intake keeps working once the store is back.
    response = await client.post(PATH, data=BODY, headers=signed("issues", BODY))
    assert response.status == 202


async def test_metrics_count_deliveries_by_event_and_outcome(client, service: Service):
    await client.post(PATH, data=BODY, headers=signed("issues", BODY))
    await client.post(PATH, data=BODY, headers=signed("issues", BODY, secret="wrong"))
    text = await (await client.get("/metrics")).text()
    assert 'compound_webhook_deliveries_total{event="issues",outcome="accepted"} 1.0' in text
    assert 'outcome="rejected_signature"} 1.0' in text


async def test_healthz_checks_the_store(client, tmp_path, aiohttp_client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"
    # A service whose database cannot be reached reports it.
    unreachable = Service(make_settings(tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"))
    broken = await aiohttp_client(unreachable.web_app())
    response = await broken.get("/healthz")
    assert response.status == 503
    assert (await response.json())["store"] == "unreachable"
    await unreachable.store.close()
