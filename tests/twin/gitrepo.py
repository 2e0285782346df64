"""Reading and creating the twin's bare git repositories."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Octocat",
    "GIT_AUTHOR_EMAIL": "octocat@github.com",
    "GIT_COMMITTER_NAME": "GitHub",
    "GIT_COMMITTER_EMAIL": "noreply@github.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


class GitError(Exception):
    pass


def create_bare(path: Path, default_branch: str, files: dict[str, str | bytes]) -> None:
    """A bare repository with one commit holding ``files`` on ``default_branch``."""
    env = {**os.environ, **GIT_ENV}
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path)],
        check=True,
        env=env,
    )
    if not files:
        return
    with tempfile.TemporaryDirectory() as work:
        for name, content in files.items():
            target = Path(work, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            target.write_bytes(data)
        index = Path(work).parent / f".twin-index-{os.getpid()}-{id(files)}"
        env["GIT_INDEX_FILE"] = str(index)
        base = ["git", f"--git-dir={path}", f"--work-tree={work}"]
        try:
            subprocess.run([*base, "add", "--all"], check=True, env=env)
            subprocess.run([*base, "commit", "--quiet", "-m", "Initial commit"], check=True, env=env)
        finally:
            index.unlink(missing_ok=True)


async def git(bare: Path, *args: str, check: bool = True) -> bytes:
    """Run git on a bare repository without blocking the loop; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        f"--git-dir={bare}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **GIT_ENV},
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out


async def refs(bare: Path) -> dict[str, str]:
    """{refname: sha} of every ref."""
    out = await git(bare, "for-each-ref", "--format=%(refname) %(objectname)")
    pairs = (line.split(" ", 1) for line in out.decode().splitlines())
    return {name: sha for name, sha in pairs}


async def resolve(bare: Path, rev: str) -> str | None:
    """The commit sha ``rev`` names (branch, tag, ref or sha), or None."""
    out = await git(bare, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    sha = out.decode().strip()
    return sha or None


@dataclass
class Commit:
    sha: str
    tree: str
    parents: list[str]
    author_name: str
    author_email: str
    author_date: str
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


COMMIT_FORMAT = "%H%n%T%n%P%n%an%n%ae%n%aI%n%cn%n%ce%n%cI%n%B"


async def commit(bare: Path, sha: str) -> Commit:
    return _parse_commit(await git(bare, "show", "-s", f"--format={COMMIT_FORMAT}", sha))


def commit_sync(bare: Path, sha: str) -> Commit:
    """:func:`commit`, blocking (webhook payload builders are synchronous)."""
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "show", "-s", f"--format={COMMIT_FORMAT}", sha],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        check=True,
    )
    return _parse_commit(out.stdout)


def _parse_commit(out: bytes) -> Commit:
    lines = out.decode().split("\n", 9)
    return Commit(
        sha=lines[0],
        tree=lines[1],
        parents=lines[2].split(),
        author_name=lines[3],
        author_email=lines[4],
        author_date=lines[5],
        committer_name=lines[6],
        committer_email=lines[7],
        committer_date=lines[8],
        message=lines[9].rstrip("\n"),
    )


@dataclass
class Entry:
    mode: str
    type: str
    sha: str
    size: int | None
    path: str


async def ls_tree(bare: Path, rev: str, path: str) -> list[Entry]:
    """The entries at ``path`` (a file gives itself; a directory its children)."""
    path = path.strip("/")
    spec = f"{path}/" if path and await _is_dir(bare, rev, path) else path
    args = ["ls-tree", "--long", "-z", rev]
    if spec:
        args += ["--", spec]
    out = await git(bare, *args, check=False)
    entries = []
    for record in out.decode().split("\0"):
        if not record:
            continue
        meta, name = record.split("\t", 1)
        mode, kind, sha, size = meta.split()
        entries.append(Entry(mode, kind, sha, None if size == "-" else int(size), name))
    return entries


async def _is_dir(bare: Path, rev: str, path: str) -> bool:
    out = await git(bare, "cat-file", "-t", f"{rev}:{path}", check=False)
    return out.strip() == b"tree"


async def blob(bare: Path, sha: str) -> bytes:
    return await git(bare, "cat-file", "blob", sha)


