"""Running git for workspaces: a minimal environment, a timeout, no secret in sight.

The installation token reaches git only as an HTTP header in the environment of
the one command that talks to the remote (`GIT_CONFIG_COUNT` /
`GIT_CONFIG_KEY_0=http.extraHeader`), never on argv (visible in
/proc/*/cmdline), in a config file or in a URL. Errors carry the command, the
exit code and stderr with every known secret scrubbed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shlex
import signal
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from bot.logs import REDACTED, redactor

# On argv, ahead of every subcommand. None of it is secret. They override
# anything the repository's own config (which an agent can write) sets:
# no credential helper stores or offers a password, nothing prompts, no hook or
# fsmonitor program runs inside a git command Compound starts.
SAFE_CONFIG = (
    "-c",
    "credential.helper=",
    "-c",
    "core.askPass=",
    "-c",
    "core.hooksPath=" + os.devnull,
    "-c",
    "core.fsmonitor=false",
    "-c",
    "gc.autoDetach=false",
)

# stderr fragments git prints when another process holds a lock it needs.
LOCK_MESSAGES = ("cannot lock ref", ".lock': File exists", "Unable to create", "unable to lock")


class GitError(Exception):
    """A git command failed: the command (no secret in it), its exit code, scrubbed stderr."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(
            f"{command} exited with {returncode}: {stderr}" if stderr else f"{command} exited with {returncode}"
        )

    @property
    def hit_lock(self) -> bool:
        return any(fragment in self.stderr for fragment in LOCK_MESSAGES)


def auth_header(token: str) -> str:
    """The value of `http.extraHeader` GitHub accepts for an installation token."""
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"Authorization: Basic {basic}"


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return redactor(text)


# The whole of a mirror's config. Rewritten before every command that carries
# the token or commits: an agent can reach the mirror through its worktree's
# `.git` link, and must not be able to point a remote, proxy, URL rewrite,
# include, hook, filter, diff or merge driver at Compound's own git.
# No `sharedRepository`: an agent running as another user only ever reads the
# mirror, while it is lent one of its worktrees (bot/agents/lending.py).
MIRROR_CONFIG = """\
[core]
\trepositoryformatversion = 0
\tfilemode = true
\tbare = true
[gc]
\tautoDetach = false
"""

# Files in a mirror that would make Compound's git read another repository's
# objects (and so push them): an agent has no business writing them.
FOREIGN_OBJECTS = ("objects/info/alternates", "objects/info/http-alternates")


def write_mirror_config(mirror: Path) -> None:
    """Put the fixed config back if anything changed it (atomically: others may be reading it)."""
    for name in FOREIGN_OBJECTS:
        try:
            (mirror / name).unlink()
        except FileNotFoundError:
            pass
    put_file(mirror / "config", MIRROR_CONFIG)


def put_file(path: Path, text: str) -> None:
    """Make ``path`` hold ``text``, atomically and only if it differs.

    Other workers' git commands (`git worktree list` reads every worktree's
    `commondir`) may be reading it: they see the old file or the new one,
    never an empty one.
    """
    try:
        if not path.is_symlink() and path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    tmp = path.with_name(f"{path.name}.compound-{uuid.uuid4().hex}")
    tmp.write_text(text)
    os.replace(tmp, path)


class Git:
    """Starts git commands with a fixed, minimal environment under ``home``."""

    def __init__(self, home: Path, timeout: float) -> None:
        self.home = home
        self.timeout = timeout

    def environment(self, token: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),  # nobody's ~/.gitconfig, ~/.netrc or credential store
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_LITERAL_PATHSPECS": "1",  # a path is a path, even with * or : in it
        }
        if token is not None:
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=auth_header(token),
            )
        env.update(extra or {})
        return env

    async def __call__(
        self,
        *args: str,
        cwd: Path | None = None,
        git_dir: Path | None = None,
        work_tree: Path | None = None,
        common_dir: Path | None = None,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> tuple[int, bytes, str]:
        """Run ``git [--git-dir=…] args``; (exit code, stdout, scrubbed stderr).

        Raises GitError on a non-zero exit when ``check`` and on timeout.
        """
        prefix = ["git", *SAFE_CONFIG]
        if git_dir is not None:
            prefix.append(f"--git-dir={git_dir}")
        if work_tree is not None:
            prefix.append(f"--work-tree={work_tree}")
        if common_dir is not None:
            # A worktree's git dir names its common dir in a `commondir` file,
            # which the agent can rewrite; this wins over it.
            env = {**(env or {}), "GIT_COMMON_DIR": str(common_dir)}
        command = shlex.join(["git", *args])
        secrets = [token, auth_header(token).split(" ", 1)[1]] if token else []
        self.home.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            *args,
            cwd=cwd,
            env=self.environment(token, env),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # so a timeout kills git-remote-http and friends too
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise GitError(command, -signal.SIGKILL, f"timed out after {self.timeout:g}s") from None
        stderr = scrub(err.decode(errors="replace").strip(), secrets)
        code = proc.returncode if proc.returncode is not None else -1
        if check and code != 0:
            raise GitError(command, code, stderr)
        return code, out, stderr

    async def out(
        self,
        *args: str,
        cwd: Path | None = None,
        git_dir: Path | None = None,
        work_tree: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> str:
        """stdout of a local command that must succeed, stripped."""
        _, out, _ = await self(*args, cwd=cwd, git_dir=git_dir, work_tree=work_tree, env=env, stdin=stdin)
        return out.decode(errors="replace").strip()
