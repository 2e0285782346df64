"""No markdown file in the repository links outside it.

The rule: every relative link (`[text](path)`, `[text](path#anchor)`) must
resolve to a file inside the repository (and, with an anchor into a markdown
file, to one of its headings); no relative link may climb out of the
repository root. Absolute `http(s)` links are allowed: they point at public
pages (GitHub's docs, package registries) that a fresh clone can reach.
`mailto:` links and in-page anchors (`#…`) are checked like relative ones.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def markdown_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in listed.stdout.split() if "node_modules" not in p]


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    slugs = set()
    for heading in re.findall(r"^#+\s+(.*)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return [a or b for a, b in LINK.findall(text)]


def problems(path: Path) -> list[str]:
    found = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("mailto:"):
            continue  # http(s) and other absolute URLs
        if target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if ROOT not in (resolved, *resolved.parents):
            found.append(f"{target}: leaves the repository")
        elif not resolved.exists():
            found.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            found.append(f"{target}: no heading #{anchor}")
    return found


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_leaves_the_repository(path):
    assert problems(path) == []


def test_the_checker_sees_a_dead_and_an_escaping_link(tmp_path, monkeypatch):
    page = ROOT / "docs" / "design.md"
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: (
            "[a](../../shared/DESIGN.md) [b](nope.md) "
            "[c](sandbox.md) [d](https://docs.github.com/) [e](#1-the-loop)\n# 1. The loop\n"
        ),
    )
    assert problems(page) == ["../../shared/DESIGN.md: leaves the repository", "nope.md: no such file"]
