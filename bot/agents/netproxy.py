"""The agent's egress filter (AGENT_NETWORK_ALLOW): an HTTP proxy on a Unix socket.

With an allow-list the sandbox has no network of its own. Inside it,
`netbridge.py` forwards 127.0.0.1:PORT to this proxy's socket; the proxy
opens a connection only to a host on the list (the domain itself or a
subdomain of it), on ports 443 and 80 unless the entry names another
(`host:8443`, or `host:*` for any), and refuses everything else with 403, so an injected agent
cannot send the repository anywhere but where the operator allowed. It speaks
`CONNECT host:port` (HTTPS and anything tunnelled) and plain `http://` requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("compound.agents")

HEAD_LIMIT = 16 * 1024
CONNECT_TIMEOUT = 30.0


# Ports a bare domain in AGENT_NETWORK_ALLOW opens: HTTPS, and HTTP for registries
# that redirect. `host:port` opens another; `host:*` any.
DEFAULT_PORTS = frozenset({443, 80})


def allow_entry(domain: str) -> tuple[str, frozenset[int] | None]:
    """`example.com` → (name, HTTPS and HTTP); `example.com:8443` → that port; `:*` → any (None)."""
    domain = domain.strip()
    name, sep, port = domain.rpartition(":")
    bare_ipv6 = domain.count(":") > 1 and not domain.startswith("[")
    if not sep or bare_ipv6 or not (port.isdigit() or port == "*"):
        name, port = domain, ""
    name = name.lower().rstrip(".").strip("[]").removeprefix("*.")
    if port == "*":
        return name, None
    return name, frozenset({int(port)}) if port else DEFAULT_PORTS


def allowed(host: str, port: int, domains: tuple[str, ...]) -> bool:
    """Whether `host:port` is allowed: `host` one of `domains` or under one
    (`*.example.com` means the same), on a port that entry opens."""
    host = host.lower().rstrip(".").strip("[]")
    for domain in domains:
        name, ports = allow_entry(domain)
        if (host == name or host.endswith("." + name)) and (ports is None or port in ports):
            return True
    return False


class EgressProxy:
    """One run's proxy: `async with EgressProxy(path, domains)`; what it refused in `denied`."""

    def __init__(self, path: Path, domains: tuple[str, ...]) -> None:
        self.path = path
        self.domains = domains
        self.denied: set[str] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> EgressProxy:
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path))
        self.path.chmod(0o777)  # the agent may run as another user
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        if self.denied:
            log.warning("the agent tried to reach hosts not in AGENT_NETWORK_ALLOW: %s", ", ".join(sorted(self.denied)))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > HEAD_LIMIT:
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method.upper() == "CONNECT":
            host, _, port = target.rpartition(":")
            forward = b""
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                return await _answer(writer, 400, "only CONNECT and http:// requests go through this proxy")
            host, port = url.hostname, str(url.port or 80)
            forward = head
        if not port.isdigit() or not allowed(host, int(port), self.domains):
            self.denied.add(f"{host}:{port}")
            return await _answer(writer, 403, f"Compound: {host}:{port} is not in AGENT_NETWORK_ALLOW")
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError, ValueError):
            return await _answer(writer, 502, f"Compound: could not connect to {host}:{port}")
        try:
            if forward:
                up_writer.write(forward)
            else:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = (text + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )
    await writer.drain()
