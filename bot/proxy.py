"""Local webhooks: read deliveries from a webhook proxy channel (WEBHOOK_PROXY_URL).

As Probot's `WEBHOOK_PROXY_URL`: GitHub sends the App's webhooks to a channel
on a relay (https://smee.io/new gives one), and Compound, on a machine GitHub
cannot reach, holds a server-sent events stream open to the channel and takes
each delivery from it. The smee protocol: each webhook is one SSE `message`
whose data is a JSON object of the request's headers (lower-case names) plus
`body`, the parsed JSON body (and `query`); the relay also sends `ready` and
`ping` events, which carry no delivery.

Each delivery goes through the same intake as a direct one (`Intake.receive`):
the signature is checked, the delivery stored and deduplicated by its GUID,
and then dispatched. The relay re-serializes the body, so the bytes checked
are the compact JSON of what it parsed; GitHub sends compact JSON too, so the
signature matches. Whatever fails that check is refused as forged.

The stream is reopened after it drops, with exponential backoff and jitter
(1 s doubling to 60 s, reset once a stream is open); `Last-Event-ID` asks the
relay for what was sent meanwhile, where it keeps any.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import orjson
from httpx_sse import SSEError, aconnect_sse

from bot.background import cancel
from bot.intake import Intake

log = logging.getLogger("compound.proxy")


@dataclass
class Backoff:
    first: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.first * 2.0 ** min(attempt, 30))
        return base * random.uniform(0.5, 1.0)


def channel_name(url: str) -> str:
    """The channel's host only: the path is the channel's key, kept out of logs."""
    return urlsplit(url).netloc or "?"


def parse_message(data: str) -> tuple[bytes, dict[str, str]] | None:
    """(body, lower-cased headers) of one smee `message`; None if it carries no delivery."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or "body" not in message:
        return None
    raw = message.pop("body")
    message.pop("query", None)
    # A body the relay could not parse as JSON arrives as a string: as it is.
    body = raw.encode() if isinstance(raw, str) else orjson.dumps(raw)
    headers = {str(k).lower(): str(v) for k, v in message.items() if isinstance(v, (str, int))}
    return body, headers


class ProxyChannel:
    """The stream from one channel, feeding `intake`, reopened with backoff until closed."""

    def __init__(self, url: str, intake: Intake, *, backoff: Backoff | None = None) -> None:
        self.url = url
        self._intake = intake
        self.backoff = backoff or Backoff()
        self._task: asyncio.Task[None] | None = None
        self._last_id: str | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        # (delivery id, status) of every delivery taken from the channel, in order.
        self.answers: list[tuple[str, int]] = []

    def start(self) -> None:
        # httpx logs each request's URL at INFO, and the channel's path is its key.
        httpx_log = logging.getLogger("httpx")
        httpx_log.setLevel(max(httpx_log.getEffectiveLevel(), logging.WARNING))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhook-proxy")

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        attempt = 0
        name = channel_name(self.url)
        # No read timeout: the relay pings every so often, but a quiet channel is no fault.
        timeout = httpx.Timeout(None, connect=15.0)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
            while True:
                try:
                    opened = await self._stream(client)
                    if opened:
                        attempt = 0
                    log.warning("webhook proxy channel on %s closed the stream; reconnecting", name)
                except (httpx.HTTPError, SSEError) as exc:
                    log.warning(
                        "webhook proxy channel on %s: %s; reconnecting",
                        name,
                        exc.__class__.__name__ + (f" {exc}" if str(exc) else ""),
                    )
                finally:
                    self.connected.clear()
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1

    async def _stream(self, client: httpx.AsyncClient) -> bool:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._last_id:
            headers["Last-Event-ID"] = self._last_id
        async with aconnect_sse(client, "GET", self.url, headers=headers) as source:
            source.response.raise_for_status()
            self.connections += 1
            self.connected.set()
            log.info("reading webhooks from the proxy channel on %s", channel_name(self.url))
            async for event in source.aiter_sse():
                if event.id:
                    self._last_id = event.id
                if event.event != "message":
                    continue  # `ready`, `ping`
                await self._deliver(event.data)
        return True

    async def _deliver(self, data: str) -> None:
        parsed = parse_message(data)
        if parsed is None:
            log.debug("webhook proxy: a message without a delivery")
            return
        body, h = parsed
        delivery = h.get("x-github-delivery", "")
        status, answer = await self._intake.receive(
            body,
            signature=h.get("x-hub-signature-256", ""),
            event=h.get("x-github-event", ""),
            delivery_id=delivery,
            content_type=h.get("content-type", "application/json"),
        )
        self.answers.append((delivery, status))
        if status >= 400:
            log.warning(
                "webhook proxy: delivery %s refused (%s): %s", delivery or "?", status, answer.decode(errors="replace")
            )
