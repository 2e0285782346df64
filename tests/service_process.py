"""`compound serve` (or `worker`) as a subprocess, the way an operator runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

COMPOUND = [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**env: object) -> dict[str, str]:
    """A clean environment: nothing of the developer's shell leaks into the service."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "SYSTEMROOT"}}
    return {**keep, **{k: str(v) for k, v in env.items() if v is not None}}


class ServiceProcess:
    def __init__(
        self,
        cwd: Path,
        env: dict[str, str],
        command: str = "serve",
        args: tuple[str, ...] = (),
        *,
        host: str | None = "127.0.0.1",  # None: HOST unset, the service's default
    ) -> None:
        self.cwd = cwd
        self.args = args
        self.port = int(env.get("PORT") or free_port())
        self.env = {**env, "PORT": str(self.port)}
        if host is not None:
            self.env["HOST"] = host
        self.command = command
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = cwd / f"compound-{command}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            *COMPOUND, self.command, *self.args, cwd=self.cwd, env=self.env, stdout=log, stderr=log
        )
        log.close()
        if self.command != "serve":
            return
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"compound serve exited {self.proc.returncode}:\n{self.logs()}")
                try:
                    async with session.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def get_json(self, path: str) -> dict:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as r:
            return await r.json()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode or 0
