"""Agents left behind by a Compound process that died (kill -9, OOM, a crash).

Every agent run gets a random mark in its environment (`COMPOUND_AGENT_RUN`),
which every process it starts inherits, and a record under `DATA_DIR/agents/`
naming the Compound process that supervises it (pid and start time). The
agent learns nothing from the mark: not the service's pid, not where its
files are. A marked process whose record names a process that is gone is an
orphan: it would run on, spending tokens, until its timeout, and nothing
would use its work. Any Compound process with the same `DATA_DIR` finds such
processes in /proc and kills them; marks it holds no record of (another
service's agents, on a shared machine) it leaves alone.

Under bubblewrap the sandbox also dies with the process that started it
(`--die-with-parent`); this covers the other modes and whatever escaped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
from pathlib import Path

log = logging.getLogger("compound.agents")

MARK = "COMPOUND_AGENT_RUN"
_MARK = MARK.encode() + b"="


def start_time(pid: int) -> int | None:
    """A live process's start time (clock ticks since boot), None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


class RunRecords:
    """The records of this machine's agent runs, one file per run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self) -> str:
        """A new run's mark, recorded as supervised by this process."""
        mark = secrets.token_hex(12)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        me = os.getpid()
        (self.directory / mark).write_text(json.dumps({"supervisor": me, "start": start_time(me)}))
        return mark

    def close(self, mark: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / mark).unlink()

    def orphaned(self) -> set[str]:
        """Marks of runs whose supervisor is gone."""
        gone = set()
        for path in self.directory.glob("*"):
            try:
                record = json.loads(path.read_text())
                pid, start = int(record["supervisor"]), record.get("start")
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if start_time(pid) is None or start_time(pid) != start:
                gone.add(path.name)
        return gone


def _mark_of(proc: Path) -> str | None:
    try:
        environ = (proc / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return None
    for item in environ.split(b"\0"):
        if item.startswith(_MARK):
            return item[len(_MARK) :].decode(errors="replace")
    return None


def reap_orphans(records: RunRecords, proc_root: Path = Path("/proc")) -> int:
    """Kill every process of a run whose Compound process is gone; how many runs."""
    orphaned = records.orphaned()
    if not orphaned:
        return 0
    killed: set[str] = set()
    for proc in proc_root.glob("[0-9]*"):
        mark = _mark_of(proc)
        if mark not in orphaned:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int(proc.name), signal.SIGKILL)
            killed.add(mark)
    for mark in orphaned:
        records.close(mark)
    for mark in killed:
        log.warning("killed the agent run %s left behind by a dead Compound process", mark)
    return len(killed)
