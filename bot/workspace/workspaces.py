"""Bare mirrors (one per repo, fetched, never re-cloned) and session worktrees.

Layout under DATA_DIR:

    mirrors/<owner>/<repo>.git   bare repo; remote state under refs/remotes/origin/
    workspaces/<session-id>      one `git worktree` per session, on its own branch
    git-home/                    HOME for git, so no user config is read

The mirror keeps what it fetches under ``refs/remotes/origin/`` and nothing
under ``refs/heads/`` except the sessions' own local branches: a fetch then
never touches a branch some worktree has checked out. It fetches the remote's
HEAD (the default branch, whatever its name) and the session branches
``compound/*`` — not every branch, tag or pull-request ref. So it is made
with `git init --bare` and a first fetch of those refspecs rather than
`clone --bare`, which would put every branch under ``refs/heads/``.

Fetch and push name the URL and refspecs on the command line; the mirror's
config holds no remote at all (see `write_mirror_config`).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.workspace.git import Git, GitError, write_mirror_config
from bot.workspace.worktree import Workspace

log = logging.getLogger("compound.workspace")

SESSION_PREFIX = "compound/"
REMOTE = "refs/remotes/origin/"
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_repo(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    if not _REPO_RE.match(repo) or owner in (".", "..") or name in (".", ".."):
        raise ValueError(f"not an owner/repo name: {repo!r}")
    return owner, name.removesuffix(".git")


class Workspaces:
    """Mirrors and session worktrees under one data directory."""

    def __init__(self, data_dir: Path, git_base_url: str, *, git_timeout: float = 600) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.git_base_url = git_base_url.rstrip("/")
        self.mirrors = self.data_dir / "mirrors"
        self.workspaces = self.data_dir / "workspaces"
        self.git = Git(self.data_dir / "git-home", git_timeout)
        self._locks: dict[str, asyncio.Lock] = {}

    def url(self, repo: str) -> str:
        owner, name = _check_repo(repo)
        return f"{self.git_base_url}/{owner}/{name}.git"

    def mirror_path(self, repo: str) -> Path:
        owner, name = _check_repo(repo)
        # GitHub names are case-insensitive: one mirror for Octo/Repo and octo/repo.
        return self.mirrors / owner.lower() / f"{name.lower()}.git"

    # --- mirrors -----------------------------------------------------------

    async def sync_mirror(self, repo: str, token: str) -> Path:
        """Create the repo's mirror (first time) or fetch into it; its path."""
        return await self._sync(repo, token)

    @asynccontextmanager
    async def _mirror_lock(self, mirror: Path) -> AsyncIterator[None]:
        """One change to the mirror at a time: this process's tasks, and other
        processes of the machine sharing DATA_DIR (a file lock).

        Fetches take it (so none trips over another's ref locks), and so do
        worktree changes: `git worktree prune` deletes an entry whose files are
        not written yet, which is how a worktree being added looks for a moment,
        and the adding git then dies with "could not open … for writing".
        """
        lock = self._locks.setdefault(str(mirror), asyncio.Lock())
        async with lock:
            mirror.parent.mkdir(parents=True, exist_ok=True)
            held = os.open(mirror.parent / f".{mirror.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, held, fcntl.LOCK_EX)
                yield
            finally:
                os.close(held)

    async def _sync(self, repo: str, token: str, also: tuple[str, ...] = ()) -> Path:
        mirror = self.mirror_path(repo)
        async with self._mirror_lock(mirror):
            await self._sync_locked(repo, mirror, token, also)
        return mirror

    async def _sync_locked(self, repo: str, mirror: Path, token: str, also: tuple[str, ...]) -> None:
        if not (mirror / "HEAD").exists():
            await self._create(repo, mirror, token, also)
        else:
            await self._fetch(repo, mirror, token, also)

    def _refspecs(self, also: tuple[str, ...]) -> list[str]:
        specs = [f"+HEAD:{REMOTE}HEAD", f"+refs/heads/{SESSION_PREFIX}*:{REMOTE}{SESSION_PREFIX}*"]
        specs += [f"+refs/heads/{b}:{REMOTE}{b}" for b in also if not b.startswith(SESSION_PREFIX)]
        return specs

    async def _fetch(self, repo: str, mirror: Path, token: str, also: tuple[str, ...]) -> None:
        write_mirror_config(mirror)
        args = (
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--no-write-fetch-head",
            self.url(repo),
            *self._refspecs(also),
        )
        try:
            await self.git(*args, git_dir=mirror, token=token)
        except GitError as exc:
            if not exc.hit_lock:
                raise
            # Another process fetching into the same mirror: git's own ref locks
            # said so. Its fetch is as good as ours; one retry picks up the rest.
            log.info("fetch into %s hit a lock; retrying once", mirror, extra={"repo": repo})
            await asyncio.sleep(0.5)
            await self.git(*args, git_dir=mirror, token=token)

    async def _create(self, repo: str, mirror: Path, token: str, also: tuple[str, ...]) -> None:
        # Built beside its final place and renamed in, so a crash or a second
        # process never leaves (or sees) a half-fetched mirror.
        mirror.parent.mkdir(parents=True, exist_ok=True)
        tmp = mirror.parent / f".{mirror.name}.{uuid.uuid4().hex}"
        try:
            await self.git("init", "--quiet", "--bare", "--template=", str(tmp))
            await self._fetch(repo, tmp, token, also)
            try:
                os.rename(tmp, mirror)
            except OSError:
                if not (mirror / "HEAD").exists():
                    raise
                # Another process created it first; fetch into theirs instead.
                await self._fetch(repo, mirror, token, also)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- worktrees ---------------------------------------------------------

    async def open(
        self,
        repo: str,
        session_id: str,
        branch: str,
        token: str,
        *,
        start_from: str | None = None,
        also: tuple[str, ...] = (),
    ) -> Workspace:
        """A fresh worktree for the session on local ``branch``.

        It starts at the remote default branch's head, or at the remote branch
        ``start_from`` for a follow-up round on an existing branch. Branches in
        ``also`` are fetched too (a PR's base, for a merge).
        """
        if not _SESSION_RE.match(session_id):
            raise ValueError(f"not a usable session id: {session_id!r}")
        for name in (branch, start_from, *also):
            if name is not None:
                await self._check_branch(name)
        mirror = self.mirror_path(repo)
        path = self.workspaces / session_id
        async with self._mirror_lock(mirror):
            await self._sync_locked(repo, mirror, token, ((start_from,) if start_from else ()) + also)
            await self._remove_worktree(mirror, path)

            start = f"{REMOTE}{start_from}" if start_from else f"{REMOTE}HEAD"
            base_sha = await self._resolve(mirror, start)
            if base_sha is None:
                raise GitError(f"git rev-parse {start}", 1, f"{repo} has no branch {start_from or 'HEAD'}")
            remote_sha = await self._resolve(mirror, f"{REMOTE}{branch}")
            await self._evict_branch(mirror, branch, path)

            self.workspaces.mkdir(parents=True, exist_ok=True)
            await self.git(
                "worktree", "add", "--quiet", "--no-track", "-B", branch, str(path), base_sha, git_dir=mirror
            )
        log.info("workspace %s for %s on %s at %s", path, repo, branch, base_sha[:12], extra={"repo": repo})
        return Workspace(
            path=path,
            repo=repo,
            branch=branch,
            base_sha=base_sha,
            session_id=session_id,
            mirror=mirror,
            url=self.url(repo),
            remote_sha=remote_sha,
            git=self.git,
        )

    async def close(self, workspace: Workspace) -> None:
        """Remove the session's worktree and its local branch; safe to call twice."""
        async with self._mirror_lock(workspace.mirror):
            await self._remove_worktree(workspace.mirror, workspace.path)
            # Refused (and left alone) if another worktree has the branch checked out.
            await self.git("branch", "--quiet", "-D", workspace.branch, git_dir=workspace.mirror, check=False)

    async def _remove_worktree(self, mirror: Path, path: Path) -> None:
        """Remove a worktree, registered or not (a crashed run's leftovers included).

        Only with the mirror's lock held (`_mirror_lock`).
        """
        if path.exists():
            await self.git("worktree", "remove", "--force", "--force", str(path), git_dir=mirror, check=False)
            shutil.rmtree(path, ignore_errors=True)
        # Forgets the entries of worktrees whose directories are gone.
        await self.git("worktree", "prune", git_dir=mirror)

    async def _evict_branch(self, mirror: Path, branch: str, keep: Path) -> None:
        """Remove another worktree still holding ``branch`` (a crashed session's).

        The session store runs at most one round per branch at a time, so a
        worktree on the branch that is not ours belongs to a round that died.
        """
        listing = await self.git.out("worktree", "list", "--porcelain", "-z", git_dir=mirror)
        for record in listing.split("\0\0"):
            fields = dict(f.split(" ", 1) for f in record.split("\0") if " " in f)
            if fields.get("branch") == f"refs/heads/{branch}" and Path(fields["worktree"]) != keep:
                log.warning("removing stale worktree %s holding %s", fields["worktree"], branch)
                await self._remove_worktree(mirror, Path(fields["worktree"]))

    async def _check_branch(self, name: str) -> None:
        code, _, _ = await self.git("check-ref-format", f"refs/heads/{name}", check=False)
        if name.startswith("-") or code != 0:
            raise ValueError(f"not a usable branch name: {name!r}")

    async def _resolve(self, mirror: Path, ref: str) -> str | None:
        code, out, _ = await self.git(
            "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", git_dir=mirror, check=False
        )
        return out.decode().strip() if code == 0 else None

    # --- retention (bot/retention.py) ------------------------------------------

    def session_dirs(self) -> list[Path]:
        """The worktree directories under `workspaces/`, one per session that has one."""
        try:
            return sorted(p for p in self.workspaces.iterdir() if p.is_dir() and _SESSION_RE.match(p.name))
        except FileNotFoundError:
            return []

    def mirror_dirs(self) -> dict[str, Path]:
        """Each mirror by its repository (lower-case `owner/name`, as `mirror_path` names it)."""
        found: dict[str, Path] = {}
        try:
            owners = [p for p in self.mirrors.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except FileNotFoundError:
            return found
        for owner in owners:
            for mirror in owner.iterdir():
                if mirror.name.endswith(".git") and not mirror.name.startswith(".") and (mirror / "HEAD").exists():
                    found[f"{owner.name}/{mirror.name.removesuffix('.git')}"] = mirror
        return found

    async def remove_workspace(self, repo: str | None, path: Path, branch: str | None) -> None:
        """Remove a session's leftover worktree (its round died) and its local branch.

        With `repo` unknown (no session in the store names it), the directory
        goes and the mirrors forget it at their next `git worktree prune`.
        """
        if repo is None:
            await asyncio.to_thread(shutil.rmtree, path, True)
            return
        mirror = self.mirror_path(repo)
        if not (mirror / "HEAD").exists():
            await asyncio.to_thread(shutil.rmtree, path, True)
            return
        async with self._mirror_lock(mirror):
            await self._remove_worktree(mirror, path)
            if branch:
                await self.git("branch", "--quiet", "-D", branch, git_dir=mirror, check=False)

    async def remove_mirror(self, repo: str) -> None:
        """Remove a repository's mirror (the repository is no longer installed)."""
        mirror = self.mirror_path(repo)
        async with self._mirror_lock(mirror):
            if not mirror.exists():
                return
            # Out of the way in one rename, then deleted: nobody sees half a mirror.
            gone = mirror.parent / f".{mirror.name}.removed-{uuid.uuid4().hex}"
            os.rename(mirror, gone)
        # Its lock file stays: a process waiting on it must not end up holding
        # a lock on a file that a newcomer no longer sees.
        await asyncio.to_thread(shutil.rmtree, gone, True)

    async def maintain_mirror(self, repo: str) -> None:
        """`git worktree prune` (under the mirror's lock), then `git gc --auto`.

        gc runs outside the lock: git keeps unreachable objects for two weeks
        before pruning them and locks what it rewrites, so a fetch beside it
        is safe; `--auto` does nothing until loose objects or packs pile up.
        """
        mirror = self.mirror_path(repo)
        async with self._mirror_lock(mirror):
            await self.git("worktree", "prune", git_dir=mirror)
        await self.git("gc", "--auto", "--quiet", git_dir=mirror)
