"""A webhook relay on loopback that speaks smee.io's protocol, for tests.

`POST /{channel}` takes a webhook as GitHub sends it; every client streaming
`GET /{channel}` (server-sent events) gets it as one `message` whose data is
the request's headers (lower-case names) with `body` (the parsed JSON) and
`query`, as smee.io sends them. A new stream starts with a `ready` event, and
`ping` events come every `ping_every` seconds. `drop()` ends every open
stream, as a relay restarting does.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web


class SmeeRelay:
    def __init__(self, *, ping_every: float = 0.5) -> None:
        self._streams: dict[str, list[asyncio.Queue[str | None]]] = {}
        self._ping_every = ping_every
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.posts = 0
        self.streams_opened = 0
        self._next_id = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def channel(self, name: str = "compound-test") -> str:
        return f"{self.base}/{name}"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/{channel}", self._stream)
        app.router.add_post("/{channel}", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        self.drop()
        if self._runner is not None:
            await self._runner.cleanup()

    def listeners(self, name: str = "compound-test") -> int:
        return len(self._streams.get(name, []))

    def drop(self) -> None:
        for queues in self._streams.values():
            for q in queues:
                q.put_nowait(None)

    async def _post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        message = {k.lower(): v for k, v in request.headers.items()}
        message["body"] = json.loads(raw)
        message["query"] = dict(request.query)
        message["timestamp"] = int(time.time() * 1000)
        self.posts += 1
        self._next_id += 1
        frame = f"id: {self._next_id}\ndata: {json.dumps(message)}\n\n"
        for q in self._streams.get(request.match_info["channel"], []):
            q.put_nowait(frame)
        return web.Response(status=200, text="ok")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        q: asyncio.Queue[str | None] = asyncio.Queue()
        queues = self._streams.setdefault(request.match_info["channel"], [])
        queues.append(q)
        self.streams_opened += 1
        try:
            await response.write(b"event: ready\ndata: {}\n\n")
            while True:
                try:
                    frame = await asyncio.wait_for(q.get(), self._ping_every)
                except TimeoutError:
                    frame = "event: ping\ndata: {}\n\n"
                if frame is None:
                    break
                await response.write(frame.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            queues.remove(q)
        return response
