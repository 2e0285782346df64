"""Runs an agent CLI to completion, timeout or stop, and never leaves a process behind.

The agent starts in a session (and so a process group) of its own. Ending a
run — however it ends — signals the group and every descendant seen under the
agent (see `processes`: Claude Code detaches its tool commands from the
group): SIGTERM, then SIGKILL after a grace period. Agent failures are
results, never exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.agents.base import AgentBackend, AgentRequest, AgentResult, AgentUsage, BoundedLines
from bot.agents.environment import agent_environment
from bot.agents.netproxy import EgressProxy
from bot.agents.orphans import MARK, RunRecords
from bot.agents.processes import ProcessTree, snapshot
from bot.agents.sandbox import Launch, Sandbox

log = logging.getLogger("compound.agents")

LINE_LIMIT = 1_000_000  # characters of one output line kept (the rest is dropped)
TAIL_LINES, TAIL_CHARS, TAIL_LINE_CHARS = 200, 20_000, 2_000
PARSE_LINES, PARSE_CHARS = 400, 4_000_000
SCAN_INTERVAL = 1.0  # seconds between looks at the agents' process trees


class AgentRunner:
    def __init__(
        self,
        *,
        grace: float = 3.0,
        source_env: dict[str, str] | None = None,
        sandbox: Sandbox | None = None,
        records: RunRecords | None = None,
    ) -> None:
        self.grace = grace  # between SIGTERM and SIGKILL
        self.source_env = source_env  # None: this process's environment
        # The service always passes the sandbox its probe chose (bot/agents/sandbox.py).
        self.sandbox = sandbox or Sandbox("none", "no sandbox given to the runner")
        self.records = records  # where a later process finds this one's orphans
        self._trees: set[ProcessTree] = set()
        self._watcher: asyncio.Task[None] | None = None

    async def run(self, backend: AgentBackend, request: AgentRequest, stop: asyncio.Event | None = None) -> AgentResult:
        started = time.monotonic()
        run = _Run(backend, request)
        if stop is not None and stop.is_set():
            return run.result(None, started, stopped=True)
        if not request.workspace.is_dir():
            return run.failed(f"workspace {request.workspace} does not exist", started)
        if not self.sandbox.usable:
            return run.failed(f"agents cannot start: no sandbox. {self.sandbox.detail}", started)
        with tempfile.TemporaryDirectory(prefix="compound-agent-") as tmp:
            scratch = Path(tmp)
            prompt_file = scratch / "prompt.md"
            prompt_file.write_text(request.prompt, encoding="utf-8")
            argv, prompt_on_stdin = backend.build(request, prompt_file)
            env = {**backend.env, **agent_environment(request, self.source_env)}
            env["AGENT_PROMPT_FILE"] = str(prompt_file)
            found = shutil.which(argv[0], path=env.get("PATH"))
            if found and not self.sandbox.visible(found):
                return run.failed(
                    f"{argv[0]} is at {found}, which the sandbox does not show the agent: "
                    "add its directory to AGENT_SANDBOX_PATHS",
                    started,
                )
            mark = self.records.open() if self.records is not None else None
            if mark is not None:
                env[MARK] = mark  # lets a later process find orphans (orphans.py)
            proxy = scratch / "egress.sock" if self.sandbox.filtered else None
            launch = self.sandbox.launch(
                argv,
                env=env,
                workspace=request.workspace,
                scratch=scratch,
                git_common_dir=request.git_common_dir,
                git_dir=request.git_dir,
                backend=backend.name,
                proxy=proxy,
            )
            try:
                async with self.sandbox.lent(
                    request.workspace, scratch, request.git_common_dir, request.git_dir, settle=request.settle
                ):
                    if proxy is None:
                        return await self._start(run, launch, prompt_on_stdin, started, stop, argv[0], found)
                    async with EgressProxy(proxy, self.sandbox.allow):
                        return await self._start(run, launch, prompt_on_stdin, started, stop, argv[0], found)
            finally:
                if mark is not None and self.records is not None:
                    self.records.close(mark)

    async def _start(
        self,
        run: _Run,
        launch: Launch,
        prompt_on_stdin: bool,
        started: float,
        stop: asyncio.Event | None,
        program: str,
        found: str | None,
    ) -> AgentResult:
        request = run.request
        try:
            process = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.PIPE if prompt_on_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=launch.cwd,
                env=launch.env,
                start_new_session=True,
                **launch.options,
            )
        except (FileNotFoundError, PermissionError) as exc:
            if launch.argv[0] != program:  # the sandbox's own program is missing
                return run.failed(f"{launch.argv[0]}: {exc.strerror or exc} (the {self.sandbox.mode} sandbox)", started)
            reason = "permission denied" if found else "command not found"
            return run.failed(f"{program}: {reason} ({exc.strerror or exc})", started)
        log.info(
            "agent started",
            extra={
                "session": request.session_id,
                "backend": run.backend.name,
                "pid": process.pid,
                "sandbox": self.sandbox.mode,
            },
        )
        tree = ProcessTree(process.pid)
        tree.scan()
        self._watch(tree)
        try:
            return await run.supervise(process, tree, started, stop, self.grace)
        finally:
            self._trees.discard(tree)
            if not self._trees and self._watcher is not None:
                self._watcher.cancel()

    def _watch(self, tree: ProcessTree) -> None:
        """Look at every running agent's tree now and then, with one pass over /proc."""
        self._trees.add(tree)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_trees())

    async def _watch_trees(self) -> None:
        while self._trees:
            await asyncio.sleep(SCAN_INTERVAL)
            processes = snapshot()
            for tree in list(self._trees):
                tree.scan(processes)


