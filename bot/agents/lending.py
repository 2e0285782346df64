"""Lending a worktree to AGENT_USER for one run, and taking it back (docs/sandbox.md).

When the service is root, agents run as AGENT_USER (`user` mode, or bubblewrap
under a root service). For one run:

- the worktree, the run's scratch directory and the worktree's own git dir in
  the mirror (`worktrees/<id>/`: its index, `HEAD`, the agent's objects) are
  chowned to AGENT_USER;
- the mirror is opened to AGENT_USER's group read-only (directories 0750,
  files 0640; `worktrees/` 0710, so no other session's git dir), so the
  agent's own git reads the history. It stays open while any of its worktrees
  is lent and is closed again (0700/0600) after the last one.

Taking back assumes the agent may still be at work (a process that escaped
the kill): every file is opened without following links and changed through
its descriptor, so a path swapped for a symlink never turns a chown or chmod
onto something else. Files hard-linked from elsewhere are removed (Compound's
`git add` would otherwise commit, and so publish, what they point at), and so
are fifos, sockets and devices; no setuid, setgid or group/other write bit is
left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

# Bits a file taken back never keeps: set-id, and write for anyone but its owner.
UNSAFE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH


def lend(root: Path, uid: int, gid: int) -> None:
    """chown -R `root` to the agent (the service owns it: nothing in it moves meanwhile)."""
    for _, dirs, files, fd in os.fwalk(root):
        os.fchown(fd, uid, gid)
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)


def take_back(root: Path, uid: int, gid: int) -> None:
    """Make `root` the service's again, safely against whatever the agent left or still does in it."""
    if not root.is_dir() or root.is_symlink():
        return
    for _, dirs, files, fd in os.fwalk(root):
        os.fchown(fd, uid, gid)
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & ~UNSAFE_BITS)
        for name in dirs + files:  # symlinks to directories are listed in `dirs`, never walked into
            with contextlib.suppress(FileNotFoundError):
                _take_back_entry(name, fd, uid, gid)


def _take_back_entry(name: str, parent: int, uid: int, gid: int) -> None:
    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        return  # walked into, with its own descriptor
    if stat.S_ISLNK(info.st_mode):
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        return
    if not stat.S_ISREG(info.st_mode):
        os.unlink(name, dir_fd=parent)  # a fifo, socket or device: nothing a pull request holds
        return
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=parent)
    except OSError:  # swapped for a symlink or a fifo since: whatever it is now, it goes
        os.unlink(name, dir_fd=parent)
        return
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or opened.st_nlink > 1:
            os.unlink(name, dir_fd=parent)  # a hard link in from outside the worktree
            return
        os.fchown(fd, uid, gid)
        os.fchmod(fd, stat.S_IMODE(opened.st_mode) & ~UNSAFE_BITS)
    finally:
        os.close(fd)


# -- the mirror --------------------------------------------------------------------


