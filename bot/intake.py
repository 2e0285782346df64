"""Webhook intake (DESIGN §4): verify, store durably, answer fast, dispatch after.

Order of checks: size (413), signature (401), headers (400), content type and
JSON (400). Nothing of a rejected request is stored or dispatched. A valid
delivery is in the store before the 202 is sent; the same delivery id again is
answered 200 and not processed a second time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from bot.batching import Batcher
from bot.dispatch import Dispatcher
from bot.metrics import Metrics
from bot.store.deliveries import DeliveryRecord, DeliveryStore

log = logging.getLogger("compound.intake")

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_EVENT_RE = re.compile(r"^[a-z_]{1,64}$")
_DELIVERY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def _json(code: int, **body: Any) -> web.Response:
    return web.Response(status=code, body=orjson.dumps(body), content_type="application/json")


class DeliveryWriter:
    """Stores deliveries with group commit; answers whether each one was new."""

    def __init__(self, store: DeliveryStore, owner: str, lease: float) -> None:
        self._store = store
        self._owner = owner
        self._lease = lease
        self._batcher: Batcher[DeliveryRecord, bool] = Batcher(self._flush, name="delivery-writer")

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def store(self, record: DeliveryRecord) -> bool:
        return await self._batcher.submit(record)

    async def _flush(self, records: Sequence[DeliveryRecord]) -> list[bool]:
        claimed = [r for r in records if r.claimed]
        unclaimed = [r for r in records if not r.claimed]
        new: set[str] = set()
        if claimed:
            new |= await self._store.insert_new(claimed, self._owner, self._lease)
        if unclaimed:
            new |= await self._store.insert_new(unclaimed, None, self._lease)
        results = []
        for r in records:  # a redelivery within the same batch is still a duplicate
            results.append(r.delivery_id in new)
            new.discard(r.delivery_id)
        return results


class Intake:
    """The aiohttp handler for `POST {WEBHOOK_PATH}`."""

    def __init__(
        self,
        *,
        secret: str | None,
        writer: DeliveryWriter,
        dispatcher: Dispatcher | None,
        metrics: Metrics,
        events: frozenset[str],
    ) -> None:
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256) if secret else None
        self._writer = writer
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._events = events

    def _rejected(self, status: int, outcome: str, message: str, event: str = "") -> web.Response:
        self._metrics.deliveries.labels(event or "unknown", outcome).inc()
        return _json(status, error=message)

    async def handle(self, request: web.Request) -> web.Response:
        if self._mac is None:
            # Setup mode (no App registered yet): never accept an unsigned payload.
            return self._rejected(503, "not_configured", "WEBHOOK_SECRET is not set")
        headers = request.headers
        if (request.content_length or 0) > MAX_BODY:
            return self._rejected(413, "too_large", "payload over 25 MB")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the cap
            return self._rejected(413, "too_large", "payload over 25 MB")

        signature = headers.get("X-Hub-Signature-256")
        if not signature:
            return self._rejected(401, "rejected_signature", "missing X-Hub-Signature-256")
        mac = self._mac.copy()
        mac.update(body)
        if not hmac.compare_digest("sha256=" + mac.hexdigest(), signature):
            return self._rejected(401, "rejected_signature", "signature does not match")

        event = headers.get("X-GitHub-Event", "")
        delivery_id = headers.get("X-GitHub-Delivery", "")
        if not _EVENT_RE.match(event):
            return self._rejected(400, "rejected_headers", "missing or malformed X-GitHub-Event")
        if not _DELIVERY_RE.match(delivery_id):
            return self._rejected(400, "rejected_headers", "missing or malformed X-GitHub-Delivery", event)
        if request.content_type != "application/json":
            return self._rejected(
                400,
                "rejected_body",
                "set the webhook's content type to application/json",
                event,
            )
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._rejected(400, "rejected_body", "body is not JSON", event)
        if not isinstance(data, dict):
            return self._rejected(400, "rejected_body", "body is not a JSON object", event)

        if event == "ping":
            self._metrics.deliveries.labels(event, "ping").inc()
            return _json(200, status="pong", zen=data.get("zen"))
        if event not in self._events:
            self._metrics.deliveries.labels(event, "ignored").inc()
            return _json(200, status="ignored", reason=f"Compound does not handle {event!r}")

        record = _record(delivery_id, event, data, body)
        dispatcher = self._dispatcher
        # Claimed: this process processes it right after the answer. Unclaimed
        # (no room, or a web-only process): any process's sweeper takes it.
        record.claimed = dispatcher is not None and dispatcher.reserve()
        try:
            new = await self._writer.store(record)
        except Exception:
            if record.claimed:
                dispatcher.unreserve()
            log.exception("could not store delivery", extra={"delivery": delivery_id, "event": event})
            self._metrics.deliveries.labels(event, "store_error").inc()
            # GitHub shows the failure and the delivery can be redelivered: nothing lost.
            return _json(503, error="could not store the delivery; please redeliver")
        if not new:
            if record.claimed:
                dispatcher.unreserve()
            self._metrics.deliveries.labels(event, "duplicate").inc()
            return _json(200, status="duplicate", delivery=delivery_id)
        self._metrics.deliveries.labels(event, "accepted").inc()
        if record.claimed:
            dispatcher.submit(record, data)
        elif dispatcher is not None:
            dispatcher.poke()
        return _json(202, status="accepted", delivery=delivery_id)


def _record(delivery_id: str, event: str, data: dict[str, Any], body: bytes) -> DeliveryRecord:
    installation = data.get("installation")
    repository = data.get("repository")
    action = data.get("action")
    return DeliveryRecord(
        delivery_id=delivery_id,
        event=event,
        action=action if isinstance(action, str) else None,
        installation_id=installation.get("id") if isinstance(installation, dict) else None,
        repo=repository.get("full_name") if isinstance(repository, dict) else None,
        payload=body.decode("utf-8", errors="replace"),
    )


def parse_record(delivery_id: str, event: str, body: bytes) -> tuple[DeliveryRecord, dict[str, Any]]:
    """For `compound receive`: a record and its payload from a saved file."""
    data = orjson.loads(body)
    if not isinstance(data, dict):
        raise ValueError("payload is not a JSON object")
    return _record(delivery_id, event, data, body), data
