"""The listening socket (docs/design.md §4): deliveries on a lean path, everything else to aiohttp.

A webhook delivery is one `POST {WEBHOOK_PATH}` with a Content-Length, and
aiohttp's request machinery (request and response objects, stream reader,
handler task) costs two to three times what storing the delivery costs. So the
front reads those requests itself: httptools (Node's llhttp) parses and
validates the head, the body is the next Content-Length bytes, and
`Intake.receive` gives the answer, written back as a small HTTP/1.1 response.

Anything else hands the connection, from the first byte of that request on, to
aiohttp's handler for the web app, which serves it to the end: another path or
method, a chunked body, `Expect: 100-continue`, an upgrade, a body over the
25 MB cap, a head llhttp rejects. Both paths answer through `Intake.receive`,
so a delivery gets the same answer either way.

One request per connection is answered at a time, in order (pipelined requests
wait in the buffer; reading pauses when a lot is waiting). A connection with
nothing in progress for `keepalive_timeout` seconds is closed, as aiohttp does.

Limits, so that slow or greedy clients cannot starve the others: at most
`max_connections` connections are served at once (more are answered 503 and
closed); a request head must arrive within `head_timeout` seconds of its first
byte and the whole request within `body_timeout` (408 and closed otherwise,
however steadily the bytes trickle in); a body over the 25 MB cap is answered
413; and bodies still arriving, before their signature can be checked, may
hold at most `body_budget` bytes across all connections together: a request
whose announced Content-Length would exceed it is answered 503 and closed
(GitHub redelivers), so 25 MB announced on many connections costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus

import httptools
from aiohttp import web

from bot.intake import MAX_BODY, Intake

log = logging.getLogger("compound.web")

MAX_HEAD = 64 * 1024  # longer heads go to aiohttp, which answers 400 or 431
MAX_CONNECTIONS = 1024
HEAD_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its head
BODY_TIMEOUT = 30.0  # seconds from a request's first byte to the end of its body
BODY_BUDGET = 64 * 1024 * 1024  # bytes of unverified bodies in flight, all connections together
READ_PAUSE = 1 << 20  # stop reading while answering once this much is waiting
# After a refusal (408, 413, 503), how long the connection drains before it closes.
LINGER_SECONDS = 1.0
_HANDED_OVER = (b"transfer-encoding", b"expect", b"upgrade")
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# A delivery's head: (request length, head length, headers, keep-alive, HTTP/1.0).
_Head = tuple[int, int, dict[bytes, bytes], bool, bool]
_HAND_OVER: _Head = (-1, -1, {}, False, False)  # the request is aiohttp's
_TOO_LARGE: _Head = (-2, -2, {}, False, False)  # a delivery over MAX_BODY: 413 without reading it


class Front:
    """Serves `POST {path}` deliveries itself and hands other connections to `fallback`."""

    def __init__(
        self,
        intake: Intake,
        fallback: Callable[[], asyncio.Protocol],
        *,
        path: str,
        keepalive_timeout: float = 75.0,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout: float = HEAD_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        body_budget: int = BODY_BUDGET,
    ) -> None:
        self.intake = intake
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.body_budget = body_budget
        self.in_flight = 0  # bytes reserved for bodies still arriving
        self.refused = {408: 0, 413: 0, 503: 0}
        self.fallback = fallback
        self.path = path.encode()
        self.prefix = b"POST " + self.path
        self.keepalive_timeout = keepalive_timeout
        self.closing = False
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._date = b""
        self._date_second = 0

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog, reuse_address=True
        )
        self._reaper = loop.create_task(self._reap(), name="front-reaper")

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def host(self) -> str:
        assert self._server is not None
        host: str = self._server.sockets[0].getsockname()[0]
        return host

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening, close idle connections, let answers in progress finish (up to `grace`)."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        deadline = time.monotonic() + grace
        while True:
            for conn in list(self.connections):
                if not conn.busy:
                    conn.close()
            if not self.connections or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close(abort=True)

    def response(self, status: int, body: bytes, keep_alive: bool, http10: bool) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date = formatdate(second, usegmt=True).encode()
        if not keep_alive:
            connection = b"Connection: close\r\n"
        else:
            connection = b"Connection: keep-alive\r\n" if http10 else b""
        return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\n%s\r\n%s" % (
            status,
            _REASONS.get(status, b""),
            len(body),
            self._date,
            connection,
            body,
        )

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        every = max(0.05, min(5.0, self.keepalive_timeout / 3, self.head_timeout / 4, self.body_timeout / 4))
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            idle_since = now - self.keepalive_timeout
            for conn in list(self.connections):
                if conn.busy:
                    continue
                if conn.started is not None:
                    limit = self.body_timeout if conn.has_head else self.head_timeout
                    if now - conn.started > limit:
                        conn.refuse(408, b'{"error":"request timeout"}')
                        continue
                if conn.last < idle_since:
                    conn.close()


class _Connection(asyncio.Protocol):
    """One client connection while the front serves it."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being answered
        self.paused = False
        self.eof = False
        self.lingering = False  # refused and answered: reading only to drop what arrives
        self.last = 0.0  # loop time of the last bytes in or answer out
        self.started: float | None = None  # loop time of the first byte of the request arriving
        self.reserved = 0  # bytes of front.in_flight this connection's body holds
        self._task: asyncio.Task[None] | None = None
        # The head of the request in the buffer, once parsed, while its body arrives.
        self._head: _Head | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.last = self._loop.time()
        if len(self.front.connections) >= self.front.max_connections:
            self.refuse(503, b'{"error":"too many connections"}')
            return
        self.front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        self._release()
        self.transport = None

    @property
    def has_head(self) -> bool:
        return self._head is not None

    def refuse(self, status: int, answer: bytes) -> None:
        """Answer `status` and close: the client is over a limit."""
        self.front.refused[status] = self.front.refused.get(status, 0) + 1
        self.front.connections.discard(self)
        self._release()
        self.buffer.clear()
        self._head = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(self.front.response(status, answer, False, False))
            if not transport.can_write_eof():
                transport.close()
                return
            # A lingering close: closing with the client's bytes still coming
            # makes the kernel answer them with a reset, which can destroy the
            # answer before the client reads it. So the write side is shut and
            # what still arrives is discarded, for LINGER_SECONDS at most.
            self.lingering = True
            transport.write_eof()
            if self.paused:
                self.paused = False
                transport.resume_reading()
            self._loop.call_later(LINGER_SECONDS, transport.close)

    def _release(self) -> None:
        self.front.in_flight -= self.reserved
        self.reserved = 0

    def _reserve(self, head: _Head) -> bool:
        """Reserve the announced body's bytes from the shared budget; False: refused."""
        need = head[0]
        front = self.front
        if front.in_flight + need > front.body_budget:
            self.refuse(503, b'{"error":"busy, retry later"}')
            return False
        front.in_flight += need
        self.reserved = need
        return True

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # refused: what still arrives is dropped
        self.last = self._loop.time()
        if self.started is None and not self.busy:
            self.started = self.last
        if self.busy or self.buffer or self._head is not None:
            self.buffer += data
            if not self.busy:
                self._next()
            elif len(self.buffer) > READ_PAUSE and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
            return
        # The usual case: a whole request in one read. Slice it from `data`
        # without going through the buffer (12 KB copied once, not three times).
        head = self._parse_head(data)
        if head is None or head is _HAND_OVER or head is _TOO_LARGE or len(data) < head[0]:
            self.buffer += data
            if head is _HAND_OVER:
                self._hand_over()
            elif head is _TOO_LARGE:
                self.refuse(413, b'{"error":"payload too large"}')
            elif head is not None and self._reserve(head):
                self._head = head
            return
        total = head[0]
        if len(data) > total:  # pipelined: the next request waits in the buffer
            self.buffer += memoryview(data)[total:]
        self._start(data[head[1] : total], head)

    def eof_received(self) -> bool:
        # Keep the write side open for an answer in progress; a request cut short is dropped.
        self.eof = True
        return self.busy and not self.lingering

    # -- httptools callbacks ---------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.setdefault(name.lower(), value)

    # -- serving ---------------------------------------------------------------

    def close(self, *, abort: bool = False) -> None:
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def _next(self) -> None:
        """Start answering the request at the front of the buffer, or hand the connection over."""
        if self._head is None:
            head = self._parse_head(self.buffer)
            if head is _HAND_OVER:
                self._hand_over()
            elif head is _TOO_LARGE:
                self.refuse(413, b'{"error":"payload too large"}')
                return
            if head is None or head is _HAND_OVER:
                return
            if len(self.buffer) < head[0] and not self._reserve(head):
                return
            self._head = head
        total, head_length = self._head[0], self._head[1]
        if len(self.buffer) < total:
            return  # the rest of the body is on its way
        head, self._head = self._head, None
        body = bytes(self.buffer[head_length:total])
        del self.buffer[:total]
        self._start(body, head)

    def _start(self, body: bytes, head: _Head) -> None:
        self._release()
        self.started = None
        self.busy = True
        _, _, headers, keep_alive, http10 = head
        self._task = self._loop.create_task(self._answer(body, headers, keep_alive, http10))

    def _parse_head(self, buffer: bytes | bytearray) -> _Head | None:
        """The parsed head of a delivery at the start of `buffer`; None: wait for more bytes.

        `_HAND_OVER` when aiohttp is to serve it.
        """
        front = self.front
        if not buffer.startswith(front.prefix):
            if len(buffer) < len(front.prefix) and front.prefix.startswith(buffer):
                return None
            return _HAND_OVER
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD or b"\n\n" in buffer:
                return _HAND_OVER
            return None
        head_length = end + 4
        self._url = b""
        self._headers = {}
        parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(buffer[:head_length])
        except httptools.HttpParserError:
            return _HAND_OVER  # aiohttp answers 400 the way it always does
        headers = self._headers
        length = headers.get(b"content-length")
        version = parser.get_http_version()
        if (
            self._url.partition(b"?")[0] != front.path
            or version not in ("1.1", "1.0")
            or length is None
            or any(name in headers for name in _HANDED_OVER)
            or not length.isdigit()
        ):
            return _HAND_OVER
        if int(length) > MAX_BODY:
            return _TOO_LARGE
        return head_length + int(length), head_length, headers, parser.should_keep_alive(), version == "1.0"

    def _hand_over(self) -> None:
        """From here on aiohttp serves this connection, starting with what is buffered."""
        transport = self.transport
        self.front.connections.discard(self)
        if transport is None:
            return
        protocol = self.front.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data = bytes(self.buffer)
        self.buffer.clear()
        self.transport = None
        if data:
            protocol.data_received(data)
        if self.eof:
            protocol.eof_received()

    async def _answer(self, body: bytes, headers: dict[bytes, bytes], keep_alive: bool, http10: bool) -> None:
        def text(name: bytes) -> str:
            value = headers.get(name)
            return value.decode("latin-1") if value is not None else ""

        try:
            status, answer = await self.front.intake.receive(
                body,
                signature=text(b"x-hub-signature-256"),
                event=text(b"x-github-event"),
                delivery_id=text(b"x-github-delivery"),
                content_type=text(b"content-type"),
            )
        except Exception:
            log.exception("webhook request failed")
            status, answer, keep_alive = 500, b'{"error":"internal error"}', False
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client went away; the delivery, if stored, is processed all the same
        keep_alive = keep_alive and not self.front.closing
        transport.write(self.front.response(status, answer, keep_alive, http10))
        self.busy = False
        self.last = self._loop.time()
        self.started = self.last if self.buffer else None  # a pipelined request's clock starts now
        if not keep_alive:
            transport.close()
            return
        if self.paused:
            self.paused = False
            transport.resume_reading()
        if self.buffer:
            self._next()
        if self.eof and not self.busy and self.transport is not None:
            transport.close()  # the client sent all it will send


async def listen(
    app: web.Application,
    intake: Intake,
    *,
    host: str,
    port: int,
    path: str,
    keepalive_timeout: float = 75.0,
    **limits: float,
) -> Listener:
    """Serve `app` on host:port, deliveries to `path` through the front."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    assert runner.server is not None
    front = Front(intake, runner.server, path=path, keepalive_timeout=keepalive_timeout, **limits)  # type: ignore[arg-type]
    try:
        await front.start(host, port)
    except BaseException:
        await runner.cleanup()
        raise
    return Listener(front, runner)


class Listener:
    """The front and the aiohttp runner behind it, closed together."""

    def __init__(self, front: Front, runner: web.AppRunner) -> None:
        self.front = front
        self.runner = runner

    @property
    def port(self) -> int:
        return self.front.port

    @property
    def url(self) -> str:
        """http://host:port of the first socket listened on."""
        host = self.front.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def close(self, grace: float = 10.0) -> None:
        await self.front.close(grace)
        await self.runner.cleanup()
