"""Every process an agent started, found through /proc, so all of them can be ended.

Signalling the agent's process group is not enough: Claude Code runs each Bash
tool call in a session of its own (detached), out of the group. So the tree
below the agent is scanned while it runs (a child orphaned later is still
remembered), and each process seen is signalled along with the group. A
process is known by its pid and its start time, so a pid the kernel has since
given to another program is never signalled.

Without /proc (not Linux) only the group is signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, start time) of a live pid, None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = text.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


# Children by parent pid, start times by pid, members by process group.
Snapshot = tuple[dict[int, list[int]], dict[int, int], dict[int, list[int]]]


def snapshot() -> Snapshot:
    """One pass over /proc (a few milliseconds for a few hundred processes)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    groups: dict[int, list[int]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(_PROC):
            if not name.isdigit():
                continue
            stat = _stat(int(name))
            if stat is None:
                continue
            pid, (ppid, pgid, start) = int(name), stat
            starts[pid] = start
            children.setdefault(ppid, []).append(pid)
            groups.setdefault(pgid, []).append(pid)
    return children, starts, groups


class ProcessTree:
    """The agent's process group and every descendant seen so far."""

    def __init__(self, leader: int) -> None:
        self.leader = leader  # also the group id: the agent starts a new session
        self.known: dict[int, int] = {}  # pid -> start time
        self.available = _PROC.is_dir()

    def scan(self, processes: Snapshot | None = None) -> None:
        """Remember the live descendants of the leader and of every process known."""
        if not self.available:
            return
        children, starts, groups = processes if processes is not None else snapshot()
        for pid in groups.get(self.leader, ()):
            self.known.setdefault(pid, starts[pid])
        roots = [pid for pid, start in self.known.items() if starts.get(pid) == start]
        seen: set[int] = set()
        while roots:
            pid = roots.pop()
            for child in children.get(pid, ()):
                if child not in seen:
                    seen.add(child)
                    self.known.setdefault(child, starts[child])
                    roots.append(child)

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.leader, sig)
        for pid, start in list(self.known.items()):
            stat = _stat(pid)
            if stat is None or stat[2] != start:
                del self.known[pid]  # gone (or its pid reused)
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def alive(self) -> bool:
        """Whether any process seen is still running (the group itself aside)."""
        return any((stat := _stat(pid)) is not None and stat[2] == start for pid, start in self.known.items())
