"""The front's limits over real sockets on loopback: connections, head and body deadlines, body budget.

Each test starts its own listener with small limits so that a limit is reached
quickly; waits are event-driven (a read that ends when the front answers or
closes) with generous bounds, as the machine running them is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from bot.front import listen
from bot.service import Service
from tests.test_front import PATH, connection, read_response, request, stored

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

MB = 1024 * 1024


def announced(length: int) -> bytes:
    """A delivery head announcing `length` bytes of body, and no body."""
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: issues\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@contextlib.asynccontextmanager
async def limited(service: Service, **limits):
    listener = await listen(service.web_app(), service.intake, host="127.0.0.1", port=0, path=PATH, **limits)
    try:
        yield listener
    finally:
        await listener.close(grace=1.0)


async def answer_or_close(reader: asyncio.StreamReader) -> int | None:
    """The status the front answers with before closing, None if it just closes."""
    data = await asyncio.wait_for(reader.read(), 10)
    return int(data.split()[1]) if data else None


async def delivered_within(port: int, seconds: float) -> tuple[float, str]:
    wire, delivery = request()
    began = time.monotonic()
    async with connection(port) as (reader, writer):
        writer.write(wire)
        status, _, _ = await read_response(reader)
    assert status == 202
    return time.monotonic() - began, delivery


async def test_a_head_that_never_ends_is_408_even_when_bytes_keep_trickling(service: Service):
    async with limited(service, head_timeout=0.5, keepalive_timeout=30) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\n")
            began = time.monotonic()

            async def trickle():
                with contextlib.suppress(OSError):
                    for i in range(100):
                        writer.write(b"X-Slow-%d: y\r\n" % i)
                        await asyncio.sleep(0.1)

            task = asyncio.create_task(trickle())
            assert await answer_or_close(reader) == 408
            task.cancel()
            assert time.monotonic() - began < 8  # well before the 10 s the trickle lasts


async def test_a_body_that_never_ends_is_408(service: Service):
    async with limited(service, body_timeout=0.5, keepalive_timeout=30) as listener:
        async with connection(listener.port) as (reader, writer):
            wire, delivery = request()
            writer.write(wire[:-10])  # the head and all but the last bytes of the body
            assert await answer_or_close(reader) == 408
    assert not await stored(service, delivery)
    assert listener.front.in_flight == 0


async def test_a_body_over_25_mb_is_413_without_being_read(service: Service):
    async with limited(service) as listener:
        async with connection(listener.port) as (reader, writer):
            writer.write(announced(25 * MB + 1))
            assert await answer_or_close(reader) == 413
        assert listener.front.in_flight == 0


async def test_connections_over_the_cap_are_503_and_closed(service: Service):
    async with limited(service, max_connections=4) as listener:
        held = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(4)]
        for _, writer in held:
            writer.write(b"POST ")  # each is a request under way
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await answer_or_close(reader) == 503
        writer.close()
        # Once the held ones go, deliveries are served again.
        for _, w in held:
            w.close()
        for _ in range(200):
            if not listener.front.connections:
                break
            await asyncio.sleep(0.02)
        await delivered_within(listener.port, 5)


async def test_bodies_over_the_shared_budget_are_503_and_it_recovers(service: Service):
    async with limited(service, body_budget=3 * MB) as listener:
        front = listener.front
        first = await asyncio.open_connection("127.0.0.1", listener.port)
        first[1].write(announced(2 * MB))
        for _ in range(250):
            if front.in_flight:
                break
            await asyncio.sleep(0.02)
        assert front.in_flight == 2 * MB + len(announced(2 * MB))
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(announced(2 * MB))
        assert await answer_or_close(reader) == 503
        writer.close()
        first[1].close()
        for _ in range(250):
            if not front.in_flight:
                break
            await asyncio.sleep(0.02)
        assert front.in_flight == 0
        # The same request fits again.
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(announced(2 * MB))
        for _ in range(250):
            if front.in_flight:
                break
            await asyncio.sleep(0.02)
        assert front.in_flight > 0
        writer.close()


async def test_slow_loris_and_25_mb_announcements_do_not_stop_a_delivery(service: Service):
    """200 slow-loris connections and 100 announcing 25 MB: a signed delivery is still accepted in < 1 s."""
    import resource

    async with limited(service, max_connections=400, body_budget=64 * MB) as listener:
        port = listener.port
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        writers = []
        for _ in range(200):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n")
            writers.append(w)
        for _ in range(100):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(announced(25 * MB) + b"{" * 1000)
            writers.append(w)
        for _ in range(3):
            for w in writers[:200]:
                w.write(b"X: y\r\n")
            await asyncio.sleep(0.05)
        took, delivery = await delivered_within(port, 1)
        assert took < 1.0, took
        assert await stored(service, delivery)
        # At most two 25 MB announcements fit the 64 MB budget; the rest were refused.
        assert listener.front.in_flight <= 2 * len(announced(25 * MB)) + 2 * 25 * MB
        assert listener.front.refused[503] >= 97
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        assert (rss_after - rss_before) * 1024 < 100 * MB
        for w in writers:
            w.close()
