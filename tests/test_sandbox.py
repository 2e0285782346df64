"""The agent sandbox, tried as an attacker would: a hostile agent against a host laid out as Compound's.

Each test builds what a real host holds — DATA_DIR with the database, another
repository's mirror and another session's worktree, the service's `.env` and
log, the operator's HOME, a process holding the App key and another
session's push (Compound's own git, started with the environment a push
gets, stalled on a remote that never answers) — and runs `tests/agents/hostile_agent.py` through the runner, as
every round does. Under `bwrap` and `user` it reaches none of it and still
does its work; under `none` (the control) it reaches all of it, which proves
the attack would work without the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.agents import AgentRequest, AgentRunner, get_backend
from bot.agents.lending import harden_data_dir
from bot.agents.netproxy import allowed
from bot.agents.orphans import MARK, RunRecords, reap_orphans
from bot.agents.sandbox import Sandbox, probe
from bot.workspace.git import Git, auth_header
from tests.conftest import agent_user_name

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).parent / "agents" / "hostile_agent.py"
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
IN_CI = bool(os.environ.get("CI"))

SECRETS = {
    "key": "-----BEGIN RSA PRIVATE KEY----- SECRET-APP-KEY",
    "token": "ghs_SECRETPUSHTOKEN000000000000000000000",
    "db": "SECRET-DATABASE-ROW",
    "env": "WEBHOOK_SECRET=SECRET-DOTENV",
    "ssh": "SECRET-SSH-IDENTITY",
    "log": "SECRET-SERVICE-LOG",
    "mirror": "SECRET-OTHER-REPO",
    "worktree": "SECRET-OTHER-SESSION",
}

# What a push's environment holds: the token, as the header git sends.
PUSH_HEADER = auth_header(SECRETS["token"])


@dataclass
class Host:
    base: Path
    data: Path
    workspace: Path
    files: dict[str, Path]
    decoys: list[subprocess.Popen] = field(default_factory=list)

    def targets(self) -> dict:
        return {
            "read": [str(p) for p in self.files.values()],
            "list": [
                str(self.data),
                str(self.data / "mirrors"),
                str(self.data / "workspaces"),
                str(self.base / "home"),
            ],
            "write": [str(self.data / "planted"), str(self.base / "service" / "planted"), "/etc/planted"],
            "secrets": [SECRETS["key"], PUSH_HEADER],
        }


def needs(mode: str) -> None:
    """Skip where the mode cannot work here, but never in CI (it installs bubblewrap, runs as root)."""
    if mode == "bwrap" and not shutil.which("bwrap") and not IN_CI:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap; CI installs it)")
    if mode == "user" and os.geteuid() != 0 and not IN_CI:
        pytest.skip("user mode needs the service to run as root")


@pytest.fixture
def host():
    # Under /tmp and world-traversable, as DATA_DIR=/data is in the image.
    base = Path(tempfile.mkdtemp(prefix="compound-host-"))
    base.chmod(0o755)
    data = base / "data"
    files = {
        "db": data / "compound.db",
        "mirror": data / "mirrors" / "octo-org" / "other.git" / "config",
        "worktree": data / "workspaces" / "s-other" / "notes.txt",
        "env": base / "service" / ".env",
        "log": base / "service" / "compound.log",
        "ssh": base / "home" / ".ssh" / "id_ed25519",
    }
    for name, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SECRETS[name] + "\n")
    for private in ("env", "log", "ssh"):  # what the operator keeps private anyway
        files[private].chmod(0o600)
    (base / "home").chmod(0o700)
    workspace = data / "workspaces" / "s-mine"
    workspace.mkdir(parents=True)
    (workspace / "README.md").write_text("# app\n")
    # A remote that takes the connection and never answers: a push stalled mid-way.
    stalled = socket.create_server(("127.0.0.1", 0))
    remote = f"http://127.0.0.1:{stalled.getsockname()[1]}/octo-org/other.git"
    decoys = [
        subprocess.Popen(["sleep", "120"], env={"PATH": os.defpath, "PRIVATE_KEY": SECRETS["key"]}),
        # Another session's push: Compound's own git, started as Workspace.push
        # starts it (the token in its environment), waiting on the remote.
        subprocess.Popen(
            ["git", "ls-remote", remote],
            env=Git(base / "git-home", timeout=120).environment(token=SECRETS["token"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    yield Host(base, data, workspace, files, decoys)
    for decoy in decoys:
        decoy.kill()
        decoy.wait()
    stalled.close()
    shutil.rmtree(base, ignore_errors=True)


def hostile_request(host: Host, **extra: object) -> AgentRequest:
    prompt = "Add feature().\n\nHOSTILE-TARGETS: " + json.dumps({**host.targets(), **extra}) + "\n"
    return AgentRequest(workspace=host.workspace, prompt=prompt, session_id="s-mine", task_kind="task", timeout=60)


async def run_hostile(host: Host, sandbox: Sandbox, **extra: object) -> tuple[dict, object]:
    backend = get_backend("command", command=shlex.join([PYTHON, str(HOSTILE)]))
    result = await AgentRunner(sandbox=sandbox).run(backend, hostile_request(host, **extra))
    assert result.exit_code == 0, result.log_tail
    return json.loads(result.log_tail.strip().splitlines()[-1]), result


def sandbox_for(mode: str, **kw: str) -> Sandbox:
    chosen = probe(mode, paths=str(HOSTILE.parent), **kw)
    assert chosen.mode == mode, chosen.detail
    return chosen


def assert_reached_nothing(report: dict, host: Host) -> None:
    assert report["read"] == {}, report["read"]
    # A directory on the way to its own worktree shows that way, and nothing next to it.
    on_the_way = {str(p) for p in host.workspace.parents} | {str(host.workspace)}
    for directory, entries in report["listed"].items():
        assert all(str(Path(directory) / e) in on_the_way for e in entries), (directory, entries)
    assert report["wrote"] == []
    assert report["secrets_seen"] == []
    for planted in ("planted",):
        assert not (host.data / planted).exists() and not (host.base / "service" / planted).exists()
    # …and it still did its job.
    assert (host.workspace / "feature.py").read_text() == "def feature():\n    return 42\n"


async def test_without_a_sandbox_the_hostile_agent_reaches_everything(host: Host):
    """The control: the attack is real, so the tests below mean something."""
    report, _ = await run_hostile(host, probe("none"))
    assert set(report["read"]) == {str(p) for p in host.files.values()}
    assert set(report["secrets_seen"]) == {SECRETS["key"], PUSH_HEADER}
    assert str(host.data / "planted") in report["wrote"]


async def test_bwrap_shows_the_agent_its_worktree_and_nothing_else(host: Host):
    needs("bwrap")
    report, result = await run_hostile(host, sandbox_for("bwrap"))
    assert_reached_nothing(report, host)
    assert report["uid"] != 0  # never root inside, so Claude Code's bypass works without pretending
    assert report["processes_seen"] <= 3  # its own, in a PID namespace of its own


def test_user_mode_keeps_the_agent_out_by_file_modes(host: Host):
    """On uvloop, as `compound serve` runs: its subprocesses take no user=/group=, setpriv drops the agent."""
    import uvloop

    needs("user")
    sandbox = sandbox_for("user", bwrap="/nonexistent/bwrap", user_name=agent_user_name())
    harden_data_dir(host.data)  # what the service does at start in user mode
    report, _ = uvloop.run(run_hostile(host, sandbox))
    assert_reached_nothing(report, host)
    assert report["uid"] == sandbox.user.uid
    # The worktree is the service's again once the agent is done.
    assert {p.stat().st_uid for p in [host.workspace, *host.workspace.iterdir()]} == {os.geteuid()}


@pytest.mark.parametrize("services", ["one service", "two workers"])
async def test_user_mode_agents_run_one_at_a_time_so_none_reads_anothers_worktree(host: Host, services: str):
    """Two sessions at once under `user`: both agents are AGENT_USER, so only taking turns keeps them apart.

    "two workers": two sandboxes, as two processes sharing DATA_DIR have, so
    only the lock file stands between them.
    """
    needs("user")
    sandbox = sandbox_for("user", bwrap="/nonexistent/bwrap", user_name=agent_user_name())
    other = (
        sandbox
        if services == "one service"
        else sandbox_for("user", bwrap="/nonexistent/bwrap", user_name=agent_user_name())
    )
    data = host.data
    harden_data_dir(data)  # as the service does at start in user mode
    victim, attacker = data / "workspaces" / "s-victim", data / "workspaces" / "s-attacker"
    for workspace in (victim, attacker):
        workspace.mkdir(mode=0o700)
    secret = victim / "work-in-progress.txt"
    victim_agent = get_backend("command", command=f"echo UNPUBLISHED-WORK > {secret}; sleep 1.5")
    # Tries for 3 s to read what the other session's agent is writing.
    attacker_agent = get_backend(
        "command",
        command=f"for i in $(seq 30); do cat {secret} 2>/dev/null && exit 0; sleep 0.1; done; echo found-nothing",
    )

    def request(workspace: Path) -> AgentRequest:
        return AgentRequest(workspace=workspace, prompt="x", session_id=workspace.name, task_kind="task", timeout=30)

    first = asyncio.create_task(AgentRunner(sandbox=sandbox).run(victim_agent, request(victim)))
    await asyncio.sleep(0.3)  # the victim's agent is at work
    started = time.monotonic()
    second = await AgentRunner(sandbox=other).run(attacker_agent, request(attacker))
    done = await first
    assert done.exit_code == 0 and second.exit_code == 0, (done.log_tail, second.log_tail)
    assert "UNPUBLISHED-WORK" not in second.log_tail
    assert "found-nothing" in second.log_tail
    assert time.monotonic() - started >= 1.0  # it waited for the victim's run to end
    assert secret.stat().st_uid == os.geteuid()  # and the worktree was the service's again


async def test_under_user_mode_nothing_the_agent_left_running_outlives_its_run(host: Host):
    """A double-forked process escapes the tree the runner watches; under `user` it is killed by its uid."""
    needs("user")
    sandbox = sandbox_for("user", bwrap="/nonexistent/bwrap", user_name=agent_user_name())
    harden_data_dir(host.data)
    host.workspace.chmod(0o700)
    escaped = host.workspace / "escaped.txt"
    # The grandchild waits until the run is over, then would write (and could read what the next run is lent).
    agent = get_backend(
        "command",
        command=f"(setsid sh -c 'sleep 1; echo still-here > {escaped}; sleep 60' </dev/null >/dev/null 2>&1 &)",
    )
    request = AgentRequest(workspace=host.workspace, prompt="x", session_id="s-mine", task_kind="task", timeout=30)
    result = await AgentRunner(sandbox=sandbox).run(agent, request)
    assert result.exit_code == 0, result.log_tail
    await asyncio.sleep(1.5)
    assert not escaped.exists()
    assert _processes_of(sandbox.user.uid) == []


def test_where_the_service_is_init_the_killed_leftovers_leave_no_zombies():
    """In a container without an init, `compound serve` is PID 1: an agent's
    double-forked process is re-parented to it, and nobody else would wait for
    it once killed. A subreaper stands in for PID 1 here."""
    needs("user")
    uid = pwd.getpwnam(agent_user_name()).pw_uid
    script = textwrap.dedent(
        f"""
        import ctypes, os, subprocess, sys, time
        from bot.agents.sandbox import kill_leftovers
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us
        subprocess.run(["setpriv", "--reuid={uid}", "--regid={uid}", "--clear-groups", "sh", "-c",
                        "(setsid sleep 60 </dev/null >/dev/null 2>&1 &)"], check=True)
        time.sleep(0.2)
        killed = kill_leftovers({uid})
        mine = [p for p in os.listdir("/proc") if p.isdigit() and
                open(f"/proc/{{p}}/stat").read().rsplit(")", 1)[1].split()[:2] == ["Z", str(os.getpid())]]
        print(len(killed), len(mine))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]  # the orphan was killed, and waited for


