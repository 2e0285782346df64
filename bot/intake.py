"""Webhook intake (docs/design.md §4): verify, store durably, answer fast, dispatch after.

Order of checks: size (413), signature (401), headers (400), content type and
JSON (400). Nothing of a rejected request is stored or dispatched. A valid
delivery is in the store before the 202 is sent; the same delivery id again is
answered 200 and not processed a second time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
from aiohttp import web

from bot.dispatch import Dispatcher
from bot.metrics import Metrics
from bot.store.deliveries import DeliveryRecord, DeliveryStore

log = logging.getLogger("compound.intake")

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_EVENT_RE = re.compile(r"^[a-z_]{1,64}$")
_DELIVERY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


# A status and the JSON body to answer with.
Answer = tuple[int, bytes]


# What the intake reads of a payload before the 202: msgspec checks the whole
# body is well-formed JSON but builds objects only for these fields (a few µs
# for 12 KB, where building every object costs five times that). The handlers'
# view of the payload is built after the answer, and only if one reads it
# (bot/dispatch.py).
class _Id(msgspec.Struct):
    id: Any = None


class _FullName(msgspec.Struct):
    full_name: Any = None


class _Envelope(msgspec.Struct):
    action: Any = None
    installation: _Id | None = None
    repository: _FullName | None = None


class _AnyEnvelope(msgspec.Struct):
    """For the odd payload whose `installation` or `repository` is not an object."""

    action: Any = None
    installation: Any = None
    repository: Any = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ANY_ENVELOPE = msgspec.json.Decoder(_AnyEnvelope)


def read_envelope(body: bytes) -> tuple[Any, Any, Any] | None:
    """(action, installation id, repository full name) of a JSON object; None if it is none.

    Raises ValueError when the body is not well-formed JSON in UTF-8.
    """
    try:
        body.decode()  # msgspec does not look inside the strings it skips
        try:
            envelope: Any = _ENVELOPE.decode(body)
            installation = envelope.installation.id if envelope.installation else None
            repo = envelope.repository.full_name if envelope.repository else None
        except msgspec.ValidationError:
            envelope = _ANY_ENVELOPE.decode(body)
            installation = envelope.installation
            installation = installation.get("id") if isinstance(installation, dict) else None
            repo = envelope.repository
            repo = repo.get("full_name") if isinstance(repo, dict) else None
    except msgspec.ValidationError:  # well-formed, but not an object
        return None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    return envelope.action, installation, repo


class DeliveryWriter:
    """Group commit for the intake's new deliveries and the dispatcher's processed marks.

    Whatever arrives while a write is in flight goes into the next one, and
    both kinds share it: one transaction (one commit, one fsync) per cycle.
    `store` answers whether the delivery was new once it is committed.
    """

    def __init__(self, store: DeliveryStore, owner: str, lease: float, *, max_batch: int = 512) -> None:
        self._store = store
        self._owner = owner
        self._lease = lease
        self._max_batch = max_batch
        self._records: list[tuple[DeliveryRecord, asyncio.Future[bool]]] = []
        self._processed: list[str] = []
        self._marks_failed: Callable[[list[str]], Awaitable[None]] | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._marks_in_flight = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="delivery-writer")

    @property
    def marks_pending(self) -> int:
        """Processed marks handed in and not written yet."""
        return len(self._processed) + self._marks_in_flight

    @property
    def running(self) -> bool:
        return self._task is not None and not self._closing

    async def close(self) -> None:
        """Write what was submitted, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._store.release_held()

    async def store(self, record: DeliveryRecord) -> bool:
        if self._closing or self._task is None:
            raise RuntimeError("delivery-writer is not running")
        future: asyncio.Future[bool] = self._task.get_loop().create_future()
        self._records.append((record, future))
        self._wakeup.set()
        return await future

    def mark_processed(self, delivery_id: str) -> None:
        """Record that a delivery was processed, in the next write (not awaited)."""
        self._processed.append(delivery_id)
        self._wakeup.set()

    def on_marks_failed(self, callback: Callable[[list[str]], Awaitable[None]]) -> None:
        """Who to tell when processed marks could not be written (they run again)."""
        self._marks_failed = callback

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._records or self._processed:
                batch = self._records[: self._max_batch]
                del self._records[: self._max_batch]
                processed = self._processed[: self._max_batch * 4]
                del self._processed[: self._max_batch * 4]
                self._marks_in_flight = len(processed)
                try:
                    await self._write(batch, processed)
                finally:
                    self._marks_in_flight = 0
            if self._closing:
                return

    async def _write(self, batch: list[tuple[DeliveryRecord, asyncio.Future[bool]]], processed: list[str]) -> None:
        try:
            new = await self._store.write([r for r, _ in batch], self._owner, self._lease, processed, hold=True)
        except Exception as exc:  # the callers get the error (503) and log it once; the loop goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if processed:
                await self._write_marks(processed if batch else None, processed)
            return
        for record, future in batch:
            if not future.done():  # a redelivery within the same batch is still a duplicate
                if record.delivery_id in new:
                    new.discard(record.delivery_id)
                    future.set_result(True)
                else:
                    future.set_result(False)

    async def _write_marks(self, retry: list[str] | None, processed: list[str]) -> None:
        """Marks that failed along with new deliveries get a write of their own."""
        if retry is not None:
            try:
                await self._store.write((), self._owner, self._lease, retry)
                return
            except Exception:
                pass
        if self._marks_failed is not None:
            await self._marks_failed(processed)


