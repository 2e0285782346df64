"""Agents left behind by a Compound process that died (kill -9, OOM, a crash).

Every agent gets `AGENT_SUPERVISOR_PID` (the pid of the Compound process that
started it) in its environment, and its own process group. A process of this
machine whose supervisor is gone is an orphan: it would run on — spending
tokens — until its timeout, and nothing would ever use its work. Any Compound
process on the machine finds such groups in /proc and kills them.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger("compound.agents")

SUPERVISOR = "AGENT_SUPERVISOR_PID"
_MARK = SUPERVISOR.encode() + b"="


def _supervisor_of(proc: Path) -> int | None:
    try:
        environ = (proc / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return None
    for item in environ.split(b"\0"):
        if item.startswith(_MARK):
            try:
                return int(item[len(_MARK):])
            except ValueError:
                return None
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def reap_orphans(proc_root: Path = Path("/proc")) -> int:
    """Kill the process groups of agents whose Compound process is gone; how many."""
    me = os.getpid()
    groups: set[int] = set()
    for proc in proc_root.glob("[0-9]*"):
        supervisor = _supervisor_of(proc)
        if supervisor is None or supervisor == me or _alive(supervisor):
            continue
        try:
            groups.add(os.getpgid(int(proc.name)))
        except (ProcessLookupError, ValueError):
            continue
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
            log.warning("killed the agent process group %d left behind by a dead Compound process", group)
        except (ProcessLookupError, PermissionError):
            pass
    return len(groups)
