"""The four backends: how each CLI is started and how its output is read.

Every agent works headless in its own throw-away worktree, with an environment
that holds no GitHub credential, and Compound — not the agent — decides what
is committed and pushed (forbidden paths never are). So the CLIs run without
interactive permission prompts, which would otherwise stall or refuse every
edit and test run. An operator can still narrow that per repo with `agent.args`
(e.g. `--permission-mode acceptEdits`, `--sandbox workspace-write`); a flag
given there replaces our default instead of being passed twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.agents import parsers
from bot.agents.base import AgentBackend, AgentRequest, AgentUsage


def _unless_given(args: Sequence[str], default: list[str], *flags: str) -> list[str]:
    """`default`, unless the operator's args already set one of `flags`."""
    given = any(a == f or a.startswith(f + "=") for a in args for f in flags)
    return [] if given else default


@dataclass
class ClaudeCode:
    """`claude -p`, the prompt on stdin (no argv length limit, not visible in `ps`)."""

    executable: str = "claude"
    name: str = "claude-code"
    env: Mapping[str, str] = field(default_factory=lambda: {"DISABLE_AUTOUPDATER": "1"})

    def build(self, request: AgentRequest, prompt_file: Path) -> tuple[list[str], bool]:
        argv = [self.executable, "-p", "--output-format", "stream-json", "--verbose"]
        # bypassPermissions: a headless run has nobody to approve a Bash call or an edit.
        argv += _unless_given(
            request.args,
            ["--permission-mode", "bypassPermissions"],
            "--permission-mode",
            "--dangerously-skip-permissions",
        )
        if request.model:
            argv += ["--model", request.model]
        return argv + list(request.args), True

    def wants(self, line: str) -> bool:
        return parsers.claude_wants(line)

    def parse(self, output_lines: list[str]) -> tuple[str | None, AgentUsage]:
        return parsers.parse_claude(output_lines)


@dataclass
class Codex:
    """`codex exec --json -`: `-` makes codex read the prompt from stdin."""

    executable: str = "codex"
    name: str = "codex"
    env: Mapping[str, str] = field(default_factory=dict)

    def build(self, request: AgentRequest, prompt_file: Path) -> tuple[list[str], bool]:
        argv = [self.executable, "exec", "--json"]
        # exec never asks for approval; its default read-only sandbox would forbid
        # every edit, and workspace-write forbids the network that setup needs.
        argv += _unless_given(
            request.args,
            ["--sandbox", "danger-full-access"],
            "--sandbox",
            "-s",
            "--full-auto",
            "--dangerously-bypass-approvals-and-sandbox",
        )
        if request.model:
            argv += ["-m", request.model]
        return [*argv, *request.args, "-"], True

    def wants(self, line: str) -> bool:
        return parsers.codex_wants(line)

    def parse(self, output_lines: list[str]) -> tuple[str | None, AgentUsage]:
        return parsers.parse_codex(output_lines)


@dataclass
class Aider:
    """`aider --message-file F`: one message, then exit; no stdin."""

    executable: str = "aider"
    name: str = "aider"
    env: Mapping[str, str] = field(default_factory=dict)

    def build(self, request: AgentRequest, prompt_file: Path) -> tuple[list[str], bool]:
        scratch = prompt_file.parent  # outside the workspace, removed after the run
        argv = [
            self.executable,
            "--message-file", str(prompt_file),
            "--yes-always",
            "--no-auto-commits",
            # Plain text for the parser and the log; no update checks in a service.
            "--no-pretty",
            "--no-check-update",
            "--no-show-release-notes",
            # Keep aider's own files out of the worktree (and so out of the commit):
            # no .gitignore edit, chat history in the scratch directory.
            "--no-gitignore",
            "--chat-history-file", str(scratch / "aider.chat.history.md"),
            "--input-history-file", str(scratch / "aider.input.history"),
        ]  # fmt: skip
        if request.model:
            argv += ["--model", request.model]
        return argv + list(request.args), False

    def wants(self, line: str) -> bool:
        return parsers.aider_wants(line)

    def parse(self, output_lines: list[str]) -> tuple[str | None, AgentUsage]:
        return parsers.parse_aider(output_lines)


@dataclass
class Command:
    """Any CLI: `AGENT_COMMAND` through /bin/sh, in the workspace, prompt on stdin
    and in $AGENT_PROMPT_FILE. Repo `agent.args` are appended as shell words."""

    command: str
    name: str = "command"
    env: Mapping[str, str] = field(default_factory=dict)

    def build(self, request: AgentRequest, prompt_file: Path) -> tuple[list[str], bool]:
        # "$@" hands the args over as separate words, never re-parsed by the shell.
        script = f'{self.command} "$@"' if request.args else self.command
        return ["/bin/sh", "-c", script, "agent", *request.args], True

    def wants(self, line: str) -> bool:
        return True  # the runner keeps the last lines; the parser reads the very last

    def parse(self, output_lines: list[str]) -> tuple[str | None, AgentUsage]:
        return parsers.parse_command(output_lines)


BACKENDS = ("claude-code", "codex", "aider", "command")


def get_backend(name: str, *, command: str | None = None, executable: str | None = None) -> AgentBackend:
    """The backend called `name`; `executable` replaces the CLI's path (tests)."""
    if name == "claude-code":
        return ClaudeCode(executable or "claude")
    if name == "codex":
        return Codex(executable or "codex")
    if name == "aider":
        return Aider(executable or "aider")
    if name == "command":
        if not command:
            raise ValueError("the command backend needs AGENT_COMMAND")
        return Command(command)
    raise ValueError(f"unknown agent backend {name!r}; one of {', '.join(BACKENDS)}")
