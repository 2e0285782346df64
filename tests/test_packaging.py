"""What `pip install .` gives a user: every module, the prompt templates, the
licence, no build warnings; and a lock file that pins every dependency."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (path,) = out.glob("compound-*.whl")
    return path, build.stdout + build.stderr


def test_the_wheel_holds_every_module_of_the_source_tree(wheel):
    path, _ = wheel
    names = set(zipfile.ZipFile(path).namelist())
    sources = sorted(
        str(p.relative_to(ROOT))
        for top in ("bot", "handlers")
        for p in (ROOT / top).rglob("*")
        if p.is_file() and p.suffix in {".py", ".mako", ".ini"} and "__pycache__" not in p.parts
    )
    assert sources, "no sources found"
    missing = [s for s in sources if s not in names]
    assert missing == [], f"left out of the wheel (add the package to [tool.setuptools] packages): {missing}"


def test_the_wheel_holds_the_prompt_templates_and_the_licence(wheel):
    path, _ = wheel
    archive = zipfile.ZipFile(path)
    names = set(archive.namelist())
    templates = sorted(p.name for p in (ROOT / "prompts").glob("*.j2"))
    assert "task.md.j2" in templates
    assert [t for t in templates if f"bot/prompt_files/{t}" not in names] == []
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = archive.read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_building_prints_no_deprecation_warning(wheel):
    _, output = wheel
    assert "deprecated" not in output.lower(), [line for line in output.splitlines() if "deprecat" in line.lower()]


def test_an_installed_copy_finds_its_templates_from_any_directory(wheel, tmp_path):
    path, _ = wheel
    site = tmp_path / "site"
    zipfile.ZipFile(path).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import bot, bot.prompts as p;"
        "d = p.default_directory();"
        "print(bot.__file__); print(d);"
        "print(p.Prompts().render(p.PromptContext(kind='task', repo='octo/hello')).template)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    module, directory, template = run.stdout.split()
    assert Path(module).is_relative_to(site)
    assert Path(directory) == site / "bot" / "prompt_files"
    assert template.startswith("task")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_the_lock_pins_every_dependency_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
    for extra in ("test", "lint"):
        wanted |= _names(project["optional-dependencies"][extra])
    pinned = {
        m[1].lower().replace("_", "-")
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==\S+", (ROOT / "requirements.lock").read_text(), re.M)
    }
    assert wanted - pinned == set(), "run `make lock` after changing the dependencies in pyproject.toml"


def test_the_image_installs_the_locked_versions():
    """The Dockerfile's build stage installs Compound with requirements.lock as its
    constraint (the same pins `make` installs), not whatever PyPI has that day."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    build = dockerfile.split("\nFROM ", 2)[1]  # the build stage, up to the runtime stage
    copied = [line for line in build.splitlines() if line.startswith("COPY ")]
    assert any("requirements.lock" in line.split()[1:-1] for line in copied), copied
    installs = [line for line in build.splitlines() if line.startswith("RUN ") and re.search(r"\bpip install\b", line)]
    assert installs and all(re.search(r"(--constraint|-c) requirements\.lock\b", line) for line in installs), installs
