"""One session's worktree: Compound's commits after the agent, the push, the diff.

How the agent's own commits are handled: not replayed (`rebase --exec` would
stop on conflicts as soon as a forbidden path is dropped from one commit and a
later commit touches it) but rebuilt from their snapshots. For each commit on
the agent's first-parent line since the round's base, its tree is taken with
every forbidden path put back as it was at the base (in a scratch index), and
a new commit of that tree is written with `git commit-tree` — the agent's
message plus the trailers, the App's identity as author and committer.
Commits left empty by that are dropped. What the agent left uncommitted
(`git add -A`, forbidden paths restored) becomes one more commit on top. The
pushed history therefore contains only Compound's commits, on top of the base:
no forbidden path in any of them, every one with trailers. If the agent's HEAD
does not descend from the base (it reset or checked out elsewhere), its
commits are ignored and its working tree is taken as it stands.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.agents.base import AGENT_OBJECTS
from bot.workspace.git import Git, GitError, put_file, write_mirror_config

log = logging.getLogger("compound.workspace")


@dataclass(frozen=True)
class CommitIdentity:
    name: str
    email: str


@dataclass(frozen=True)
class Trailers:
    model: str
    backend: str
    session: str
    co_author: CommitIdentity | None = None

    def arguments(self) -> list[str]:
        """`--trailer` options for `git interpret-trailers`."""
        pairs = [("Agent-Model", self.model), ("Agent-Backend", self.backend), ("Agent-Session", self.session)]
        if self.co_author is not None:
            pairs.append(("Co-authored-by", f"{self.co_author.name} <{self.co_author.email}>"))
        # A newline in a value would end the trailer and start a forged one.
        return [f"--trailer={key}: {' '.join(value.split())}" for key, value in pairs]


def _is_marker(line: bytes) -> bool:
    """A line git writes around a conflict: `<<<<<<< ours`, `=======`, `>>>>>>> theirs`."""
    line = line.rstrip(b"\r")
    if line == b"=======":
        return True
    return (line.startswith(b"<<<<<<<") or line.startswith(b">>>>>>>")) and (len(line) == 7 or line[7:8] == b" ")


def _paths(out: bytes) -> list[str]:
    return [p for p in out.decode(errors="surrogateescape").split("\0") if p]


def _only_files_and_directories(root: Path) -> None:
    """Remove every symlink, fifo, socket and device under `root`, never following a link."""
    for _, dirs, files, fd in os.fwalk(root):
        for name in dirs + files:  # a symlink to a directory is listed in `dirs`, and not walked into
            try:
                kind = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                if not (stat.S_ISDIR(kind) or stat.S_ISREG(kind)):
                    os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                continue


# How recent a file's modification may be and still be taken for racily
# clean by git (whose stat comparison goes by whole seconds): twice that, to be sure.
RACY_NS = 2_000_000_000


def _backdate(root: Path, since_ns: int) -> None:
    """Move the modification time of every regular file under `root` (not its
    `.git`) changed after `since_ns` back by RACY_NS; never following a link."""
    for _, dirs, files, fd in os.fwalk(root):
        if ".git" in dirs:
            dirs.remove(".git")
        for name in files:
            if name == ".git":  # a worktree's link to its git dir
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_mtime_ns > since_ns:
                    os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns - RACY_NS), dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


@dataclass
class Workspace:
    """A session's worktree on its local branch, started at ``base_sha``."""

    path: Path
    repo: str
    branch: str
    base_sha: str
    session_id: str
    mirror: Path
    url: str
    remote_sha: str | None  # the remote branch's head when the round started (None: new branch)
    git: Git = field(repr=False)

    @property
    def git_dir(self) -> Path:
        # Named explicitly rather than found through `<path>/.git`, which the
        # agent can rewrite or delete (git would then find an enclosing repo).
        return self.mirror / "worktrees" / self.path.name

    @property
    def agent_objects(self) -> Path:
        """Where the sandboxed agent's git writes objects (the mirror is read-only to it)."""
        return self.git_dir / AGENT_OBJECTS

    async def hand_to_agent(self) -> None:
        """Ready the worktree for an agent run: HEAD detached at the branch's head.

        In bwrap the agent's git cannot write the shared mirror's refs, so a
        commit of its own moves only this worktree's HEAD; `commit()` takes it
        from there and puts the branch back.
        """
        self.agent_objects.mkdir(exist_ok=True)
        head = await self._out("rev-parse", "--verify", "HEAD^{commit}")
        await self._run("update-ref", "--no-deref", "-m", "compound: agent run", "HEAD", head)

    async def settle_index(self) -> None:
        """The index's stat data brought up to date with the worktree, by content.

        Called once the worktree was lent to the agent's user and before its
        git dir is (bot/agents/sandbox.py). The chown changed every file's
        owner and ctime, so the agent's `git add` would hash every file of the
        checkout again, and, the mirror being read-only to it, write each blob
        again beside its index: a copy of the repository's blobs per round,
        which Compound then packs back into the mirror. A file checked out
        less than a second before the index was written is "racily clean"
        (git cannot tell a change in that second from none) and is rehashed
        the same way, so those get their modification time moved two seconds
        back first: nothing but Compound has written them since, and the
        refresh compares every changed-looking file by content, so a real
        change is never taken for none. Between two tries of one round the
        last try's agent may have written the git dir, so its metadata is
        repaired first, as before any other git command of Compound's.
        """
        try:
            self._repair_metadata()
            await asyncio.to_thread(_backdate, self.path, time.time_ns() - RACY_NS)
            await self._run("update-index", "-q", "--unmerged", "--ignore-submodules", "--refresh")
        except (GitError, OSError) as exc:  # only the cost of the round rises: its commit repairs what it must
            log.warning("the index of %s could not be settled for the agent (%s)", self.session_id, exc)

    async def _take_back(self) -> None:
        """Metadata repaired, and the objects the agent's git wrote taken into the mirror.

        They go through a pack that the mirror's git indexes itself, so every
        object is stored under the name its content hashes to: an object the
        agent named falsely cannot stand in for another session's.
        """
        self._repair_metadata()
        objects = self.agent_objects
        if objects.is_symlink():
            raise GitError("git agent objects", 1, f"{objects} was replaced by a link; not trusting it")
        if not objects.is_dir():
            return
        for name in ("info/alternates", "info/http-alternates"):  # only its own objects, nothing they point to
            (objects / name).unlink(missing_ok=True)
        own = {"GIT_OBJECT_DIRECTORY": str(objects), "GIT_ALTERNATE_OBJECT_DIRECTORIES": ""}
        names = await self._run("cat-file", "--batch-all-objects", "--batch-check=%(objectname)", env=own)
        if names.strip():
            pack = await self._run("pack-objects", "--quiet", "--stdout", env=own, stdin=names)
            await self._run("unpack-objects", "-q", stdin=pack)
        shutil.rmtree(objects, ignore_errors=True)

    def _repair_metadata(self) -> None:
        """Put back what git keeps about this worktree, whatever the agent wrote there.

        Compound's git reads the mirror's config and the worktree's git dir;
        the agent can write both (its own git needs them). So before every
        command of Compound's that commits or pushes: the mirror's fixed config,
        no alternates, and in the worktree's git dir the right `commondir` and
        `gitdir`, no `config.worktree`, and nothing but plain files and
        directories (a symlinked `logs/HEAD` would have Compound's git append
        its reflog wherever it points; a fifo would hang it). `GIT_COMMON_DIR`
        is set as well.
        """
        write_mirror_config(self.mirror)
        if self.git_dir.is_symlink() or not self.git_dir.is_dir():
            raise GitError("git worktree metadata", 1, f"{self.git_dir} was replaced; not trusting it")
        _only_files_and_directories(self.git_dir)
        put_file(self.git_dir / "commondir", "../..\n")
        put_file(self.git_dir / "gitdir", f"{self.path / '.git'}\n")
        (self.git_dir / "config.worktree").unlink(missing_ok=True)

    async def _run(self, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> bytes:
        _, out, _ = await self.git(
            *args,
            cwd=self.path,
            git_dir=self.git_dir,
            common_dir=self.mirror,
            work_tree=self.path,
            env=env,
            stdin=stdin,
        )
        return out

    async def _out(self, *args: str, env: dict[str, str] | None = None) -> str:
        return (await self._run(*args, env=env)).decode().strip()

    # --- commit ------------------------------------------------------------

    async def commit(
        self,
        message: str,
        author: CommitIdentity,
        trailers: Trailers,
        is_forbidden: Callable[[str], bool],
    ) -> str | None:
        """Commit the agent's work on the branch; the new head sha, or None if nothing to commit."""
        await self._take_back()
        identity = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        head = await self._agent_head()
        parent, parent_tree = self.base_sha, await self._out("rev-parse", f"{self.base_sha}^{{tree}}")

        for sha in await self._agent_commits(head):
            tree = await self._clean_tree(sha, is_forbidden)
            if tree == parent_tree:
                continue
            own = (await self._run("log", "-1", "--format=%B", sha)).decode(errors="replace").strip()
            parent = await self._commit_tree(tree, parent, own or message, trailers, identity)
            parent_tree = tree

        await self._run("add", "--all")
        await self._restore(await self._staged_changes(), is_forbidden)
        tree = await self._out("write-tree")
        if tree != parent_tree:
            parent = await self._commit_tree(tree, parent, message, trailers, identity)

        # The branch (checked out again, whatever the agent switched to) ends at
        # our last commit; the index already holds its tree.
        await self._run("update-ref", "-m", "compound: commit", f"refs/heads/{self.branch}", parent)
        await self._run("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        return None if parent == self.base_sha else parent

    async def _agent_head(self) -> str | None:
        code, out, _ = await self.git(
            "rev-parse",
            "--verify",
            "--quiet",
            "HEAD^{commit}",
            cwd=self.path,
            git_dir=self.git_dir,
            common_dir=self.mirror,
            work_tree=self.path,
            check=False,
        )
        return out.decode().strip() if code == 0 else None

    async def _agent_commits(self, head: str | None) -> list[str]:
        if head is None or head == self.base_sha:
            return []
        code, _, _ = await self.git(
            "merge-base",
            "--is-ancestor",
            self.base_sha,
            head,
            git_dir=self.git_dir,
            common_dir=self.mirror,
            check=False,
        )
        if code != 0:
            return []
        out = await self._out("rev-list", "--reverse", "--first-parent", f"{self.base_sha}..{head}")
        return out.split()

    async def _clean_tree(self, commit: str, is_forbidden: Callable[[str], bool]) -> str:
        """The tree of ``commit`` with every forbidden path as it was at the base."""
        changed = _paths(await self._run("diff-tree", "-r", "-z", "--no-renames", "--name-only", self.base_sha, commit))
        forbidden = [p for p in changed if is_forbidden(p)]
        if not forbidden:
            return await self._out("rev-parse", f"{commit}^{{tree}}")
        with tempfile.TemporaryDirectory(dir=self.git.home) as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
            await self._run("read-tree", commit, env=env)
            await self._run("update-index", "-z", "--index-info", env=env, stdin=await self._base_entries(forbidden))
            return await self._out("write-tree", env=env)

    async def _staged_changes(self) -> list[str]:
        return _paths(await self._run("diff", "--cached", "--name-only", "-z", "--no-renames", self.base_sha))

    async def _restore(self, changed: list[str], is_forbidden: Callable[[str], bool], base: str | None = None) -> None:
        """Put forbidden paths back as they were at the base, in the index and on disk."""
        forbidden = [p for p in changed if is_forbidden(p)]
        if not forbidden:
            return
        base = base or self.base_sha
        await self._run("update-index", "-z", "--index-info", stdin=await self._base_entries(forbidden, base))
        in_base = set(_paths(await self._run("ls-tree", "-z", "--full-tree", "--name-only", base, "--", *forbidden)))
        if in_base:
            await self._run(
                "checkout-index",
                "--force",
                "-z",
                "--stdin",
                stdin=b"".join(p.encode(errors="surrogateescape") + b"\0" for p in in_base),
            )
        root = self.path.resolve()
        for name in set(forbidden) - in_base:
            target = self.path / name
            # Never follow a symlinked directory out of the worktree.
            if target.parent.resolve().is_relative_to(root) and (target.is_symlink() or target.is_file()):
                target.unlink()

    async def _base_entries(self, paths: list[str], base: str | None = None) -> bytes:
        """`update-index --index-info` input: removals first, then the base's entries."""
        listed = await self._run("ls-tree", "-z", "--full-tree", base or self.base_sha, "--", *paths)
        entries = {}
        for record in listed.split(b"\0"):
            if record:
                meta, _, name = record.partition(b"\t")
                mode, _, sha = meta.split(b" ")
                entries[name] = b"%s %s\t%s\0" % (mode, sha, name)
        zero = b"0" * len(self.base_sha)
        removals = b"".join(b"0 %s\t%s\0" % (zero, p.encode(errors="surrogateescape")) for p in paths)
        return removals + b"".join(entries.values())

    async def _commit_tree(
        self, tree: str, parent: str, message: str, trailers: Trailers, identity: dict[str, str]
    ) -> str:
        text = message.rstrip("\n") + "\n"
        with_trailers = await self._run(
            "interpret-trailers",
            "--no-divider",
            "--if-exists=addIfDifferent",
            *trailers.arguments(),
            stdin=text.encode(),
        )
        _, out, _ = await self.git(
            "commit-tree",
            tree,
            "-p",
            parent,
            "-F",
            "-",
            git_dir=self.git_dir,
            common_dir=self.mirror,
            env=identity,
            stdin=with_trailers,
        )
        return out.decode().strip()

    # --- merging the base -----------------------------------------------------

    async def resolve(self, ref: str) -> str | None:
        code, out, _ = await self.git(
            "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", git_dir=self.mirror, check=False
        )
        return out.decode().strip() if code == 0 else None

    async def merge(self, other: str, author: CommitIdentity) -> list[str]:
        """Start merging commit ``other`` into the branch, without committing.

        The working tree then holds the merge; the answer is the paths git could
        not merge (left with conflict markers), empty when the merge is clean.
        """
        self._repair_metadata()
        identity = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        code, _, err = await self.git(
            "merge",
            "--no-commit",
            "--no-ff",
            "--no-edit",
            "--no-verify",
            other,
            cwd=self.path,
            git_dir=self.git_dir,
            common_dir=self.mirror,
            work_tree=self.path,
            env=identity,
            check=False,
        )
        conflicted = _paths(await self._run("diff", "--name-only", "-z", "--diff-filter=U"))
        if code != 0 and not conflicted:
            raise GitError(f"git merge {other[:12]}", code, err)
        return conflicted

    async def markers_left(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` that still hold a conflict marker line."""
        root = self.path.resolve()
        left = []
        for name in paths:
            target = self.path / name
            try:
                if not target.resolve().is_relative_to(root) or not target.is_file():
                    continue
                data = target.read_bytes()
            except OSError:
                continue
            if any(_is_marker(line) for line in data.splitlines()):
                left.append(name)
        return left

    async def commit_merge(
        self,
        message: str,
        author: CommitIdentity,
        trailers: Trailers,
        is_forbidden: Callable[[str], bool],
        other: str,
    ) -> str:
        """Commit the working tree as the merge of the branch and ``other``; the new head.

        Forbidden paths take ``other``'s version (the base's), so the pull
        request never changes them, whatever the agent did while resolving.
        """
        await self._take_back()
        identity = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        await self._run("add", "--all")
        changed = _paths(await self._run("diff", "--cached", "--name-only", "-z", "--no-renames", other))
        await self._restore(changed, is_forbidden, base=other)
        tree = await self._out("write-tree")
        text = message.rstrip("\n") + "\n"
        with_trailers = await self._run(
            "interpret-trailers",
            "--no-divider",
            "--if-exists=addIfDifferent",
            *trailers.arguments(),
            stdin=text.encode(),
        )
        _, out, _ = await self.git(
            "commit-tree",
            tree,
            "-p",
            self.base_sha,
            "-p",
            other,
            "-F",
            "-",
            git_dir=self.git_dir,
            common_dir=self.mirror,
            env=identity,
            stdin=with_trailers,
        )
        head = out.decode().strip()
        await self._run("update-ref", "-m", "compound: merge", f"refs/heads/{self.branch}", head)
        await self._run("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        return head

    # --- push --------------------------------------------------------------

    async def push(self, token: str) -> str:
        """Push the branch; its head sha. A fast-forward unless the remote branch must be replaced."""
        self._repair_metadata()
        ref = f"refs/heads/{self.branch}"
        head = await self.git.out("rev-parse", "--verify", f"{ref}^{{commit}}", git_dir=self.mirror)
        args = ["push", "--porcelain", "--no-verify"]
        if self.remote_sha is not None and self.remote_sha != head:
            code, _, _ = await self.git(
                "merge-base", "--is-ancestor", self.remote_sha, head, git_dir=self.mirror, check=False
            )
            if code != 0:
                # A new round over a branch left by an earlier session: replace
                # it, but only if it is still what we saw when the round began.
                args.append(f"--force-with-lease={ref}:{self.remote_sha}")
        code, out, err = await self.git(*args, self.url, f"{head}:{ref}", git_dir=self.mirror, token=token, check=False)
        if code != 0:
            rejected = " ".join(line for line in out.decode(errors="replace").splitlines() if line.startswith("!"))
            raise GitError(f"git push {self.url} {ref}", code, "\n".join(filter(None, [err, rejected])))
        await self.git("update-ref", f"refs/remotes/origin/{self.branch}", head, git_dir=self.mirror)
        self.remote_sha = head
        return head

    # --- what changed --------------------------------------------------------

    async def changed_files(self) -> list[str]:
        """Paths changed between the base and the branch head (added, modified, deleted)."""
        return _paths(await self._run("diff", "--name-only", "-z", "--no-renames", self.base_sha, "HEAD"))

    async def changes(self) -> tuple[list[str], int, int]:
        """(paths changed, insertions, deletions) between the base and the branch head: one `git diff`."""
        out = await self._run("diff", "--numstat", "-z", "--no-renames", self.base_sha, "HEAD")
        paths: list[str] = []
        insertions = deletions = 0
        for record in out.split(b"\0"):
            if not record:
                continue
            added, deleted, path = record.split(b"\t", 2)
            paths.append(path.decode(errors="surrogateescape"))
            insertions += int(added) if added.isdigit() else 0  # "-" for binary files
            deletions += int(deleted) if deleted.isdigit() else 0
        return paths, insertions, deletions

    async def diffstat(self) -> tuple[int, int, int]:
        """(files changed, insertions, deletions) between the base and the branch head."""
        paths, insertions, deletions = await self.changes()
        return len(paths), insertions, deletions
