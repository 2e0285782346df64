"""A scripted coding agent for tests, run through the `command` backend.

    AGENT_COMMAND="python tests/agents/scripted_agent.py PLAN.json"

The plan is the file named by the first argument or, failing that, by
$SCRIPTED_AGENT_PLAN (then list SCRIPTED_AGENT_PLAN in AGENT_ENV_PASSTHROUGH);
with neither, the agent reads its prompt and exits 0. It reads all of stdin
first (the prompt, for the `command` backend), then runs the plan's steps in
order and exits 0 unless a step says otherwise. Relative paths are relative to
the working directory (the workspace). Standard library only.

Plan: {"steps": [step, ...]}, each step an object with one action key:

    {"print": "text"}                     a line on stdout ("stderr": true for stderr)
    {"print_file": "path"}                a file's lines on stdout (e.g. a CLI transcript)
    {"write": "path", "content": "..."}   create or replace a file (parents made)
    {"append": "path", "content": "..."}  append to a file
    {"delete": "path"}                    remove a file
    {"commit": "message"}                 `git add -A` and `git commit` in cwd, as
                                          "Scripted Agent <agent@example.invalid>"
    {"dump_env": "path"}                  os.environ as a JSON object
    {"record": "path"}                    JSON: cwd, argv, stdin, prompt_file (the
                                          $AGENT_PROMPT_FILE name) and prompt_file_content
    {"check_stdin": true}                 exit 3 unless stdin equals $AGENT_PROMPT_FILE's content
    {"sleep": seconds}
    {"hang": true}                        sleep until killed
    {"spawn": "pidfile"}                  start a grandchild `sleep 1000` (same process group,
                                          holding our stdout) and write its pid to pidfile;
                                          with "detach": true in a session of its own, its
                                          output to /dev/null (as Claude Code runs its tools)
    {"ignore_sigterm": true}              ignore SIGTERM from here on (only SIGKILL ends us)
    {"exit": code}                        exit now with that code
    {"nth": "counterfile", "plans": [[step, ...], ...]}
                                          the steps of plans[n] on the agent's n-th run
                                          (0-based, counted in counterfile), the last
                                          plan once they run out: a different script
                                          for each round of one kind
    {"if_prompt": "text", "then": [step, ...], "else": [step, ...]}
                                          the `then` steps if the prompt contains the
                                          text, else the `else` steps: an agent that
                                          follows guidance when its prompt gives it

Any path may use {workspace}, replaced by the working directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    plan_path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SCRIPTED_AGENT_PLAN")
    steps = json.loads(Path(plan_path).read_text())["steps"] if plan_path else []
    for step in steps:
        code = run_step(step, stdin)
        if code is not None:
            return code
    return 0


def path(value: str) -> Path:
    return Path(value.replace("{workspace}", os.getcwd()))


def prompt_file_content() -> str | None:
    name = os.environ.get("AGENT_PROMPT_FILE")
    return Path(name).read_text() if name and Path(name).is_file() else None


def run_step(step: dict, stdin: str) -> int | None:  # noqa: C901 - one branch per action
    if "print" in step:
        print(step["print"], file=sys.stderr if step.get("stderr") else sys.stdout, flush=True)
    elif "print_file" in step:
        sys.stdout.write(path(step["print_file"]).read_text())
        sys.stdout.flush()
    elif "write" in step:
        target = path(step["write"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(step.get("content", ""))
    elif "append" in step:
        with path(step["append"]).open("a") as f:
            f.write(step.get("content", ""))
    elif "delete" in step:
        path(step["delete"]).unlink()
    elif "commit" in step:
        identity = ["-c", "user.name=Scripted Agent", "-c", "user.email=agent@example.invalid"]
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", *identity, "commit", "-q", "-m", step["commit"]], check=True)
    elif "dump_env" in step:
        path(step["dump_env"]).write_text(json.dumps(dict(os.environ), indent=1, sort_keys=True))
    elif "record" in step:
        record = {
            "cwd": os.getcwd(),
            "argv": sys.argv,
            "stdin": stdin,
            "prompt_file": os.environ.get("AGENT_PROMPT_FILE"),
            "prompt_file_content": prompt_file_content(),
        }
        path(step["record"]).write_text(json.dumps(record, indent=1))
    elif "check_stdin" in step:
        if stdin != prompt_file_content():
            print("stdin differs from $AGENT_PROMPT_FILE", file=sys.stderr, flush=True)
            return 3
    elif "sleep" in step:
        time.sleep(float(step["sleep"]))
    elif "hang" in step:
        while True:
            time.sleep(3600)
    elif "spawn" in step:
        if step.get("detach"):
            child = subprocess.Popen(["sleep", "1000"], start_new_session=True, stdout=subprocess.DEVNULL)
        else:
            child = subprocess.Popen(["sleep", "1000"])
        path(step["spawn"]).write_text(str(child.pid))
    elif "ignore_sigterm" in step:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif "nth" in step:
        counter = path(step["nth"])
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        plans = step["plans"]
        for inner in plans[min(n, len(plans) - 1)]:
            code = run_step(inner, stdin)
            if code is not None:
                return code
    elif "if_prompt" in step:
        for inner in step.get("then" if step["if_prompt"] in stdin else "else", []):
            code = run_step(inner, stdin)
            if code is not None:
                return code
    elif "exit" in step:
        sys.stdout.flush()
        return int(step["exit"])
    else:
        print(f"scripted agent: unknown step {step!r}", file=sys.stderr, flush=True)
        return 2
    return None


if __name__ == "__main__":
    sys.exit(main())