class Intake:
    """`POST {WEBHOOK_PATH}`: `receive` for the front (bot/front.py), `handle` for aiohttp."""

    def __init__(
        self,
        *,
        secret: str | None,
        writer: DeliveryWriter,
        dispatcher: Dispatcher | None,
        metrics: Metrics,
        events: frozenset[str],
    ) -> None:
        self._secret = secret.encode() if secret else None
        self._writer = writer
        self._dispatcher = dispatcher
        self._store_failing = 0  # deliveries answered 503 since the store last took a write
        self._metrics = metrics
        self._events = events
        self._counters: dict[tuple[str, str], Any] = {}
        if dispatcher is not None:
            # Processed marks ride along with the next deliveries' write.
            dispatcher.complete_through(writer)

    def _count(self, event: str, outcome: str) -> None:
        # Bound once per (event, outcome): labels() on every delivery costs.
        counter = self._counters.get((event, outcome))
        if counter is None:
            counter = self._counters[(event, outcome)] = self._metrics.deliveries.labels(event, outcome)
        counter.inc()

    def _rejected(self, status: int, outcome: str, message: str, event: str = "") -> Answer:
        self._count(event or "unknown", outcome)
        return status, orjson.dumps({"error": message})

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp route: requests the front hands over (chunked, Expect, oversized…)."""
        if self._secret is not None and (request.content_length or 0) > MAX_BODY:
            status, body = self._rejected(413, "too_large", "payload over 25 MB")
        else:
            try:
                payload = await request.read() if self._secret is not None else b""
            except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the cap
                status, body = self._rejected(413, "too_large", "payload over 25 MB")
            else:
                h = request.headers
                status, body = await self.receive(
                    payload,
                    signature=h.get("X-Hub-Signature-256", ""),
                    event=h.get("X-GitHub-Event", ""),
                    delivery_id=h.get("X-GitHub-Delivery", ""),
                    content_type=h.get("Content-Type", ""),
                )
        return web.Response(status=status, body=body, content_type="application/json")

    async def receive(self, body: bytes, *, signature: str, event: str, delivery_id: str, content_type: str) -> Answer:
        """One delivery, framework aside: its status and JSON answer.

        The body is complete and within MAX_BODY; the header values are as
        sent ("" when missing).
        """
        if self._secret is None:
            # Setup mode (no App registered yet): never accept an unsigned payload.
            return self._rejected(503, "not_configured", "WEBHOOK_SECRET is not set")
        if not signature:
            return self._rejected(401, "rejected_signature", "missing X-Hub-Signature-256")
        expected = "sha256=" + hmac.digest(self._secret, body, "sha256").hex()
        if not signature.isascii() or not hmac.compare_digest(expected, signature):
            return self._rejected(401, "rejected_signature", "signature does not match")

        if not _EVENT_RE.match(event):
            return self._rejected(400, "rejected_headers", "missing or malformed X-GitHub-Event")
        if not _DELIVERY_RE.match(delivery_id):
            return self._rejected(400, "rejected_headers", "missing or malformed X-GitHub-Delivery", event)
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return self._rejected(
                400,
                "rejected_body",
                "set the webhook's content type to application/json",
                event,
            )
        try:
            envelope = read_envelope(body)
        except ValueError:
            return self._rejected(400, "rejected_body", "body is not JSON", event)
        if envelope is None:
            return self._rejected(400, "rejected_body", "body is not a JSON object", event)

        if event == "ping":
            self._count(event, "ping")
            return 200, orjson.dumps({"status": "pong", "zen": orjson.loads(body).get("zen")})
        if event not in self._events:
            self._count(event, "ignored")
            return 200, orjson.dumps({"status": "ignored", "reason": f"Compound does not handle {event!r}"})

        record = _record(delivery_id, event, envelope, body)
        dispatcher = self._dispatcher
        # Claimed: this process processes it right after the answer. Unclaimed
        # (no room, or a web-only process): any process's sweeper takes it.
        claimer = dispatcher if dispatcher is not None and dispatcher.reserve() else None
        record.claimed = claimer is not None
        try:
            new = await self._writer.store(record)
        except Exception as exc:
            if claimer is not None:
                claimer.unreserve()
            # One line when the store stops taking writes (disk full, database
            # gone), not one per delivery; another when it takes them again.
            if not self._store_failing:
                log.error(
                    "the store refuses writes (%s: %s); answering 503 until it takes them again",
                    type(exc).__name__,
                    exc,
                    extra={"delivery": delivery_id, "event": event},
                )
            self._store_failing += 1
            self._count(event, "store_error")
            # GitHub shows the failure and the delivery can be redelivered: nothing lost.
            return 503, orjson.dumps({"error": "could not store the delivery; please redeliver"})
        if self._store_failing:
            log.warning("the store takes writes again, after %d deliveries answered 503", self._store_failing)
            self._store_failing = 0
        if not new:
            if claimer is not None:
                claimer.unreserve()
            self._count(event, "duplicate")
            return 200, orjson.dumps({"status": "duplicate", "delivery": delivery_id})
        self._count(event, "accepted")
        if claimer is not None:
            claimer.submit(record, None)
        elif dispatcher is not None:
            dispatcher.poke()
        # The id matched _DELIVERY_RE: nothing in it needs escaping in JSON.
        return 202, b'{"status":"accepted","delivery":"' + delivery_id.encode() + b'"}'


def _record(delivery_id: str, event: str, envelope: tuple[Any, Any, Any], body: bytes) -> DeliveryRecord:
    action, installation_id, repo = envelope
    return DeliveryRecord(
        delivery_id=delivery_id,
        event=event,
        action=action if isinstance(action, str) else None,
        installation_id=installation_id if type(installation_id) is int else None,
        repo=repo if isinstance(repo, str) else None,
        payload=body,
    )


def parse_record(delivery_id: str, event: str, body: bytes) -> tuple[DeliveryRecord, dict[str, Any]]:
    """For `compound receive`: a record and its payload from a saved file."""
    data = orjson.loads(body)
    if not isinstance(data, dict):
        raise ValueError("payload is not a JSON object")
    envelope = read_envelope(body)
    assert envelope is not None
    return _record(delivery_id, event, envelope, body), data
