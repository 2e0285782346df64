"""The sandbox every agent process runs in (`AGENT_SANDBOX`, docs/sandbox.md).

The agent is untrusted code: it runs what the repository and the issue's
author tell it to. It must reach its worktree and nothing else of the service:
not `DATA_DIR` (the database, other repositories' mirrors and worktrees), not
the service's working directory (`.env`), not the operator's `HOME`, not the
service's processes (whose environment holds the App key) nor a concurrent
`git push` (whose environment holds a token).

Modes:

- ``bwrap``: bubblewrap. New mount, PID, IPC and UTS namespaces (and a new
  network namespace when the network is cut). The sandbox's root is empty: the
  system's directories are bound read-only, the worktree and the mirror its
  `.git` points at read-write, a private `/tmp`, a fresh `HOME` holding only
  the backend's own config, the paths of `AGENT_SANDBOX_PATHS` read-only.
  When the service runs as root, bubblewrap sets the mounts up as root and the
  agent is then dropped to `AGENT_USER` (no capability left): a user
  namespace would map the agent back onto root, who owns every file.
- ``user``: no namespaces (some containers forbid them); the service runs as
  root and starts the agent as `AGENT_USER` (through setpriv), lending it the
  worktree and opening it the mirror for the run (`lending.py`). File modes
  are all that keeps it out of the rest, so `DATA_DIR` is made passable-only
  and its files private, and the service's umask becomes 077.
- ``none``: no isolation, only when the operator says so; loud at start and in
  every check run.
- ``auto`` (the default): the first of bwrap and user that works on this host,
  found by a probe at start. Never none: with neither, agents do not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.agents import lending
from bot.agents.base import AGENT_OBJECTS

log = logging.getLogger("compound.agents")

MODES = ("auto", "bwrap", "user", "none")
UNAVAILABLE = "unavailable"

# Inside a bwrap sandbox: who the agent is and where its home is.
SANDBOX_UID = SANDBOX_GID = 1000
SANDBOX_HOME = "/home/agent"
# With AGENT_NETWORK_ALLOW: the bridge to the egress proxy, and its port inside.
BRIDGE = Path(__file__).with_name("netbridge.py")
BRIDGE_IN_SANDBOX = "/run/compound/netbridge.py"
PROXY_PORT = 3128
# The system, read-only. /usr-merged systems have /bin, /lib… as symlinks.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")

# What each backend keeps in HOME that it needs to run (credentials of its
# model provider, its settings), copied into the agent's fresh HOME.
HOME_FILES: Mapping[str, tuple[str, ...]] = {
    "claude-code": (".claude/settings.json", ".claude/.credentials.json"),
    "codex": (".codex/config.toml", ".codex/auth.json"),
    "aider": (".aider.conf.yml",),
    "command": (),
}

# How often a `user`-mode run waiting for the host's one agent slot looks again.
USER_LOCK_POLL = 0.2

FIX_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) on a host or container that allows "
    "namespaces, or run Compound as root so it can start agents as AGENT_USER (AGENT_SANDBOX=user); "
    "AGENT_SANDBOX=none runs agents unisolated, at your own risk"
)


@dataclass(frozen=True)
class AgentUser:
    """The unprivileged account agents run as when the service is root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Launch:
    """How to start one agent: the argv, its environment, subprocess options."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sandbox:
    """The mode the probe chose and everything a launch needs."""

    mode: str  # bwrap, user, none, or unavailable
    detail: str  # how it was chosen, or why agents cannot start and what fixes it
    paths: tuple[str, ...] = ()
    network: str = "on"
    allow: tuple[str, ...] = ()
    user: AgentUser | None = None  # set when the service runs as root
    bwrap: str = "bwrap"
    _user_slot: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False, compare=False)
    setpriv: str = "setpriv"  # drops the agent to `user` (util-linux)

    @property
    def usable(self) -> bool:
        return self.mode != UNAVAILABLE

    def describe(self) -> str:
        """One line for a check run, /healthz and the start-up log."""
        if self.mode == "bwrap":
            who = f", as {self.user.name}" if self.user else ""
            return f"bwrap (own mount, PID, IPC and UTS namespaces{who}; network {self._network()})"
        if self.mode == "user":
            who = self.user.name if self.user else "?"
            return f"user (runs as {who}, one agent at a time, no namespaces; network on)"
        if self.mode == "none":
            return "none — the agent runs unisolated, with the service's rights (AGENT_SANDBOX=none)"
        return f"unavailable — {self.detail}"

    def _network(self) -> str:
        if self.mode == "none" and (self.network != "on" or self.allow):
            return "on: AGENT_NETWORK and AGENT_NETWORK_ALLOW need a sandbox, not applied under AGENT_SANDBOX=none"
        if self.network == "off":
            return "off"
        if self.allow:
            return "limited to " + ", ".join(self.allow)
        return "on"

    def health(self) -> dict[str, Any]:
        return {"mode": self.mode, "network": self._network(), "detail": self.detail}

    # -- launching ------------------------------------------------------------

    @property
    def filtered(self) -> bool:
        """Whether agents reach the network only through the egress proxy (netproxy.py)."""
        return self.mode == "bwrap" and self.network == "on" and bool(self.allow)

    def launch(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        workspace: Path,
        scratch: Path,
        git_common_dir: Path | None = None,
        git_dir: Path | None = None,
        backend: str = "command",
        proxy: Path | None = None,
    ) -> Launch:
        """The command that runs `argv` in this sandbox, in `workspace`.

        `scratch` is the run's private directory (the prompt file, the agent's
        HOME); it is removed after the run. `proxy`: the egress proxy's socket
        when the network is limited to AGENT_NETWORK_ALLOW.
        """
        if not self.usable:
            raise SandboxUnavailable(self.detail)
        home = scratch / "home"
        home.mkdir(exist_ok=True)
        _copy_home_files(home, backend)
        if self.mode == "none":
            return Launch(argv, env, workspace)
        if self.mode == "user":
            assert self.user is not None
            tmp = scratch / "tmp"
            tmp.mkdir(exist_ok=True)
            env = {**env, "HOME": str(home), "TMPDIR": str(tmp), "USER": self.user.name}
            env.update(_agent_git(home, git_common_dir, git_dir))
            # Not subprocess's user=/group=: uvloop, which `compound serve` runs on, refuses them.
            return Launch([*self._drop_privileges(), *argv], env, workspace)
        env = {**env, "HOME": SANDBOX_HOME, "TMPDIR": "/tmp", "USER": "agent"}
        if proxy is not None:
            env.update(_proxy_env(f"http://127.0.0.1:{PROXY_PORT}"))
        env.update(_agent_git(home, git_common_dir, git_dir, mapped=self.user is None))
        argv = self._bwrap_argv(argv, workspace, scratch, home, git_common_dir, proxy, git_dir)
        return Launch(argv, env, workspace)

    def _bwrap_argv(
        self,
        argv: list[str],
        workspace: Path,
        scratch: Path,
        home: Path,
        git_common_dir: Path | None,
        proxy: Path | None = None,
        git_dir: Path | None = None,
    ) -> list[str]:
        args = [
            self.bwrap,
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "compound-agent",
            "--die-with-parent",  # the sandbox ends with the service, whatever kills it
            "--new-session",  # no TIOCSTI into a terminal Compound might have
        ]  # fmt: skip
        if self.network != "on" or self.allow:
            args.append("--unshare-net")
        if self.user is None:
            args += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID)]
        for system in SYSTEM_DIRS:
            if os.path.islink(system):
                args += ["--symlink", os.readlink(system), system]
            elif os.path.isdir(system):
                args += ["--ro-bind", system, system]
        args += [
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/tmp",
            "--dir", "/var", "--perms", "1777", "--tmpfs", "/var/tmp",
            "--dir", "/run",
        ]  # fmt: skip
        made = {"/", "/proc", "/dev", "/tmp", "/var", "/var/tmp", "/run", *SYSTEM_DIRS}

        def mount(kind: str, source: str, target: str) -> None:
            # Directories on the way are made world-traversable: bubblewrap
            # would make them 0700, which a dropped agent cannot walk through.
            parents = [str(p) for p in reversed(Path(target).parents)]
            for parent in parents:
                if parent not in made and not any(parent.startswith(m.rstrip("/") + "/") for m in SYSTEM_DIRS):
                    args.extend(["--perms", "0755", "--dir", parent])
                    made.add(parent)
            args.extend([kind, source, target])
            made.add(target)

        for extra in self.paths:
            mount("--ro-bind-try", extra, extra)
        mount("--bind", str(scratch), str(scratch))
        mount("--bind", str(home), SANDBOX_HOME)
        passwd, group = _identity_files(scratch, self.user)
        args += ["--ro-bind", str(passwd), "/etc/passwd", "--ro-bind", str(group), "/etc/group"]
        if git_common_dir is not None:
            # Shared by every session of the repository: read-only, so no agent
            # can plant config, attributes, hooks or refs for Compound's git or
            # for another session. Only this worktree's own git dir is writable.
            mount("--ro-bind", str(git_common_dir), str(git_common_dir))
            if git_dir is not None:  # inside the mirror: its parents are there already
                args.extend(["--bind", str(git_dir), str(git_dir)])
        mount("--bind", str(workspace), str(workspace))
        args += ["--chdir", str(workspace)]
        if proxy is not None:
            # The agent's only way out: the bridge, run by this very interpreter.
            python = os.path.realpath(sys.executable)
            if not self.visible(python):
                mount("--ro-bind", sys.base_prefix, sys.base_prefix)
            mount("--ro-bind", str(BRIDGE), BRIDGE_IN_SANDBOX)
            argv = [python, "-I", "-S", BRIDGE_IN_SANDBOX, str(proxy), str(PROXY_PORT), "--", *argv]
        if self.user is not None:
            # Mounts are made as root; the agent itself keeps no privilege.
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", *self._drop_privileges()]
        return [*args, "--", *argv]

    def _drop_privileges(self) -> list[str]:
        """setpriv's argv prefix that runs the rest as AGENT_USER: no groups, no capabilities, no way back."""
        assert self.user is not None
        return [
            self.setpriv, f"--reuid={self.user.uid}", f"--regid={self.user.gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
        ]  # fmt: skip

    def visible(self, path: str) -> bool:
        """Whether a file outside the worktree can be seen inside the sandbox."""
        if self.mode in ("none", "user"):
            return True
        real = os.path.realpath(path)
        roots = [os.path.realpath(d) for d in SYSTEM_DIRS] + [os.path.realpath(p) for p in self.paths]
        return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)

    # -- ownership, when the agent runs as another user -------------------------

    @contextlib.asynccontextmanager
    async def lent(
        self,
        workspace: Path,
        scratch: Path,
        git_common_dir: Path | None,
        git_dir: Path | None,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[None]:
        """Let AGENT_USER write the worktree, its git dir and the run's scratch, and read the mirror, for one run.

        The worktree and its git dir go back to the service's user afterwards
        (`lending.take_back`), so no later agent can write them, and the mirror
        is closed again once no worktree of it is lent (bot/agents/lending.py).
        `settle` runs between the two lendings, while the git dir is still the
        service's: the chown changed every file's ctime and owner, which the
        agent's git would otherwise take for a change to every file. Under
        bubblewrap with nothing to lend it runs as well.
        """
        if self.user is None or self.mode not in ("bwrap", "user"):
            if self.mode == "bwrap" and settle is not None:
                # Nothing to lend (the agent is the service's own uid outside its
                # namespace), but the mirror is as read-only to it: racily clean
                # files of a fresh checkout would be written again all the same.
                await settle()
            yield
            return
        user, me_uid, me_gid = self.user, os.geteuid(), os.getegid()
        mirror = git_common_dir if git_dir is not None else None
        async with self._one_at_a_time(workspace.parent):
            try:  # taken back however far the lending got
                await asyncio.to_thread(lending.lend, scratch, user.uid, user.gid)
                await asyncio.to_thread(lending.lend, workspace, user.uid, user.gid)
                if settle is not None:
                    await settle()
                if mirror is not None and git_dir is not None:
                    await asyncio.to_thread(self._open, mirror, git_dir, user)
                yield
            finally:
                if self.mode == "user":  # the one agent of this host is done: whatever runs as it escaped the run
                    await asyncio.to_thread(kill_leftovers, user.uid)
                await asyncio.to_thread(lending.take_back, workspace, me_uid, me_gid)
                if mirror is not None and git_dir is not None:
                    await asyncio.to_thread(self._close, mirror, git_dir, user)

    def reclaim(self, data_dir: Path) -> list[Path]:
        """At start under `user`: take back what a service that died left lent; what was taken back.

        A crash (kill -9, OOM) in the middle of a run leaves its worktree and
        git dir owned by AGENT_USER and its mirror open to the agents' group,
        where a later agent (of another repository, even) could read them. If
        no run is lent anywhere on the host (the turn is free), all of that is
        a leftover: taken back, and every mirror closed. If a run is under way
        (another worker), nothing of the workspaces or mirrors is touched.
        """
        if self.mode != "user" or self.user is None:
            return []
        data_dir.mkdir(parents=True, exist_ok=True)
        workspaces = data_dir / "workspaces"
        workspaces.mkdir(exist_ok=True)
        lock = _open_turn(self.user, workspaces)
        try:
            if not _take_turn(lock):
                log.info("an agent run is under way on this host: lent worktrees are left to it")
                lending.harden_data_dir(data_dir, entries=False)
                return []
            leftovers = lending.lent_leftovers(data_dir, self.user.uid)
            for path in leftovers:
                lending.take_back(path, os.geteuid(), os.getegid())
            for mirror in (data_dir / "mirrors").glob("*/*"):
                if mirror.is_dir() and not mirror.is_symlink():
                    lending.close_mirror(mirror, os.getegid(), self.user.uid)
            lending.harden_data_dir(data_dir)
            if leftovers:
                log.warning("took back %d lent worktree(s) a service that died left", len(leftovers))
            return leftovers
        finally:
            os.close(lock)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, workspaces: Path) -> AsyncIterator[None]:
        """In `user` mode, one lent worktree at a time on this host.

        Without namespaces, two agents running as the one AGENT_USER could
        read each other's worktrees and mirrors, signal or ptrace each other.
        So under `user` an agent waits for the one before it: in this process
        by a lock, across processes (workers, other services on the host) by
        a lock file in /run/compound, where no agent can write (the
        workspaces directory where /run is not the service's to use).
        Under bubblewrap each agent sees only its own mounts and PIDs, and
        runs run side by side.
        """
        if self.mode != "user":
            yield
            return
        async with self._user_slot:
            lock = _open_turn(self.user, workspaces)
            try:
                if not _take_turn(lock):
                    log.info("waiting for another agent: AGENT_SANDBOX=user runs one at a time")
                    while not _take_turn(lock):
                        await asyncio.sleep(USER_LOCK_POLL)
                yield
            finally:
                os.close(lock)

    def _open(self, mirror: Path, git_dir: Path, user: AgentUser) -> None:
        with lending.mirror_lock(mirror):
            lending.lend(git_dir, user.uid, user.gid)
            # Under bubblewrap the mirror is mounted at its path; in user mode the way there must be passable.
            lending.open_mirror(mirror, user.gid, traverse=self.mode == "user")

    def _close(self, mirror: Path, git_dir: Path, user: AgentUser) -> None:
        lending.take_back(git_dir, os.geteuid(), os.getegid())
        with lending.mirror_lock(mirror):
            if not lending.close_mirror(mirror, os.getegid(), user.uid):
                log.debug("mirror %s stays open: another of its worktrees is lent", mirror)