class _Run:
    """The state of one run: output kept, how it ended."""

    def __init__(self, backend: AgentBackend, request: AgentRequest) -> None:
        self.backend = backend
        self.request = request
        self.tail = BoundedLines(TAIL_LINES, TAIL_CHARS)
        self.kept = BoundedLines(PARSE_LINES, PARSE_CHARS)
        self.callback_failed = False

    def failed(self, message: str, started: float) -> AgentResult:
        log.warning("agent could not start: %s", message, extra={"session": self.request.session_id})
        self.tail.append(message)
        return AgentResult(
            exit_code=None,
            timed_out=False,
            stopped=False,
            duration=time.monotonic() - started,
            final_message=message,
            usage=AgentUsage(model=self.request.model),
            log_tail=message,
        )

    def result(
        self, exit_code: int | None, started: float, *, timed_out: bool = False, stopped: bool = False
    ) -> AgentResult:
        try:
            final_message, usage = self.backend.parse(self.kept.lines())
        except Exception:  # a parser bug must not lose the run's outcome
            log.exception("could not parse the agent's output", extra={"session": self.request.session_id})
            final_message, usage = None, AgentUsage()
        if usage.model is None:
            usage.model = self.request.model
        tail = self.tail.lines()
        if final_message is None and not (exit_code == 0 and not timed_out and not stopped):
            # A CLI that failed before speaking its format (bad flag, no key): its last words.
            final_message = next((line.strip() for line in reversed(tail) if line.strip()), None)
        return AgentResult(
            exit_code=exit_code,
            timed_out=timed_out,
            stopped=stopped,
            duration=time.monotonic() - started,
            final_message=final_message,
            usage=usage,
            log_tail="\n".join(tail)[-TAIL_CHARS:],
        )

    async def supervise(
        self,
        process: asyncio.subprocess.Process,
        tree: ProcessTree,
        started: float,
        stop: asyncio.Event | None,
        grace: float,
    ) -> AgentResult:
        assert process.stdout is not None and process.stderr is not None
        feeder = asyncio.create_task(self._feed(process))
        readers = asyncio.gather(self._read(process.stdout), self._read(process.stderr))
        exited = asyncio.create_task(_exit_of(process))
        stopping = asyncio.create_task(stop.wait()) if stop is not None else None
        waits: set[asyncio.Future[Any]] = {exited}
        if stopping is not None:
            waits.add(stopping)
        timed_out = stopped = False
        try:
            remaining = self.request.timeout - (time.monotonic() - started)
            await asyncio.wait(waits, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                stopped = stopping is not None and stopping.done()
                timed_out = not stopped
                log.warning(
                    "agent %s; ending its processes",
                    "stopped" if stopped else f"timed out after {self.request.timeout:g}s",
                    extra={"session": self.request.session_id},
                )
            # Whether it finished or not, nothing it started may outlive the run.
            await _end_all(process, tree, readers, grace)
        finally:
            for task in (feeder, stopping):
                if task is not None:
                    task.cancel()
            if not readers.done():
                readers.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await readers
            if not exited.done():
                exited.cancel()
        if timed_out:
            self.tail.append(f"[compound] agent timed out after {self.request.timeout:g}s")
        elif stopped:
            self.tail.append("[compound] agent stopped")
        return self.result(process.returncode, started, timed_out=timed_out, stopped=stopped)

    async def _feed(self, process: asyncio.subprocess.Process) -> None:
        if process.stdin is None:
            return
        # An agent may exit, or never read, before taking the whole prompt.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(self.request.prompt.encode())
            await process.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.close()

    async def _read(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        skipping = False  # inside an over-long line, after the part kept
        while chunk := await stream.read(65536):
            if skipping:
                if b"\n" not in chunk:
                    continue
                chunk = chunk.split(b"\n", 1)[1]
                skipping = False
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                await self._line(raw)
            if len(pending) > LINE_LIMIT:
                await self._line(pending[:LINE_LIMIT])
                pending, skipping = b"", True
        if pending:
            await self._line(pending)

    async def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        self.tail.append(line[:TAIL_LINE_CHARS])
        if self.backend.wants(line):
            self.kept.append(line)
        if self.request.on_output is not None:
            try:
                outcome = self.request.on_output(line)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                if not self.callback_failed:  # once a run, not once a line
                    self.callback_failed = True
                    log.exception("on_output failed", extra={"session": self.request.session_id})


async def _end_all(
    process: asyncio.subprocess.Process, tree: ProcessTree, readers: asyncio.Future[Any], grace: float
) -> None:
    """SIGTERM everything, give it `grace` to exit, SIGKILL what is left."""
    tree.scan()
    tree.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    delays = _delays()  # an agent that has exited is usually gone at once: look again soon, then every 50 ms
    while time.monotonic() < deadline:
        # A dying agent may still start something: look often, to catch it
        # while its parent is alive (an orphan is no longer in the tree).
        seen = set(tree.known)
        tree.scan()
        if not seen.issuperset(tree.known):
            tree.signal(signal.SIGTERM)
        if process.returncode is not None and readers.done() and not tree.alive():
            break
        await asyncio.sleep(next(delays))
    # Unconditionally: a process that ignored SIGTERM, or started late, is killed.
    tree.scan()
    tree.signal(signal.SIGKILL)
    waiting = asyncio.gather(_exit_of(process), asyncio.shield(readers))
    try:
        await asyncio.wait_for(asyncio.shield(waiting), timeout=2.0)
    except TimeoutError:
        # Only a process never seen under the agent can still hold the pipes.
        log.warning("agent output still open after SIGKILL; a process escaped")
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await waiting


async def _exit_of(process: asyncio.subprocess.Process) -> int:
    """The leader's exit status, as soon as it exits.

    Not `process.wait()`: asyncio answers that only once every pipe is closed,
    and a background grandchild can hold them open forever. The kernel says
    when the process ends through a pidfd, so the event loop is woken then
    (not by a poll that added up to 50 ms to every run); the status itself
    comes from the loop's child watcher a moment later. Where there is no
    pidfd (not Linux, or the process is gone already) the status is polled.
    """
    if process.returncode is None:
        try:
            pidfd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            pidfd = None
        if pidfd is not None:
            loop = asyncio.get_running_loop()
            ended = loop.create_future()

            def readable() -> None:
                if not ended.done():
                    ended.set_result(None)

            loop.add_reader(pidfd, readable)
            try:
                await ended
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
    delays = _delays()
    while process.returncode is None:
        await asyncio.sleep(next(delays))
    return process.returncode


def _delays(first: float = 0.002, most: float = 0.05) -> Iterator[float]:
    """Seconds between looks: often at first, less often the longer a wait takes."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)