@contextlib.contextmanager
def mirror_lock(mirror: Path) -> Iterator[None]:
    """One opening or closing of `mirror` at a time, across the service's processes."""
    lock = os.open(mirror.parent / f".{mirror.name}.lend", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def open_mirror(mirror: Path, gid: int, *, traverse: bool) -> None:
    """Let `gid` read the mirror (not write it, not see other sessions' git dirs).

    `traverse`: also let anyone pass through (not list) the directories on the
    way to it, up to the first that already lets them (user mode's DATA_DIR).
    """
    if traverse:
        for parent in mirror.parents:
            mode = stat.S_IMODE(parent.stat().st_mode)
            if mode & stat.S_IXOTH:
                break
            parent.chmod(mode | stat.S_IXOTH)
    _set_mirror_modes(mirror, gid, group_bits=0o050)


def close_mirror(mirror: Path, gid: int, lent_uid: int) -> bool:
    """Close the mirror to the agents' group, unless another of its worktrees is still lent; whether it closed."""
    try:
        with os.scandir(mirror / "worktrees") as entries:
            lent = [
                e
                for e in entries
                if e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_uid == lent_uid
            ]
        if lent:
            return False
    except FileNotFoundError:
        pass
    _set_mirror_modes(mirror, gid, group_bits=0)
    return True


def _set_mirror_modes(mirror: Path, gid: int, group_bits: int) -> None:
    """Owner bits kept; the group gets `group_bits` (read, and pass for directories); others nothing.

    The mirror is the service's and no agent can write it, so paths are safe
    to use here; worktrees' git dirs (lent ones are the agent's) are left out.
    """
    me = os.geteuid()
    for top, dirs, files, fd in os.fwalk(mirror):
        here = os.fstat(fd)
        if here.st_uid != me:
            dirs[:] = []
            continue
        inside_worktrees = Path(top) == mirror / "worktrees"
        bits = (group_bits & 0o010) if inside_worktrees else group_bits  # pass, do not list
        _set_modes(fd, here, gid, bits)
        if inside_worktrees:
            dirs[:] = []
            continue
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_uid == me:
                    own = stat.S_IMODE(info.st_mode) & 0o700
                    wanted = own | (group_bits & 0o040) | (group_bits & 0o010 if own & 0o100 else 0)
                    if info.st_gid != gid:
                        os.chown(name, -1, gid, dir_fd=fd, follow_symlinks=False)
                    if wanted != stat.S_IMODE(info.st_mode):
                        os.chmod(name, wanted, dir_fd=fd)


def _set_modes(fd: int, info: os.stat_result, gid: int, group_bits: int) -> None:
    wanted = (stat.S_IMODE(info.st_mode) & 0o700) | group_bits
    if info.st_gid != gid:
        os.fchown(fd, -1, gid)
    if wanted != stat.S_IMODE(info.st_mode):
        os.fchmod(fd, wanted)


# -- at start, in user mode ----------------------------------------------------------


def harden_data_dir(data_dir: Path, *, entries: bool = True) -> None:
    """In user mode: DATA_DIR can be passed through (to a worktree, to a lent mirror), not read.

    DATA_DIR, `workspaces/`, `mirrors/` and its owners' directories become
    passable only (0711); every mirror and worktree, and everything else in
    DATA_DIR (the database, `events.jsonl`, lock files), private to the
    service's user. Whatever an earlier run under another umask left open.
    `entries=False`: not the mirrors and worktrees (a run of another worker
    is using one of them).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    passable = [data_dir / "workspaces", data_dir / "mirrors"]
    for path in (data_dir, *passable):
        path.mkdir(exist_ok=True)
        path.chmod(0o711)
    _private_entries(data_dir, skip=passable)
    if not entries:
        return
    _private_entries(data_dir / "workspaces")
    for owner in (data_dir / "mirrors").iterdir():
        if owner.is_dir() and not owner.is_symlink():
            owner.chmod(0o711)
            _private_entries(owner)
        elif not owner.is_symlink():
            owner.chmod(stat.S_IMODE(owner.lstat().st_mode) & 0o700)


def lent_leftovers(data_dir: Path, uid: int) -> list[Path]:
    """Worktrees and worktree git dirs still owned by the agent's `uid`: lent when a service died.

    Only meaningful while no run is lent anywhere (the caller holds the
    host's turn): then each of these is a crash's leftover.
    """
    found = []
    candidates = list((data_dir / "workspaces").glob("*"))
    candidates += list((data_dir / "mirrors").glob("*/*/worktrees/*"))
    for path in candidates:
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == uid:
                found.append(path)
    return found


def make_private(files: Iterable[Path | None], streams: Iterable[int] = ()) -> None:
    """Those of `files` that exist, and the service's output `streams` when they are files (its log): 0600.

    Only what the service's user owns (a file an operator shares on purpose
    is theirs to keep open): `.env`, the credentials file setup wrote, the
    App's private key.
    """
    me = os.geteuid()
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            if path is not None and not path.is_symlink() and path.is_file() and path.stat().st_uid == me:
                path.chmod(stat.S_IMODE(path.stat().st_mode) & 0o600)
    for fd in streams:
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == me:
                os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o600)


def _private_entries(directory: Path, skip: list[Path] | None = None) -> None:
    for entry in directory.iterdir():
        if entry in (skip or ()) or entry.is_symlink():
            continue
        entry.chmod(stat.S_IMODE(entry.lstat().st_mode) & 0o700)
