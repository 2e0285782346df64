"""The agent's fresh HOME: its backend's own config from the service's HOME, and nothing else of it.

A CLI backend needs its settings and its model provider's credentials
(`~/.codex/auth.json`, `~/.claude/.credentials.json`), which live in the
service's HOME. The sandbox copies exactly those files into the agent's HOME
and nothing more: not the operator's SSH key, not the CLI's history, not a
config that is a symlink to somewhere else. The agent here stands in for the
Codex CLI (the runner starts it with codex's argv) and reports the HOME it
finds, run through the runner under the sandbox as every round is.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from bot.agents import AgentRequest, AgentRunner, get_backend
from bot.agents.sandbox import HOME_FILES, probe

IN_CI = bool(os.environ.get("CI"))
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"

REPORTER = textwrap.dedent(
    """\
    #!{python}
    import json, os, stat, sys
    sys.stdin.read()  # codex reads its prompt from stdin
    home = os.environ["HOME"]
    found = {{}}
    for parent, dirs, files in os.walk(home):
        for name in files:
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, home)
            with open(path) as f:
                found[rel] = {{"text": f.read(), "mode": stat.S_IMODE(os.lstat(path).st_mode)}}
    def reads(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return None
    print(json.dumps({{"home": found, "service_home_key": reads({service_key!r})}}))
    """
)


@pytest.fixture
def service_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The service's HOME as an operator has it: the CLI's login, its history, an SSH key."""
    home = tmp_path / "service-home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text('model = "gpt-5-codex"\n')
    (home / ".codex" / "auth.json").write_text('{"OPENAI_API_KEY": "sk-provider-key"}\n')
    (home / ".codex" / "history.jsonl").write_text('{"text": "the operator\'s own prompts"}\n')
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("SECRET-SSH-IDENTITY\n")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text("{}\n")
    monkeypatch.setenv("HOME", str(home))
    return home


async def home_seen_by_codex(tmp_path: Path, service_home: Path, mode: str) -> dict:
    tools = tmp_path / "tools"
    tools.mkdir()
    tools.chmod(0o755)
    agent = tools / "codex"
    agent.write_text(REPORTER.format(python=PYTHON, service_key=str(service_home / ".ssh" / "id_ed25519")))
    agent.chmod(0o755)
    workspace = tmp_path / "work"
    workspace.mkdir()
    workspace.chmod(0o777)  # the agent's uid may differ from the test's
    sandbox = probe(mode, paths=str(tools))
    assert sandbox.mode == mode, sandbox.detail
    request = AgentRequest(workspace=workspace, prompt="report HOME", session_id="s-home", task_kind="task", timeout=60)
    result = await AgentRunner(sandbox=sandbox).run(get_backend("codex", executable=str(agent)), request)
    assert result.exit_code == 0, result.log_tail
    return json.loads(result.log_tail.strip().splitlines()[-1])


def needs_bwrap() -> None:
    if not shutil.which("bwrap") and not IN_CI:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap; CI installs it)")


async def test_the_agent_home_holds_its_backends_config_and_nothing_else(tmp_path: Path, service_home: Path):
    needs_bwrap()
    report = await home_seen_by_codex(tmp_path, service_home, "bwrap")
    home = report["home"]
    assert home[".codex/config.toml"]["text"] == 'model = "gpt-5-codex"\n'
    assert home[".codex/auth.json"]["text"] == '{"OPENAI_API_KEY": "sk-provider-key"}\n'
    assert home[".codex/auth.json"]["mode"] == 0o600  # a credential, readable by the agent alone
    # Only what HOME_FILES names for codex: not its history, not another CLI's settings, not ~/.ssh.
    assert set(home) <= set(HOME_FILES["codex"]) | {".gitconfig"}, sorted(home)
    assert report["service_home_key"] is None  # and the service's own HOME is out of reach


async def test_without_a_sandbox_the_agent_has_the_services_home(tmp_path: Path, service_home: Path):
    """The control: under AGENT_SANDBOX=none the same agent finds the operator's whole HOME."""
    report = await home_seen_by_codex(tmp_path, service_home, "none")
    assert ".codex/history.jsonl" in report["home"] and ".ssh/id_ed25519" in report["home"]
    assert report["service_home_key"] == "SECRET-SSH-IDENTITY\n"


async def test_a_config_that_is_a_symlink_is_not_followed_into_the_agents_home(tmp_path: Path, service_home: Path):
    needs_bwrap()
    auth = service_home / ".codex" / "auth.json"
    auth.unlink()
    auth.symlink_to(service_home / ".ssh" / "id_ed25519")  # whoever could write HOME points it at a secret
    report = await home_seen_by_codex(tmp_path, service_home, "bwrap")
    assert ".codex/auth.json" not in report["home"]
    assert all("SECRET-SSH-IDENTITY" not in f["text"] for f in report["home"].values())
    assert report["home"][".codex/config.toml"]["mode"] == 0o600