def _processes_of(uid: int) -> list[int]:
    """Processes of `uid` still alive. A killed one whose parent is an init
    that never reaps (as in some CI containers) stays a zombie: it runs nothing."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def test_the_worktree_comes_back_with_no_link_from_outside_and_no_mode_that_lets_an_agent_in(host: Host):
    """Taking the worktree back after a user-mode run: a hard link to a file outside would be committed
    (and published) by Compound's `git add`, and a worktree left writable to all would let another
    session's agent (the same AGENT_USER) in while Compound's git works in it."""
    import uvloop

    needs("user")
    shared = host.base / "service" / "shared.txt"  # anyone may write it, so the agent may hard-link it
    shared.write_text("SHARED\n")
    shared.chmod(0o666)
    ws = host.workspace
    traps = {
        "hardlink": {str(ws / "shared.txt"): str(shared)},
        "symlink": {str(ws / "to-shared"): str(shared)},
        "chmod": {str(ws): "0777", str(ws / "feature.py"): "6777"},
    }
    sandbox = sandbox_for("user", bwrap="/nonexistent/bwrap", user_name=agent_user_name())
    harden_data_dir(host.data)
    report, _ = uvloop.run(run_hostile(host, sandbox, **traps))
    assert sorted(report["traps"]) == sorted(
        [str(ws / "shared.txt"), str(ws / "to-shared"), str(ws), str(ws / "feature.py")]
    )
    assert not (ws / "shared.txt").exists()  # the link is gone, what it pointed at untouched
    assert shared.read_text() == "SHARED\n" and stat.S_IMODE(shared.stat().st_mode) == 0o666
    assert (ws / "to-shared").is_symlink() and os.lstat(ws / "to-shared").st_uid == os.geteuid()
    assert stat.S_IMODE(ws.stat().st_mode) & 0o022 == 0
    assert stat.S_IMODE((ws / "feature.py").stat().st_mode) & (stat.S_ISUID | stat.S_ISGID | 0o022) == 0


async def test_bwrap_with_the_network_off_has_only_loopback(host: Host):
    needs("bwrap")
    backend = get_backend("command", command="cat /proc/net/dev; cat /proc/net/route")
    result = await AgentRunner(sandbox=sandbox_for("bwrap", network="off")).run(backend, hostile_request(host))
    interfaces = [line.split(":")[0].strip() for line in result.log_tail.splitlines() if ":" in line]
    assert interfaces == ["lo"]


async def test_auto_never_falls_back_to_none():
    # No bubblewrap, and no unprivileged user to switch to: nothing works, so agents do not start.
    chosen = probe("auto", bwrap="/nonexistent/bwrap", user_name="root")
    assert not chosen.usable and "To fix" in chosen.detail and "bubblewrap" in chosen.detail
    # bwrap asked for explicitly but missing: the same, never another mode.
    assert not probe("bwrap", bwrap="/nonexistent/bwrap").usable
    if os.geteuid() == 0:
        assert probe("auto", bwrap="/nonexistent/bwrap").mode == "user"
        # user mode cannot cut the network: auto refuses rather than run it open.
        assert not probe("auto", bwrap="/nonexistent/bwrap", network="off").usable


def test_user_mode_needs_setpriv_to_drop_the_agent():
    """The probe tries the very drop every agent gets; without setpriv there is no user mode."""
    needs("user")
    chosen = probe("user", bwrap="/nonexistent/bwrap", setpriv="/nonexistent/setpriv", user_name=agent_user_name())
    assert not chosen.usable
    assert "setpriv (util-linux)" in chosen.detail and "/nonexistent/setpriv not found" in chosen.detail
    assert probe("user", bwrap="/nonexistent/bwrap", user_name=agent_user_name()).mode == "user"


async def test_no_sandbox_means_the_agent_never_starts(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    marker = tmp_path / "ran"
    backend = get_backend("command", command=f"touch {marker}")
    chosen = probe("auto", bwrap="/nonexistent/bwrap", user_name="root")
    result = await AgentRunner(sandbox=chosen).run(
        backend, AgentRequest(workspace=workspace, prompt="x", session_id="s", task_kind="task")
    )
    assert result.exit_code is None and not marker.exists()
    assert "no sandbox" in result.final_message and "apt-get install bubblewrap" in result.final_message


async def test_an_agent_cli_the_sandbox_cannot_see_is_reported(tmp_path: Path):
    needs("bwrap")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hidden = tmp_path / "bin" / "my-agent"
    hidden.parent.mkdir()
    hidden.write_text("#!/bin/sh\nexit 0\n")
    hidden.chmod(0o755)
    backend = get_backend("claude-code", executable=str(hidden))
    result = await AgentRunner(sandbox=probe("bwrap")).run(
        backend, AgentRequest(workspace=workspace, prompt="x", session_id="s", task_kind="task")
    )
    assert result.exit_code is None and "AGENT_SANDBOX_PATHS" in result.final_message


async def test_the_agent_is_not_told_the_services_pid(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    out = workspace / "env.json"
    backend = get_backend(
        "command", command=f"{shlex.quote(sys.executable)} -c 'import json,os; print(json.dumps(dict(os.environ)))'"
    )
    result = await AgentRunner(records=RunRecords(tmp_path / "agents")).run(
        backend, AgentRequest(workspace=workspace, prompt="x", session_id="s", task_kind="task")
    )
    env = json.loads(result.log_tail.splitlines()[-1])
    assert str(os.getpid()) not in env.values()
    assert MARK in env and not out.exists()
    assert list((tmp_path / "agents").iterdir()) == []  # the run's record goes with it


def test_orphans_of_a_dead_supervisor_are_killed_and_no_one_elses(tmp_path: Path):
    records = RunRecords(tmp_path / "agents")
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = records.open()
    orphan_mark = "0" * 24
    (records.directory / orphan_mark).write_text(json.dumps({"supervisor": dead.pid, "start": 1}))
    env = {"PATH": os.defpath}
    orphan = subprocess.Popen(["sleep", "60"], env={**env, MARK: orphan_mark})
    live = subprocess.Popen(["sleep", "60"], env={**env, MARK: mine})  # its supervisor (us) is alive
    stranger = subprocess.Popen(["sleep", "60"], env={**env, MARK: "f" * 24})  # another service's
    try:
        assert reap_orphans(records) == 1
        assert orphan.wait(timeout=5) == -9
        assert live.poll() is None and stranger.poll() is None
        assert not (records.directory / orphan_mark).exists()
    finally:
        for proc in (orphan, live, stranger):
            proc.kill()
            proc.wait()


NET_PROBE = """
import json, os, socket, sys, urllib.error, urllib.request
port = int(sys.argv[1])
seen = {}
def fetch(name, url):
    try:
        seen[name] = urllib.request.urlopen(url, timeout=10).read().decode()
    except urllib.error.HTTPError as exc:
        seen[name] = exc.code
    except OSError as exc:
        seen[name] = type(exc).__name__