async def diff_files(bare: Path, base: str, head: str) -> list[dict[str, object]]:
    """Per-file status, counts and patch between ``base`` and ``head`` (three dots)."""
    merge_base = (await git(bare, "merge-base", base, head, check=False)).decode().strip() or base
    numstat = (await git(bare, "diff", "--numstat", "-z", "--no-renames", merge_base, head)).decode()
    status = (await git(bare, "diff", "--name-status", "-z", "--no-renames", merge_base, head)).decode()
    states = status.split("\0")
    kinds = {states[i + 1]: states[i] for i in range(0, len(states) - 1, 2)}
    files = []
    for record in numstat.split("\0"):
        if not record:
            continue
        added, deleted, name = record.split("\t", 2)
        patch = (await git(bare, "diff", merge_base, head, "--", name)).decode(errors="replace")
        hunks = patch[patch.find("\n@@") + 1 :] if "\n@@" in patch else ""
        files.append(
            {
                "filename": name,
                "status": {"A": "added", "D": "removed", "M": "modified"}.get(kinds.get(name, "M"), "changed"),
                "additions": int(added) if added != "-" else 0,
                "deletions": int(deleted) if deleted != "-" else 0,
                "patch": hunks,
            }
        )
    return files


def resolve_sync(bare: Path, rev: str) -> str | None:
    """:func:`resolve`, blocking: for set-up code outside the event loop's hot path."""
    found = subprocess.run(
        ["git", f"--git-dir={bare}", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
    )
    return found.stdout.decode().strip() or None


def commit_files(
    bare: Path,
    branch: str,
    files: dict[str, str | bytes | None],
    message: str,
    start: str | None = None,
) -> str:
    """Commit ``files`` (None deletes) onto ``branch`` directly in the bare repo; the sha.

    The branch starts from ``start`` (a branch or sha) when it does not exist yet.
    """
    env = {**os.environ, **GIT_ENV}

    def run(*args: str, data: bytes | None = None) -> str:
        out = subprocess.run(["git", f"--git-dir={bare}", *args], input=data, env=env, check=True, capture_output=True)
        return out.stdout.decode().strip()

    parent = resolve_sync(bare, f"refs/heads/{branch}") or (resolve_sync(bare, start) if start else None)
    with tempfile.TemporaryDirectory() as work:
        env["GIT_INDEX_FILE"] = str(Path(work, "index"))
        if parent:
            run("read-tree", parent)
        lines = []
        for name, content in files.items():
            if content is None:  # mode 0 removes the entry (no work tree needed)
                lines.append(f"0 {'0' * 40}\t{name}\n")
                continue
            data = content.encode() if isinstance(content, str) else content
            blob_sha = run("hash-object", "-w", "--stdin", data=data)
            lines.append(f"100644 {blob_sha}\t{name}\n")
        run("update-index", "--index-info", data="".join(lines).encode())
        tree = run("write-tree")
    sha = run("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message)
    run("update-ref", f"refs/heads/{branch}", sha)
    return sha


def refs_sync(bare: Path) -> dict[str, str]:
    """:func:`refs`, blocking."""
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "for-each-ref", "--format=%(refname) %(objectname)"],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        check=True,
    ).stdout
    pairs = (line.split(" ", 1) for line in out.decode().splitlines())
    return {name: sha for name, sha in pairs}


def branch_of(bare: Path, sha: str) -> str | None:
    """A branch whose tip is ``sha`` (the default one first), or None."""
    heads = [
        n.removeprefix("refs/heads/") for n, s in refs_sync(bare).items() if s == sha and n.startswith("refs/heads/")
    ]
    return heads[0] if heads else None


async def merges_cleanly(bare: Path, base: str, head: str) -> bool | None:
    """Whether ``head`` merges into ``base`` without conflicts (real ``git merge-tree``).

    None when git cannot tell (no common history, a missing commit).
    """
    proc = await asyncio.create_subprocess_exec(
        "git",
        f"--git-dir={bare}",
        "merge-tree",
        "--write-tree",
        "--name-only",
        base,
        head,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **GIT_ENV},
    )
    code = await proc.wait()
    return {0: True, 1: False}.get(code)


async def export_tree(bare: Path, sha: str, dest: Path) -> None:
    """The files of commit ``sha`` into ``dest`` (``git archive | tar -x``)."""
    dest.mkdir(parents=True, exist_ok=True)
    read, write = os.pipe()
    try:
        archive = await asyncio.create_subprocess_exec(
            "git",
            f"--git-dir={bare}",
            "archive",
            "--format=tar",
            sha,
            stdout=write,
            env={**os.environ, **GIT_ENV},
        )
    finally:
        os.close(write)
    try:
        untar = await asyncio.create_subprocess_exec("tar", "-x", "-C", str(dest), stdin=read)
    finally:
        os.close(read)
    codes = (await archive.wait(), await untar.wait())
    if codes != (0, 0):
        raise GitError(f"exporting {sha}: git archive {codes[0]}, tar {codes[1]}")