# Where `user`-mode runs of the whole host (or container) take turns: /run is
# the host's, as the PID namespace that kill_leftovers looks at is.
USER_LOCK_DIR = Path("/run/compound")


def _open_turn(user: AgentUser | None, fallback: Path) -> int:
    """The lock file of AGENT_USER's one run at a time, opened: host-wide, in a directory only the service's user
    writes (`fallback`, the workspaces directory, where /run is not that)."""
    name = f"agent-{user.uid if user else 'none'}.lock"
    path = fallback / f".{name}"
    try:
        USER_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        info = USER_LOCK_DIR.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022:
            path = USER_LOCK_DIR / name
        else:
            log.warning("%s is not the service's own directory; agents take turns per DATA_DIR only", USER_LOCK_DIR)
    except OSError:
        pass
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _take_turn(lock: int) -> bool:
    """Whether the turn was free and is now this process's (never waits: the event loop must not)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def kill_leftovers(uid: int, passes: int = 20) -> list[int]:
    """Kill every process of `uid` in this PID namespace; the pids killed.

    Only under `user`, between runs: agents take turns (one lent worktree at
    a time on the host), so any process still running as AGENT_USER is one
    the last run's agent left behind, double-forked out of the tree the
    runner watched. Processes in other PID namespaces (another service's
    bubblewrap agents, which may run as the same uid) are not ours to kill.
    A process forking while it is killed is caught on a later pass.
    """
    try:
        mine = os.readlink("/proc/self/ns/pid")
    except OSError:
        return []
    killed: list[int] = []
    for _ in range(passes):
        found = [pid for pid in _pids_of(uid) if _pid_namespace(pid) == mine]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.01)
    if killed:
        log.warning("killed %d process(es) an agent left running as uid %d", len(set(killed)), uid)
        _reap(set(killed))
    return sorted(set(killed))


def _reap(pids: set[int], attempts: int = 50) -> None:
    """Wait for the killed processes that became our children.

    A double-forked process is re-parented to the nearest subreaper: in a
    container without an init that is `compound serve` itself (PID 1), and
    nothing else would ever wait for it, so each run would leave zombies.
    Only pids we just killed are waited for, never the event loop's own
    subprocesses. The rest belong to some other init.
    """
    pending = set(pids)
    for _ in range(attempts):
        for pid in list(pending):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: another init reaps it
                pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if not pending:
            return
        time.sleep(0.01)


def _pids_of(uid: int) -> list[int]:
    """Live processes of `uid`: a zombie (killed, not yet reaped by whatever
    init the host has, which in some containers never reaps) runs nothing."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").split()[:1] in (["Z"], ["X"]):
            continue
        if str(uid) in fields.get("Uid", "").split():  # real, effective, saved or filesystem uid
            pids.append(int(name))
    return pids


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class SandboxUnavailable(Exception):
    """No sandbox works on this host; agents do not start."""


