"""What every agent backend shares: the request, the result, the plugin interface."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

TASK_KINDS = ("task", "ci_fix", "review_fix", "rebase", "command", "reflect")


# Where, in a worktree's git dir, the sandboxed agent's git writes its objects.
AGENT_OBJECTS = "agent-objects"


@dataclass
class AgentRequest:
    """One agent run: what to do, where, and how long it may take."""

    workspace: Path
    prompt: str
    session_id: str
    task_kind: str
    model: str | None = None
    timeout: float = 3600
    args: list[str] = field(default_factory=list)  # extra CLI arguments from the repo config
    env_passthrough: list[str] = field(default_factory=list)
    # The mirror the worktree's `.git` points at, and the worktree's own git
    # dir in it. In bwrap the agent's git reads the mirror but writes only the
    # worktree's git dir: its objects go to `AGENT_OBJECTS` there, which
    # Compound's git takes in, verified, after the run (bot/workspace/worktree.py).
    git_common_dir: Path | None = None
    git_dir: Path | None = None
    # Called with each output line (stdout and stderr) as it arrives.
    on_output: Callable[[str], Awaitable[None] | None] | None = None
    # Called once the worktree is lent to the agent's user (its owner and every
    # file's ctime changed) and before its git dir is: Compound's git brings the
    # index's stat data up to date (Workspace.settle_index).
    settle: Callable[[], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        if self.task_kind not in TASK_KINDS:
            raise ValueError(f"task_kind must be one of {TASK_KINDS}, not {self.task_kind!r}")


@dataclass
class AgentUsage:
    """What a run consumed, where the CLI reports it (None where it does not).

    `input_tokens` counts every prompt token the model read, cached or not.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None


@dataclass
class AgentResult:
    exit_code: int | None  # None: the agent never started; negative: killed by that signal
    timed_out: bool
    stopped: bool
    duration: float
    final_message: str | None
    usage: AgentUsage
    log_tail: str  # the last lines of output (stdout and stderr interleaved)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.stopped


@runtime_checkable
class AgentBackend(Protocol):
    name: str
    # Variables the CLI needs set in any case (e.g. no self-update in a service).
    env: Mapping[str, str]

    def build(self, request: AgentRequest, prompt_file: Path) -> tuple[list[str], bool]:
        """The argv to run, and whether the prompt goes on stdin."""
        ...

    def wants(self, line: str) -> bool:
        """Whether `parse` needs this output line (the runner keeps only those)."""
        ...

    def parse(self, output_lines: list[str]) -> tuple[str | None, AgentUsage]:
        """Final message and usage from the CLI's documented output."""
        ...


class BoundedLines:
    """The most recent lines, within a line count and a character budget."""

    def __init__(self, max_lines: int, max_chars: int) -> None:
        self._lines: deque[str] = deque()
        self._max_lines = max_lines
        self._max_chars = max_chars
        self._chars = 0

    def append(self, line: str) -> None:
        if len(line) > self._max_chars:
            line = line[: self._max_chars]
        self._lines.append(line)
        self._chars += len(line)
        while len(self._lines) > self._max_lines or self._chars > self._max_chars:
            self._chars -= len(self._lines.popleft())

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.append(line)

    def lines(self) -> list[str]:
        return list(self._lines)
