"""The front (bot/front.py) over raw sockets on loopback: framing, keep-alive, hand-over to aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bot.front import listen
from bot.service import Service
from tests.conftest import WEBHOOK_SECRET, serving
from tests.twin.webhooks import delivery_headers
from tests.webhook_examples import example

PATH = "/api/github/webhooks"
BODY = json.dumps(example("issues", "labeled")).encode()

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def request(
    body: bytes = BODY,
    *,
    delivery: str | None = None,
    path: str = PATH,
    version: str = "1.1",
    extra: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[bytes, str]:
    """A signed delivery as bytes on the wire, and its delivery id."""
    delivery = delivery or str(uuid.uuid4())
    headers = {"Host": "127.0.0.1", **delivery_headers("issues", body, WEBHOOK_SECRET, 1, delivery)}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        half = len(body) // 2
        payload = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])) + b"0\r\n\r\n"
    else:
        headers["Content-Length"] = str(len(body))
        payload = body
    headers.update(extra or {})
    head = f"POST {path} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + payload, delivery


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert status_line, "connection closed before an answer"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


@asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def stored(service: Service, delivery: str) -> bool:
    return await service.store.deliveries.get(delivery) is not None


async def test_pipelined_deliveries_are_answered_in_order(service: Service):
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            first, one = request()
            second, two = request()
            writer.write(first + second)  # both in one segment
            answers = [await read_response(reader), await read_response(reader)]
    assert [(status, json.loads(body)["delivery"]) for status, _, body in answers] == [(202, one), (202, two)]
    assert await stored(service, one) and await stored(service, two)


async def test_a_delivery_split_anywhere_is_put_back_together(service: Service):
    wire, delivery = request()
    head_end = wire.index(b"\r\n\r\n")
    cuts = [3, 20, head_end - 5, head_end + 2, head_end + 100, len(wire) - 1]
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            start = 0
            for cut in cuts + [len(wire)]:
                writer.write(wire[start:cut])
                await writer.drain()
                await asyncio.sleep(0.01)
                start = cut
            status, headers, body = await read_response(reader)
    assert status == 202, body
    assert headers["content-type"] == "application/json"
    assert "date" in headers
    assert await stored(service, delivery)


async def test_keep_alive_then_another_route_on_the_same_connection(service: Service):
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            for _ in range(3):
                writer.write(request()[0])
                assert (await read_response(reader))[0] == 202
            # Not a delivery: aiohttp takes the connection over from this request on.
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert status == 200 and json.loads(body)["status"] == "ok"
            assert "aiohttp" in headers.get("server", "")
            # Deliveries on it still work, through aiohttp's route now.
            wire, delivery = request()
            writer.write(wire)
            assert (await read_response(reader))[0] == 202
    assert await stored(service, delivery)
    assert await service.store.deliveries.count() == 4


@pytest.mark.parametrize(
    "case, extra, chunked",
    [
        ("chunked body", {}, True),
        ("Expect: 100-continue", {"Expect": "100-continue"}, False),
    ],
)
async def test_what_the_front_does_not_read_itself_aiohttp_answers(case, extra, chunked, service: Service):
    wire, delivery = request(extra=extra, chunked=chunked)
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(wire)
            status, headers, body = await read_response(reader)
            if status == 100:  # the interim answer to Expect, then the real one
                status, headers, body = await read_response(reader)
    assert status == 202, body
    assert await stored(service, delivery)


@pytest.mark.parametrize(
    "wire, status",
    [
        # Content-Length and chunked together is how requests are smuggled: refused.
        (request(extra={"Transfer-Encoding": "chunked"})[0], 400),
        (b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nBad Header\r\nContent-Length: 2\r\n\r\n{}", 400),
        (request(path=PATH + "x")[0], 404),
    ],
    ids=["content-length and chunked", "malformed header line", "another path"],
)
async def test_bad_requests_get_aiohttps_answer_and_nothing_is_stored(wire, status, service: Service):
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(wire)
            assert (await read_response(reader))[0] == status
    assert await service.store.deliveries.count() == 0


async def test_query_string_on_the_webhook_path_is_a_delivery(service: Service):
    wire, delivery = request(path=PATH + "?source=hook")
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(wire)
            status, headers, _ = await read_response(reader)
    assert status == 202 and "server" not in headers  # the front answered
    assert await stored(service, delivery)


@pytest.mark.parametrize(
    "version, extra, closes, connection_header",
    [
        ("1.1", {}, False, None),
        ("1.1", {"Connection": "close"}, True, "close"),
        ("1.0", {}, True, "close"),
        ("1.0", {"Connection": "keep-alive"}, False, "keep-alive"),
    ],
)
async def test_connection_persistence_follows_http(version, extra, closes, connection_header, service: Service):
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(request(version=version, extra=extra)[0])
            status, headers, _ = await read_response(reader)
            assert status == 202
            assert headers.get("connection") == connection_header
            if closes:
                assert await asyncio.wait_for(reader.read(), 5) == b""
            else:
                writer.write(request(version=version, extra=extra)[0])
                assert (await read_response(reader))[0] == 202


async def test_a_client_that_goes_away_mid_body_leaves_nothing(service: Service):
    wire, delivery = request()
    async with serving(service) as listener:
        async with connection(listener.port) as (_, writer):
            writer.write(wire[: len(wire) - 100])
            await writer.drain()
        await asyncio.sleep(0.1)
        # The front still serves others.
        async with connection(listener.port) as (reader, writer):
            writer.write(request()[0])
            assert (await read_response(reader))[0] == 202
    assert not await stored(service, delivery)
    assert await service.store.deliveries.count() == 1


async def test_a_request_sent_before_the_client_half_closes_is_answered(service: Service):
    wire, delivery = request()
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(wire)
            writer.write_eof()
            status, _, _ = await read_response(reader)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # then the front closes
    assert status == 202
    assert await stored(service, delivery)


async def test_idle_connections_are_closed(service: Service):
    listener = await listen(
        service.web_app(), service.intake, host="127.0.0.1", port=0, path=PATH, keepalive_timeout=0.3
    )
    try:
        async with connection(listener.port) as (reader, writer):
            writer.write(request()[0])
            assert (await read_response(reader))[0] == 202
            # Nothing more is sent: closed after the keep-alive timeout.
            assert await asyncio.wait_for(reader.read(), 5) == b""
        # So is one that stops half-way through a request.
        async with connection(listener.port) as (reader, writer):
            writer.write(request()[0][:50])
            assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        await listener.close(grace=1.0)


async def test_close_ends_idle_keep_alive_connections_at_once(service: Service):
    listener = await listen(service.web_app(), service.intake, host="127.0.0.1", port=0, path=PATH)
    port = listener.port
    async with connection(port) as (reader, writer):
        writer.write(request()[0])
        assert (await read_response(reader))[0] == 202
        started = asyncio.get_running_loop().time()
        await listener.close(grace=5.0)
        assert asyncio.get_running_loop().time() - started < 1.0
        assert await asyncio.wait_for(reader.read(), 5) == b""
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_a_signature_that_is_not_ascii_is_401_not_a_crash(service: Service):
    wire, _ = request(extra={"X-Hub-Signature-256": "sha256=\u00e9" + "0" * 63})
    wire = wire.replace("\u00e9".encode(), b"\xe9")  # latin-1 on the wire, as a client might
    async with serving(service) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(wire)
            status, _, body = await read_response(reader)
    assert status == 401, body
    assert await service.store.deliveries.count() == 0