def _agent_git(home: Path, git_common_dir: Path | None, git_dir: Path | None, mapped: bool = False) -> dict[str, str]:
    """What the agent's own git needs in a sandbox: trust, and a place of its own for objects.

    The worktree and mirror belong to the service's user, not the agent's, so
    its git is told to trust them (nothing else it could trust is in reach).
    The mirror is read-only to it (other sessions share it): its git writes
    objects next to its index instead, which Compound takes in afterwards.
    `mapped`: the agent sees owners through a user namespace (bubblewrap under
    a service that is not root), so every file's owner differs from the one
    the index records (the service's uid, outside); git's stat check goes by
    modification time and size alone for it, or it would hash (and write)
    every file again. Compound's own git still checks everything.
    """
    with (home / ".gitconfig").open("a") as gitconfig:
        gitconfig.write("[safe]\n\tdirectory = *\n")
        if mapped:
            gitconfig.write("[core]\n\tcheckStat = minimal\n")
    if git_common_dir is None or git_dir is None:
        return {}
    objects = git_dir / AGENT_OBJECTS
    objects.mkdir(exist_ok=True)
    return {"GIT_OBJECT_DIRECTORY": str(objects), "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(git_common_dir / "objects")}


def _proxy_env(proxy: str) -> dict[str, str]:
    return {name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY")} | {
        "NO_PROXY": "",
        "no_proxy": "",
    }


def _identity_files(scratch: Path, user: AgentUser | None) -> tuple[Path, Path]:
    """An /etc/passwd and /etc/group naming the agent, so tools that look it up work."""
    uid, gid = (user.uid, user.gid) if user else (SANDBOX_UID, SANDBOX_GID)
    passwd, group = scratch / "passwd", scratch / "group"
    passwd.write_text(f"root:x:0:0:root:/root:/bin/sh\nagent:x:{uid}:{gid}:Compound agent:{SANDBOX_HOME}:/bin/sh\n")
    group.write_text(f"root:x:0:\nagent:x:{gid}:\n")
    return passwd, group


def _copy_home_files(home: Path, backend: str) -> None:
    """The backend's own config from the service's HOME, and nothing else of it."""
    source = Path(os.environ.get("HOME") or "~").expanduser()
    for name in HOME_FILES.get(backend, ()):
        origin = source / name
        if origin.is_file() and not origin.is_symlink():
            target = home / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(origin, target)
            target.chmod(0o600)


# -- the probe -------------------------------------------------------------------


def agent_user(name: str) -> AgentUser | None:
    """AGENT_USER as an account: a name or a numeric uid; None if unknown."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        if name.isdigit():
            return AgentUser(name, int(name), int(name))
        return None
    return AgentUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _bwrap_works(bwrap: str, user: AgentUser | None, setpriv: str) -> str | None:
    """None if a minimal sandbox starts here; else what went wrong."""
    probe = Sandbox("bwrap", "probe", user=user, bwrap=bwrap, setpriv=setpriv)
    with tempfile.TemporaryDirectory(prefix="compound-probe-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        (Path(tmp) / "home").mkdir()
        return _runs(probe._bwrap_argv(["true"], work, Path(tmp), Path(tmp) / "home", None))


def _runs(argv: list[str]) -> str | None:
    """None if `argv` runs and exits 0; else what went wrong, in one line."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20, env={"PATH": os.defpath})
    except FileNotFoundError:
        return f"{argv[0]} not found"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return (
            done.stderr.decode(errors="replace").strip().splitlines()[-1:][0]
            if done.stderr
            else f"exit {done.returncode}"
        )
    return None


def probe(
    mode: str = "auto",
    *,
    paths: str = "",
    network: str = "on",
    allow: str = "",
    user_name: str = "compound-agent",
    bwrap: str | None = None,
    setpriv: str | None = None,
) -> Sandbox:
    """Find the sandbox for this host; log it. Never `none` unless asked for."""
    chosen = _choose(mode, paths=paths, network=network, allow=allow, user_name=user_name, bwrap=bwrap, setpriv=setpriv)
    if chosen.mode == "none":
        log.warning("AGENT_SANDBOX=none: agents run UNISOLATED, with the service's files and network in reach")
        if network != "on" or allow.strip():
            log.warning(
                "AGENT_NETWORK/AGENT_NETWORK_ALLOW are not applied: with AGENT_SANDBOX=none nothing limits the network"
            )
    elif not chosen.usable:
        log.error("no agent sandbox: %s; agents will not start", chosen.detail)
    else:
        log.info("agent sandbox: %s", chosen.describe(), extra={"sandbox": chosen.mode, "why": chosen.detail})
    return chosen


def _choose(
    mode: str, *, paths: str, network: str, allow: str, user_name: str, bwrap: str | None, setpriv: str | None
) -> Sandbox:
    extra = tuple(p for p in paths.split(":") if p)
    domains = tuple(d.strip().lower() for d in allow.split(",") if d.strip())
    dropper = setpriv or shutil.which("setpriv") or "/usr/bin/setpriv"
    common: dict[str, Any] = {"paths": extra, "network": network, "allow": domains, "setpriv": dropper}
    if mode == "none":
        return Sandbox("none", "AGENT_SANDBOX=none", **common)
    root = os.geteuid() == 0
    user = agent_user(user_name) if root else None
    if root and user is None:
        user = agent_user("nobody")
    tried = []
    if mode in ("auto", "bwrap"):
        binary = bwrap or shutil.which("bwrap") or "bwrap"
        problem = _bwrap_works(binary, user, dropper)
        if problem is None:
            return Sandbox("bwrap", f"probe: {binary} works", user=user, bwrap=binary, **common)
        tried.append(f"bubblewrap: {problem}")
    if mode in ("auto", "user"):
        problem = _user_mode_problem(root, user, network, domains, dropper)
        if problem is None:
            assert user is not None
            return Sandbox("user", f"bubblewrap unavailable; agents run as {user.name}", user=user, **common)
        tried.append(f"user: {problem}")
    return Sandbox(UNAVAILABLE, f"AGENT_SANDBOX={mode}: " + "; ".join(tried) + f". To fix: {FIX_HINT}", **common)


def _user_mode_problem(
    root: bool, user: AgentUser | None, network: str, allow: tuple[str, ...], setpriv: str
) -> str | None:
    if not root:
        return "needs the service to run as root, to start agents as another user"
    if user is None or user.uid == 0:
        return "no unprivileged AGENT_USER to run agents as"
    if network != "on" or allow:
        return "cannot cut or limit the network (AGENT_NETWORK, AGENT_NETWORK_ALLOW) without namespaces"
    # The very drop every agent gets: setpriv (util-linux) to AGENT_USER.
    problem = _runs([*Sandbox("user", "probe", user=user, setpriv=setpriv)._drop_privileges(), "true"])
    if problem is not None:
        return f"cannot drop to {user.name} with setpriv (util-linux): {problem}"
    return None
