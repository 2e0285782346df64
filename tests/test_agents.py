"""Agent backends: real processes through the runner, parsers on sample transcripts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.agents import (
    AgentRequest,
    AgentResult,
    AgentRunner,
    AgentUsage,
    agent_environment,
    get_backend,
    parsers,
)

HERE = Path(__file__).parent
SCRIPTED_AGENT = HERE / "agents" / "scripted_agent.py"
SAMPLES = HERE / "agents" / "samples"

SECRETS = {
    "GITHUB_TOKEN": "ghs_0123456789abcdefghijklmnopqrstuvwxyzAB",
    "GH_TOKEN": "gho_0123456789abcdefghijklmnopqrstuvwxyzAB",
    "PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
    "WEBHOOK_SECRET": "whsec-8c7e1f0a55",
    "DATABASE_URL": "postgresql://compound:pw-1f9a@db/compound",
    "APP_ID": "123456",
    "SENTRY_DSN": "https://abc123@sentry.example.invalid/1",
}


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def scripted(tmp_path: Path, *steps: dict[str, Any]) -> Any:
    """The command backend running the scripted agent with these steps."""
    plan = tmp_path / f"plan-{time.monotonic_ns()}.json"
    plan.write_text(json.dumps({"steps": list(steps)}))
    command = shlex.join([sys.executable, str(SCRIPTED_AGENT), str(plan)])
    return get_backend("command", command=command)


def request(workspace: Path, **overrides: Any) -> AgentRequest:
    fields: dict[str, Any] = {
        "workspace": workspace,
        "prompt": "Fix the greeting.\n",
        "session_id": "s-42",
        "task_kind": "task",
        "timeout": 30,
    }
    fields.update(overrides)
    return AgentRequest(**fields)


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for an init that does not reap is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pid: int, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def wait_for_file(path: Path, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)
    return path.read_text()


# --- the command backend's contract ----------------------------------------------------


async def test_prompt_on_stdin_and_in_prompt_file_cwd_is_workspace(tmp_path: Path, workspace: Path) -> None:
    # Large enough to fill a pipe buffer several times; not ASCII.
    prompt = "Résous le problème n°7 — “quoted” text.\n" * 8000
    backend = scripted(
        tmp_path,
        {"check_stdin": True},
        {"record": str(tmp_path / "record.json")},
        {"dump_env": str(tmp_path / "env.json")},
        {"write": "greet.py", "content": "print('hi')\n"},
    )
    result = await AgentRunner().run(backend, request(workspace, prompt=prompt, model="opus-x", task_kind="ci_fix"))

    assert result.ok, result.log_tail
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["stdin"] == prompt
    assert record["prompt_file_content"] == prompt
    assert Path(record["cwd"]).resolve() == workspace.resolve()
    assert (workspace / "greet.py").read_text() == "print('hi')\n"
    prompt_file = Path(record["prompt_file"])
    assert workspace.resolve() not in prompt_file.resolve().parents  # never committed
    assert not prompt_file.exists()  # removed after the run
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["AGENT_MODEL"] == "opus-x"
    assert env["AGENT_SESSION_ID"] == "s-42"
    assert env["AGENT_TASK_KIND"] == "ci_fix"
    assert env["AGENT_PROMPT_FILE"] == record["prompt_file"]


async def test_environment_holds_no_secret(tmp_path: Path, workspace: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = {
        **os.environ,
        **SECRETS,
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "CLAUDE_CODE_USE_BEDROCK": "0",
        "LC_ALL": "C.UTF-8",
        "MY_PROXY": "http://proxy.invalid:3128",
        "UNLISTED": "not for the agent",
        "AGENT_COMMAND": "whatever",
        "AGENT_ENV_PASSTHROUGH": "MY_PROXY, GITHUB_TOKEN DATABASE_URL",
    }
    backend = scripted(tmp_path, {"dump_env": str(tmp_path / "env.json")})
    with caplog.at_level(logging.WARNING, logger="compound.agents"):
        result = await AgentRunner(source_env=source).run(
            backend, request(workspace, env_passthrough=["PRIVATE_KEY", "EXTRA_ONE"])
        )

    assert result.ok, result.log_tail
    env = json.loads((tmp_path / "env.json").read_text())
    for name, value in SECRETS.items():
        assert name not in env
        assert not any(value in v for v in env.values()), name
    for name in ("UNLISTED", "AGENT_COMMAND", "AGENT_ENV_PASSTHROUGH"):
        assert name not in env
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-test-key"
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:9/v1"
    assert env["CLAUDE_CODE_USE_BEDROCK"] == "0"
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["MY_PROXY"] == "http://proxy.invalid:3128"
    assert env["PATH"] == os.environ["PATH"]
    refused = {r.getMessage().split()[2].rstrip(",") for r in caplog.records}
    assert {"GITHUB_TOKEN", "DATABASE_URL", "PRIVATE_KEY"} <= refused


def test_agent_environment_is_an_allow_list() -> None:
    source = {
        **SECRETS,
        "PATH": "/bin",
        "HOME": "/home/c",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "GITHUB_ENTERPRISE_TOKEN": "x",
        "GH_HOST": "ghe.invalid",
        "OTHER": "1",
        "TZ": "UTC",
    }
    req = AgentRequest(
        workspace=Path("."),
        prompt="",
        session_id="s",
        task_kind="review_fix",
        env_passthrough=["OTHER", "GH_HOST", "AGENT_SESSION_ID"],
    )
    env = agent_environment(req, source)
    assert env == {
        "PATH": "/bin",
        "HOME": "/home/c",
        "TZ": "UTC",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "OTHER": "1",
        "AGENT_MODEL": "",
        "AGENT_SESSION_ID": "s",
        "AGENT_TASK_KIND": "review_fix",
    }


def test_task_kind_is_checked(workspace: Path) -> None:
    with pytest.raises(ValueError, match="task_kind"):
        request(workspace, task_kind="refactor")


async def test_exit_code_and_last_line(tmp_path: Path, workspace: Path) -> None:
    backend = scripted(tmp_path, {"print": "working"}, {"print": "gave up: no tests", "stderr": True}, {"exit": 7})
    result = await AgentRunner().run(backend, request(workspace))
    assert result.exit_code == 7
    assert not result.ok and not result.timed_out and not result.stopped
    assert result.final_message == "gave up: no tests"
    assert result.log_tail.splitlines() == ["working", "gave up: no tests"]


async def test_args_are_passed_as_words(tmp_path: Path, workspace: Path) -> None:
    backend = scripted(tmp_path, {"record": str(tmp_path / "record.json")})
    result = await AgentRunner().run(backend, request(workspace, args=["--flag", "two words", "$HOME;"]))
    assert result.ok, result.log_tail
    assert json.loads((tmp_path / "record.json").read_text())["argv"][2:] == ["--flag", "two words", "$HOME;"]


# --- ending the agent: timeout, stop, normal exit ---------------------------------------


async def test_timeout_kills_the_whole_group(tmp_path: Path, workspace: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    backend = scripted(tmp_path, {"spawn": str(pidfile)}, {"print": "hanging"}, {"hang": True})
    started = time.monotonic()
    result = await AgentRunner().run(backend, request(workspace, timeout=1.0))
    elapsed = time.monotonic() - started

    assert result.timed_out and not result.stopped and not result.ok
    assert elapsed < 1.0 + 5.0
    assert result.exit_code is not None and result.exit_code < 0  # killed by a signal
    assert await wait_gone(int(pidfile.read_text()))
    assert "hanging" in result.log_tail and "timed out" in result.log_tail


@pytest.mark.parametrize(
    ("ignore_sigterm", "detach"),
    [(False, False), (True, False), (False, True)],
    ids=["sigterm", "needs-sigkill", "grandchild-left-the-group"],
)
async def test_stop_ends_the_run_within_seconds(
    tmp_path: Path, workspace: Path, ignore_sigterm: bool, detach: bool
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    steps: list[dict[str, Any]] = [{"ignore_sigterm": True}] if ignore_sigterm else []
    backend = scripted(tmp_path, *steps, {"spawn": str(pidfile), "detach": detach}, {"hang": True})
    stop = asyncio.Event()
    run = asyncio.create_task(AgentRunner(grace=1.0).run(backend, request(workspace), stop))
    grandchild = int(await wait_for_file(pidfile))

    stop.set()
    stopped_at = time.monotonic()
    result = await asyncio.wait_for(run, timeout=10)

    assert time.monotonic() - stopped_at < 5.0
    assert result.stopped and not result.timed_out and not result.ok
    assert await wait_gone(grandchild)


async def test_stop_before_start_runs_nothing(tmp_path: Path, workspace: Path) -> None:
    stop = asyncio.Event()
    stop.set()
    backend = scripted(tmp_path, {"write": "touched", "content": "x"})
    result = await AgentRunner().run(backend, request(workspace), stop)
    assert result.stopped and result.exit_code is None
    assert not (workspace / "touched").exists()


@pytest.mark.parametrize("detach", [False, True], ids=["in-group", "left-the-group"])
async def test_nothing_outlives_a_finished_agent(tmp_path: Path, workspace: Path, detach: bool) -> None:
    # In the group, the grandchild keeps our stdout open: the run must not wait for it.
    # Out of it, it is still a descendant seen by the runner.
    pidfile = tmp_path / "grandchild.pid"
    steps = [{"spawn": str(pidfile), "detach": detach}, {"sleep": 1.2 if detach else 0}, {"print": "done"}]
    backend = scripted(tmp_path, *steps)
    started = time.monotonic()
    result = await AgentRunner().run(backend, request(workspace))
    assert result.ok and result.final_message == "done"
    assert time.monotonic() - started < 5.0
    assert await wait_gone(int(pidfile.read_text()))


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polled"])
async def test_the_end_of_an_agent_wakes_the_runner_rather_than_a_poll(monkeypatch, pidfd: bool) -> None:
    """The runner learned of an agent's end by looking every 50 ms, which added up to that to every
    run (and made the sandbox benchmark count ticks). The kernel says it through a pidfd now: the
    loop sleeps no more while the agent runs. Where there is no pidfd, it still polls, and still ends."""
    from bot.agents import runner

    naps: list[float] = []
    real_sleep = asyncio.sleep

    async def counted(delay: float, *args: Any) -> Any:
        naps.append(delay)
        return await real_sleep(delay, *args)

    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open")
    process = await asyncio.create_subprocess_exec("sleep", "0.6")
    monkeypatch.setattr(runner.asyncio, "sleep", counted)
    assert await asyncio.wait_for(runner._exit_of(process), 10) == 0
    monkeypatch.undo()
    if pidfd:
        assert sum(naps) < 0.2, naps  # only the moment between the end and the child watcher's status
    else:
        assert sum(naps) >= 0.5 and max(naps) == 0.05, naps
    await process.wait()


# --- output -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_output_gets_lines_while_the_agent_runs(tmp_path: Path, workspace: Path, kind: str) -> None:
    seen: list[tuple[float, str]] = []

    def record(line: str) -> None:
        seen.append((time.monotonic(), line))

    async def record_async(line: str) -> None:
        await asyncio.sleep(0)
        record(line)

    backend = scripted(
        tmp_path,
        {"print": "first"},
        {"print": "to stderr", "stderr": True},
        {"sleep": 1.5},
        {"print": "last"},
    )
    result = await AgentRunner().run(backend, request(workspace, on_output=record if kind == "sync" else record_async))
    ended = time.monotonic()
    assert result.ok
    lines = {line: at for at, line in seen}
    assert set(lines) == {"first", "to stderr", "last"}
    assert lines["first"] < ended - 1.0  # seen live, not after the exit
    assert lines["to stderr"] < ended - 1.0


async def test_a_failing_on_output_does_not_break_the_run(
    tmp_path: Path, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(line: str) -> None:
        raise RuntimeError("callback bug")

    backend = scripted(tmp_path, {"print": "one"}, {"print": "two"}, {"write": "out.txt", "content": "x"})
    result = await AgentRunner().run(backend, request(workspace, on_output=explode))
    assert result.ok
    assert result.log_tail.splitlines() == ["one", "two"]
    assert (workspace / "out.txt").exists()
    assert len([r for r in caplog.records if "on_output failed" in r.getMessage()]) == 1


async def test_output_kept_is_bounded(tmp_path: Path, workspace: Path) -> None:
    many = tmp_path / "many.txt"
    many.write_text("".join(f"line {i}\n" for i in range(5000)) + "x" * 3_000_000 + "\nthe end\n")
    backend = scripted(tmp_path, {"print_file": str(many)})
    result = await AgentRunner().run(backend, request(workspace))
    assert result.ok
    assert len(result.log_tail) <= 20_000
    assert len(result.log_tail.splitlines()) <= 200
    assert result.log_tail.endswith("the end")
    assert result.final_message == "the end"


# --- agents that cannot start -----------------------------------------------------------


@pytest.mark.parametrize("name", ["claude-code", "codex", "aider"])
async def test_missing_executable_is_a_result(workspace: Path, name: str) -> None:
    backend = get_backend(name, executable=f"/nonexistent/{name}-cli")
    result = await AgentRunner().run(backend, request(workspace))
    assert result.exit_code is None and not result.ok
    assert result.final_message is not None
    assert result.final_message.startswith(f"/nonexistent/{name}-cli: command not found")


async def test_missing_command_exits_127(workspace: Path) -> None:
    result = await AgentRunner().run(get_backend("command", command="no-such-agent-cli --go"), request(workspace))
    assert result.exit_code == 127
    assert "not found" in result.log_tail


async def test_missing_workspace_is_a_result(tmp_path: Path) -> None:
    result = await AgentRunner().run(get_backend("command", command="true"), request(tmp_path / "gone"))
    assert result.exit_code is None and "does not exist" in (result.final_message or "")


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown agent backend"):
        get_backend("copilot")
    with pytest.raises(ValueError, match="AGENT_COMMAND"):
        get_backend("command")


# --- the scripted agent commits on its own (used by the end-to-end tests) -------------------


async def test_scripted_agent_can_commit(tmp_path: Path, workspace: Path) -> None:
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    backend = scripted(tmp_path, {"write": "a.txt", "content": "a\n"}, {"commit": "agent's own commit"})
    result = await AgentRunner().run(backend, request(workspace))
    assert result.ok, result.log_tail
    log = subprocess.run(["git", "-C", str(workspace), "log", "--format=%an|%s"], capture_output=True, text=True)
    assert log.stdout.strip() == "Scripted Agent|agent's own commit"


# --- command lines -------------------------------------------------------------------------


def test_claude_code_argv(workspace: Path, tmp_path: Path) -> None:
    prompt_file = tmp_path / "prompt.md"
    backend = get_backend("claude-code", executable="/opt/claude")
    argv, on_stdin = backend.build(request(workspace, model="claude-opus-4-6", args=["--max-turns", "40"]), prompt_file)
    assert argv == [
        "/opt/claude", "-p", "--output-format", "stream-json", "--verbose",
        "--permission-mode", "bypassPermissions",
        "--model", "claude-opus-4-6",
        "--max-turns", "40",
    ]  # fmt: skip
    assert on_stdin
    assert backend.env["DISABLE_AUTOUPDATER"] == "1"
    # The repo config may choose its own permission mode; ours then goes.
    argv, _ = backend.build(request(workspace, args=["--permission-mode", "acceptEdits"]), prompt_file)
    assert argv == ["/opt/claude", "-p", "--output-format", "stream-json", "--verbose",
                    "--permission-mode", "acceptEdits"]  # fmt: skip


def test_codex_argv(workspace: Path, tmp_path: Path) -> None:
    backend = get_backend("codex")
    argv, on_stdin = backend.build(request(workspace, model="gpt-5-codex", args=["-c", "x=1"]), tmp_path / "p")
    assert argv == ["codex", "exec", "--json", "--sandbox", "danger-full-access", "-m", "gpt-5-codex",
                    "-c", "x=1", "-"]  # fmt: skip
    assert on_stdin
    argv, _ = backend.build(request(workspace, args=["--sandbox=workspace-write"]), tmp_path / "p")
    assert argv == ["codex", "exec", "--json", "--sandbox=workspace-write", "-"]


def test_aider_argv(workspace: Path, tmp_path: Path) -> None:
    prompt_file = tmp_path / "scratch" / "prompt.md"
    backend = get_backend("aider")
    argv, on_stdin = backend.build(request(workspace, model="sonnet", args=["--lint-cmd", "ruff"]), prompt_file)
    assert not on_stdin
    assert argv[:5] == ["aider", "--message-file", str(prompt_file), "--yes-always", "--no-auto-commits"]
    assert argv[-4:] == ["--model", "sonnet", "--lint-cmd", "ruff"]
    assert "--no-pretty" in argv and "--no-gitignore" in argv
    history = argv[argv.index("--chat-history-file") + 1]
    assert Path(history).parent == prompt_file.parent  # outside the workspace
    argv, _ = backend.build(request(workspace), prompt_file)
    assert "--model" not in argv


def test_command_argv(workspace: Path, tmp_path: Path) -> None:
    backend = get_backend("command", command="my-agent --fast")
    assert backend.build(request(workspace), tmp_path / "p") == (
        ["/bin/sh", "-c", "my-agent --fast", "agent"],
        True,
    )
    argv, _ = backend.build(request(workspace, args=["a b"]), tmp_path / "p")
    assert argv == ["/bin/sh", "-c", 'my-agent --fast "$@"', "agent", "a b"]


# --- parsers on the CLIs' documented output ---------------------------------------------------


def sample(name: str) -> list[str]:
    return (SAMPLES / name).read_text().splitlines()


def test_parse_claude_stream_json() -> None:
    message, usage = parsers.parse_claude(sample("claude_stream.jsonl"))
    assert message == 'Fixed `greet()` to return "Hello, world!"; the test passes now.'
    assert usage == AgentUsage(
        input_tokens=19 + 5610 + 57910,
        output_tokens=239,
        cost_usd=0.0623415,
        model="claude-sonnet-4-5-20250929",
    )


def test_parse_claude_without_a_result_line() -> None:
    # Killed mid-run: the last text the model wrote, the model from init, no totals.
    lines = [line for line in sample("claude_stream.jsonl") if '"type":"result"' not in line]
    message, usage = parsers.parse_claude(lines)
    assert message == 'Fixed `greet()` to return "Hello, world!"; the test passes now.'
    assert usage == AgentUsage(model="claude-sonnet-4-5-20250929")


def test_parse_claude_error_result() -> None:
    line = json.dumps(
        {
            "type": "result",
            "subtype": "error_during_execution",
            "is_error": True,
            "result": "API Error: 529 overloaded",
            "total_cost_usd": 0,
            "usage": {},
        }
    )
    message, usage = parsers.parse_claude(["garbage", '{"type":', line, "[1, 2]", ""])
    assert message == "API Error: 529 overloaded"
    assert usage.cost_usd == 0.0 and usage.input_tokens is None


def test_parse_codex_exec_json() -> None:
    message, usage = parsers.parse_codex(sample("codex_exec.jsonl"))
    assert message == "Fixed `greet()` in greet.py; `pytest -q` passes."
    assert usage == AgentUsage(input_tokens=24763 + 1200, output_tokens=122 + 30, cost_usd=None, model=None)


def test_parse_codex_failed_turn() -> None:
    lines = [
        '{"type":"thread.started","thread_id":"t"}',
        '{"type":"turn.started"}',
        '{"type":"turn.failed","error":{"message":"model response stream ended unexpectedly"}}',
    ]
    message, usage = parsers.parse_codex(lines)
    assert message == "codex error: model response stream ended unexpectedly"
    assert usage == AgentUsage()


def test_parse_aider_text() -> None:
    message, usage = parsers.parse_aider(sample("aider.txt"))
    assert message == 'The test expected "Hello, world!"; greet() returns it now.'
    assert usage == AgentUsage(
        input_tokens=2_300 + 12_000,
        output_tokens=344 + 1_024,
        cost_usd=0.05,
        model="anthropic/claude-sonnet-4-20250514",
    )


def test_parse_aider_old_format_without_cost() -> None:
    message, usage = parsers.parse_aider(
        ["Model: gpt-4o with diff edit format", "Done.", "Tokens: 1,234 sent, 56 received."]
    )
    assert message == "Done."
    assert usage == AgentUsage(input_tokens=1234, output_tokens=56, cost_usd=None, model="gpt-4o")


@pytest.mark.parametrize(
    "parse", [parsers.parse_claude, parsers.parse_codex, parsers.parse_aider, parsers.parse_command]
)
def test_parsers_tolerate_garbage(parse: Any) -> None:
    junk = [
        "",
        "   ",
        "{",
        '{"type": 5}',
        '{"type":"result","usage":"lots","total_cost_usd":"free"}',
        '{"type":"turn.completed","usage":{"input_tokens":"many"}}',
        '{"type":"item.completed","item":null}',
        "Tokens: lots sent",
        "Cost: $ message",
        "\x00\x01binary",
        "[]",
        "null",
        '"text"',
    ]
    message, usage = parse(junk)
    assert message is None or isinstance(message, str)
    assert isinstance(usage, AgentUsage)
    assert parse([]) == (None, AgentUsage())


@pytest.mark.parametrize(
    ("name", "sample_file", "expected"),
    [
        ("claude-code", "claude_stream.jsonl", 0.0623415),
        ("codex", "codex_exec.jsonl", None),
        ("aider", "aider.txt", 0.05),
    ],
)
async def test_backends_read_their_cli_through_the_runner(
    tmp_path: Path, workspace: Path, name: str, sample_file: str, expected: float | None
) -> None:
    # A stand-in CLI that replays a transcript, to exercise what the runner keeps.
    cli = tmp_path / f"{name}-cli"
    cli.write_text(f"#!/bin/sh\ncat {shlex.quote(str(SAMPLES / sample_file))}\n")
    cli.chmod(0o755)
    result: AgentResult = await AgentRunner().run(
        get_backend(name, executable=str(cli)), request(workspace, model="m-1")
    )
    assert result.ok, result.log_tail
    assert result.final_message
    assert result.usage.cost_usd == expected
    assert result.usage.input_tokens and result.usage.output_tokens
    assert result.usage.model == ("m-1" if name == "codex" else parsers_model(name))


def parsers_model(name: str) -> str:
    return {"claude-code": "claude-sonnet-4-5-20250929", "aider": "anthropic/claude-sonnet-4-20250514"}[name]


def test_parse_a_real_claude_code_transcript() -> None:
    # Printed by Claude Code 2.1.197 (-p --output-format stream-json --verbose)
    # against tests/claude_stub/server.py: one Bash tool call, then an answer.
    message, usage = parsers.parse_claude(sample("claude_stream_real.jsonl"))
    assert message == "Created hello.txt."
    assert usage == AgentUsage(input_tokens=2400, output_tokens=120, cost_usd=0.009, model="claude-sonnet-4-5-20250929")


async def test_a_cli_that_fails_before_its_format_says_why(tmp_path: Path, workspace: Path) -> None:
    cli = tmp_path / "claude"
    cli.write_text("#!/bin/sh\necho 'error: unknown option --verbose' >&2\nexit 1\n")
    cli.chmod(0o755)
    result = await AgentRunner().run(get_backend("claude-code", executable=str(cli)), request(workspace))
    assert result.exit_code == 1
    assert result.final_message == "error: unknown option --verbose"


# --- Claude Code end to end: the real CLI against a scripted Messages API -------------------

CLAUDE_CLI = HERE / "claude_stub" / "node_modules" / ".bin" / "claude"
CLAUDE_MODEL = "claude-sonnet-4-5-20250929"  # priced by Claude Code: $3 / $15 per million tokens


@pytest.fixture
async def messages_api() -> Any:
    from aiohttp import web

    from tests.claude_stub.server import ScriptedMessagesAPI

    api = ScriptedMessagesAPI([])
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.url = f"http://127.0.0.1:{runner.addresses[0][1]}"  # type: ignore[attr-defined]
    try:
        yield api
    finally:
        await runner.cleanup()


def claude_source_env(tmp_path: Path, api_url: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),  # Claude Code keeps its state here
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "AGENT_ENV_PASSTHROUGH": "DISABLE_TELEMETRY",
        **SECRETS,
    }
    if os.geteuid() == 0:
        # Claude Code refuses to skip permission prompts as root outside a sandbox;
        # the service's image runs as an ordinary user and needs no such flag.
        env["IS_SANDBOX"] = "1"
        env["AGENT_ENV_PASSTHROUGH"] += ",IS_SANDBOX"
    return env


# `make test` installs it; in CI (CI=true) a missing CLI fails the test instead of skipping it.
needs_claude = pytest.mark.skipif(
    not CLAUDE_CLI.exists() and not os.environ.get("CI"),
    reason="Claude Code not installed: npm ci --prefix tests/claude_stub",
)


@pytest.mark.timeout(300)  # many CI rounds, or the real CLI: minutes on a loaded machine
@needs_claude
async def test_claude_code_end_to_end(tmp_path: Path, workspace: Path, messages_api: Any) -> None:
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    target = workspace / "hello.txt"
    write = {"file_path": str(target), "content": "hello from claude\n"}
    check = {"command": "cat hello.txt; env | grep -c TOKEN", "description": "Check"}
    messages_api.turns = [
        {"text": "I'll create the file.", "tool_use": {"name": "Write", "input": write}},
        {"tool_use": {"name": "Bash", "input": check}},
        {"text": "Created hello.txt with a greeting."},
    ]
    seen: list[str] = []
    result = await AgentRunner(source_env=claude_source_env(tmp_path, messages_api.url)).run(
        get_backend("claude-code", executable=str(CLAUDE_CLI)),
        request(
            workspace,
            prompt="Create hello.txt, please.",
            model=CLAUDE_MODEL,
            timeout=120,
            on_output=seen.append,
        ),
    )

    assert result.ok, result.log_tail
    assert target.read_text() == "hello from claude\n"
    assert result.final_message == "Created hello.txt with a greeting."
    assert result.usage == AgentUsage(
        input_tokens=3 * 1200,
        output_tokens=3 * 60,
        cost_usd=pytest.approx(3 * (1200 * 3 + 60 * 15) / 1e6),
        model=CLAUDE_MODEL,
    )
    main = messages_api.main_requests
    assert len(main) == 3 and all(body["model"] == CLAUDE_MODEL and body["stream"] for body in main)
    assert "Create hello.txt, please." in json.dumps(main[0]["messages"][0])  # the prompt came through stdin
    # The Bash tool really ran in the workspace, and found no token in its environment.
    last_result = json.dumps(main[2]["messages"][-1])
    assert "hello from claude" in last_result and "\\n0" in last_result
    assert any('"type":"result"' in line for line in seen)


@pytest.mark.timeout(300)  # many CI rounds, or the real CLI: minutes on a loaded machine
@needs_claude
async def test_claude_code_stop_ends_its_tools_too(tmp_path: Path, workspace: Path, messages_api: Any) -> None:
    pidfile = workspace / "sleep.pid"
    wait = {"command": "sleep 1000 & echo $! > sleep.pid; wait", "description": "Wait"}
    messages_api.turns = [{"tool_use": {"name": "Bash", "input": wait}}, {"text": "never reached"}]
    stop = asyncio.Event()
    run = asyncio.create_task(
        AgentRunner(source_env=claude_source_env(tmp_path, messages_api.url)).run(
            get_backend("claude-code", executable=str(CLAUDE_CLI)),
            request(workspace, model=CLAUDE_MODEL, timeout=120),
            stop,
        )
    )
    sleeper = int(await wait_for_file(pidfile, within=60))
    stop.set()
    stopped_at = time.monotonic()
    result = await asyncio.wait_for(run, timeout=15)
    assert time.monotonic() - stopped_at < 5.0
    assert result.stopped
    assert await wait_gone(sleeper)
