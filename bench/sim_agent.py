"""The simulated coding agent of bench/learning.py (through the `command` backend).

Reads its prompt on stdin. The issue body carries `SIM area=<area> n=<n>`; the
agent writes `<area>/mod_<n>.py` with `VALUE_<n> = <n>`. Two things can go
wrong in a task round, each checked by one CI check, each drawn from its own
seeded luck:

- the style: CI's `style` check wants every file under an area to start with
  `# style: <area>`. The agent gets it right when its prompt names the
  check's command (a lesson told it), else by chance (`STYLE_CHANCE`, the
  same for every variant);
- the logic: CI's `tests` check wants the value right. The agent gets it
  right with a probability that depends on the prompt variant only
  (`LOGIC`: `concise`, whose prompt says "Be brief and direct", is the
  better one); no lesson changes it, so a lesson mined from a `tests`
  failure cannot help and the holdout should retire it.

A `ci_fix` round always fixes what CI reported. The luck is seeded by the
issue number (and SIM_SEED) and both draws are always made, so two runs see
the same luck whatever their prompts.
"""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path

STYLE_CMD = "python3 tools/style.py"
STYLE_CHANCE = 0.3
LOGIC = {"default": 0.6, "concise": 0.9}


def main() -> int:
    prompt = sys.stdin.read()
    found = re.search(r"SIM area=(\w+) n=(\d+)", prompt)
    if not found:
        print("no SIM marker in the prompt", file=sys.stderr)
        return 2
    area, n = found.group(1), int(found.group(2))
    path = Path(area) / f"mod_{n}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.environ.get("AGENT_TASK_KIND") == "task":
        rng = random.Random(n * 7919 + int(os.environ.get("SIM_SEED", "1")))
        style_luck, logic_luck = rng.random(), rng.random()
        variant = "concise" if "Be brief and direct" in prompt else "default"
        told = STYLE_CMD in prompt
        style = told or style_luck < STYLE_CHANCE
        logic = logic_luck < LOGIC[variant]
        path.write_text((f"# style: {area}\n" if style else "") + f"VALUE_{n} = {n if logic else -n}\n")
        print(
            f"wrote {path} ({variant}, {'told' if told else 'not told'}, style {'right' if style else 'wrong'}, "
            f"logic {'right' if logic else 'wrong'})"
        )
    else:  # a fix round: CI said what is wrong
        salt = len(path.read_text()) if path.exists() else 0
        path.write_text(f"# style: {area}\nVALUE_{n} = {n}\n# fix {salt}\n")
        print(f"fixed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
