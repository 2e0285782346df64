"""The simulated coding agent of bench/learning.py (through the `command` backend).

Reads its prompt on stdin. The issue body carries `SIM area=<area> n=<n>`; the
agent writes `<area>/mod_<n>.py`. CI's `style` check wants every file under
an area to start with `# style: <area>`: a task round gets that right when its
prompt names the check's command (a lesson told it) and otherwise by chance,
more often with the `concise` variant (its prompt says "Be brief and direct").
A `ci_fix` round always fixes what CI reported. Seeded by the issue number
(and SIM_SEED), so two runs see the same luck.
"""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path

STYLE_CMD = "python3 tools/style.py"
BASE = {"default": 0.2, "concise": 0.45}


def main() -> int:
    prompt = sys.stdin.read()
    found = re.search(r"SIM area=(\w+) n=(\d+)", prompt)
    if not found:
        print("no SIM marker in the prompt", file=sys.stderr)
        return 2
    area, n = found.group(1), int(found.group(2))
    path = Path(area) / f"mod_{n}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"VALUE_{n} = {n}\n"
    if os.environ.get("AGENT_TASK_KIND") == "task":
        rng = random.Random(n * 7919 + int(os.environ.get("SIM_SEED", "1")))
        variant = "concise" if "Be brief and direct" in prompt else "default"
        follows = STYLE_CMD in prompt
        right = follows or rng.random() < BASE[variant]
        path.write_text((f"# style: {area}\n" if right else "") + body)
        print(f"wrote {path} ({variant}, {'told' if follows else 'not told'}, {'right' if right else 'wrong'})")
    else:  # a fix round: CI said what is wrong
        salt = len(path.read_text()) if path.exists() else 0
        path.write_text(f"# style: {area}\n{body}# fix {salt}\n")
        print(f"fixed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
