"""A scripted stand-in for the Anthropic Messages API, for running the real
Claude Code CLI offline (ANTHROPIC_BASE_URL=http://127.0.0.1:PORT).

The main conversation follows a script of turns, chosen by how many assistant
messages the request already holds, so a retried request gets the same answer:

    ScriptedMessagesAPI([
        {"tool_use": {"name": "Bash", "input": {"command": "echo hi > hi.txt"}}},
        {"text": "Created hi.txt."},
    ])

Requests that offer no tools (Claude Code's side queries: titles, topic checks)
get a short text answer. Streaming requests get server-sent events in the
documented order (message_start, content_block_start/delta/stop,
message_delta with the stop reason and usage, message_stop); others get one
JSON message. Every request is recorded in `requests`.

The CLI itself: `npm ci --prefix tests/claude_stub` installs the version pinned
in package.json (with its native binary) into tests/claude_stub/node_modules.

Run alone: python tests/claude_stub/server.py --port 8765 (writes hello.txt with Bash).
"""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any

from aiohttp import web

MODEL = "claude-sonnet-4-5-20250929"
USAGE = {
    "input_tokens": 1200,
    "output_tokens": 60,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}


class ScriptedMessagesAPI:
    def __init__(self, turns: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
        self.turns = turns
        self.usage = usage or USAGE
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_route("*", "/{tail:.*}", self.other)
        return app

    @property
    def main_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"] == "/v1/messages" and r["body"].get("tools")]

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        if body.get("tools"):
            turn = self._turn(body)
        else:
            turn = {"text": "Scripted answer."}
        blocks = self._blocks(turn)
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        message = {
            "id": f"msg_stub{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or MODEL,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": dict(self.usage),
        }
        if not body.get("stream"):
            return web.json_response(message)
        return await self._stream(request, message)

    async def count_tokens(self, request: web.Request) -> web.Response:
        self._record(request, await request.json())
        return web.json_response({"input_tokens": self.usage["input_tokens"]})

    async def other(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "stub"}}, status=404)

    def _record(self, request: web.Request, body: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in ("x-api-key", "authorization")}
        self.requests.append({"method": request.method, "path": request.path, "headers": headers, "body": body})

    def _turn(self, body: dict[str, Any]) -> dict[str, Any]:
        answered = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        return self.turns[min(answered, len(self.turns) - 1)]

    def _blocks(self, turn: dict[str, Any]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if "text" in turn:
            blocks.append({"type": "text", "text": turn["text"]})
        if "tool_use" in turn:
            use = turn["tool_use"]
            blocks.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_stub{next(self._ids):04d}",
                    "name": use["name"],
                    "input": use["input"],
                }
            )
        return blocks

    async def _stream(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**message["usage"], "output_tokens": 1},
        }
        await event("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                await event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                await event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": block["text"]},
                    },
                )
            else:
                await event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
                )
                arguments = json.dumps(block["input"])
                for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                    await event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": part},
                        },
                    )
            await event("content_block_stop", {"type": "content_block_stop", "index": index})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
        await event("message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    options = parser.parse_args()
    write = {"command": "echo hello from the stub > hello.txt", "description": "Write hello.txt"}
    api = ScriptedMessagesAPI([{"tool_use": {"name": "Bash", "input": write}}, {"text": "Wrote hello.txt."}])
    web.run_app(api.app(), host="127.0.0.1", port=options.port)


if __name__ == "__main__":
    main()