fetch("allowed", f"http://localhost:{port}/hello")
fetch("other_host", f"http://127.0.0.1:{port}/hello")
fetch("other_port", f"http://localhost:{sys.argv[2]}/hello")
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    seen["direct"] = "connected"
except OSError as exc:
    seen["direct"] = type(exc).__name__
print(json.dumps(seen))
"""


async def test_with_an_allow_list_the_agent_reaches_only_those_hosts(tmp_path: Path, aiohttp_server):
    """AGENT_NETWORK_ALLOW: through the proxy to a listed host; 403 for any other; no way around it."""
    from aiohttp import web

    needs("bwrap")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the model API")

    app = web.Application()
    app.router.add_get("/hello", hello)
    server = await aiohttp_server(app)
    elsewhere = await aiohttp_server(app)  # the same host, a port the list does not open
    script = tmp_path / "tools" / "net_probe.py"
    script.parent.mkdir()
    script.write_text(NET_PROBE)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    sandbox = probe("bwrap", paths=str(script.parent), allow=f"localhost:{server.port}")
    assert sandbox.filtered and f"limited to localhost:{server.port}" in sandbox.describe()
    backend = get_backend("command", command=f"{PYTHON} {script} {server.port} {elsewhere.port}")
    result = await AgentRunner(sandbox=sandbox).run(
        backend, AgentRequest(workspace=workspace, prompt="x", session_id="s", task_kind="task", timeout=60)
    )
    assert result.exit_code == 0, result.log_tail
    seen = json.loads(result.log_tail.splitlines()[-1])
    assert seen == {
        "allowed": "hello from the model API",
        "other_host": 403,
        "other_port": 403,
        "direct": "ConnectionRefusedError",
    }


@pytest.mark.parametrize(
    ("host", "port", "domains", "expected"),
    [
        ("api.anthropic.com", 443, ("api.anthropic.com",), True),
        ("registry.npmjs.org", 80, ("npmjs.org",), True),  # a subdomain, plain HTTP
        ("api.anthropic.com", 22, ("api.anthropic.com",), False),  # a bare domain opens 443 and 80 only
        ("api.anthropic.com", 8443, ("api.anthropic.com:8443",), True),
        ("api.anthropic.com", 443, ("api.anthropic.com:8443",), False),
        ("git.example.com", 22, ("*.example.com:*",), True),
        ("example.com.evil.net", 443, ("example.com",), False),
        ("notexample.com", 443, ("example.com",), False),
        ("[::1]", 443, ("::1",), True),
        ("::1", 8080, ("[::1]:8080",), True),
        ("::1", 1, ("::1",), False),
    ],
)
def test_the_allow_list_matches_hosts_and_ports(host, port, domains, expected):
    assert allowed(host, port, domains) is expected


def test_network_limits_under_none_are_said_not_to_apply(caplog):
    caplog.set_level("WARNING", logger="compound.agents")
    chosen = probe("none", network="off")
    assert chosen.health()["network"].startswith("on: AGENT_NETWORK and AGENT_NETWORK_ALLOW need a sandbox")
    assert any("are not applied" in r.getMessage() for r in caplog.records)
    limited = probe("none", allow="api.anthropic.com")
    assert "not applied" in limited.health()["network"]
    assert probe("none").health()["network"] == "on"
