"""`compound lessons list|show|add|pin|retire|edit` as a maintainer runs it, on a real database."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from bot.settings import async_database_url
from bot.store import Store
from bot.store.learning import ACTIVE, CANDIDATE, RETIRED
from tests.service_process import COMPOUND, base_env

REPO = "octo/app"


@pytest.fixture
def lessons(tmp_path, database_url):
    """Runs `compound lessons …` against the parametrized database; returns (exit code, stdout, stderr)."""
    asyncio.run(_reset(database_url))

    def run(*args: str) -> tuple[int, str, str]:
        env = base_env(DATABASE_URL=database_url, DATA_DIR=tmp_path / "data", WEBHOOK_SECRET="s")
        done = subprocess.run(
            [*COMPOUND, "lessons", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        return done.returncode, done.stdout, done.stderr

    yield run
    asyncio.run(_reset(database_url))


async def _reset(url: str) -> None:
    store = Store.connect(async_database_url(url))
    try:
        await store.migrate()
        from tests.conftest import _empty

        await _empty(store)
    finally:
        await store.close()


async def _mine(url: str) -> int:
    """A mined candidate, as the learning loop leaves one after a single session."""
    store = Store.connect(async_database_url(url))
    try:
        lesson, _ = await store.learning.upsert_lesson(
            "ci:lint:.", "Run `ruff check .` before pushing.", REPO, evidence=["s-1"], need=2
        )
        return lesson.id
    finally:
        await store.close()


async def _lesson(url: str, lesson_id: int):
    store = Store.connect(async_database_url(url))
    try:
        return await store.learning.lesson(lesson_id)
    finally:
        await store.close()


def test_a_maintainer_adds_lists_shows_edits_unpins_pins_and_retires_a_lesson(lessons, database_url):
    code, out, _ = lessons("list")
    assert code == 0 and out.strip() == "no lessons active (--all shows every one)"

    code, out, _ = lessons("add", "--repo", REPO, "--text", "  Keep handlers in api/.  ", "--area", "api")
    assert code == 0 and out.startswith("lesson ") and "added (pinned)" in out
    added = int(out.split()[1])
    lesson = asyncio.run(_lesson(database_url, added))
    assert (lesson.status, lesson.pinned, lesson.text, lesson.area) == (ACTIVE, True, "Keep handlers in api/.", "api")

    mined = asyncio.run(_mine(database_url))
    code, out, _ = lessons("list")
    assert code == 0 and "Keep handlers in api/." in out and "ruff check" not in out  # a candidate is not listed
    assert "active, pinned" in out
    code, out, _ = lessons("list", "--all", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["id"]: (r["status"], r["pinned"]) for r in rows} == {added: (ACTIVE, True), mined: (CANDIDATE, False)}

    code, out, _ = lessons("show", str(mined))
    assert code == 0 and f"lesson {mined} (candidate, mined)" in out and "evidence: s-1" in out
    code, out, _ = lessons("show", str(added), "--json")
    shown = json.loads(out)
    assert (shown["text"], shown["area"], shown["source"], shown["evidence"]) == (
        "Keep handlers in api/.",
        "api",
        "manual",
        [],
    )
    assert shown["trials"] == {"carried": {"sessions": 0, "first_try": 0}, "held_out": {"sessions": 0, "first_try": 0}}

    code, out, _ = lessons("edit", str(added), "--text", "Keep HTTP handlers in api/handlers/.", "--area", "")
    assert code == 0 and out.strip() == f"lesson {added} edited"
    lesson = asyncio.run(_lesson(database_url, added))
    assert (lesson.text, lesson.area) == ("Keep HTTP handlers in api/handlers/.", None)

    assert lessons("pin", str(added), "--off")[1].strip() == f"lesson {added} unpinned"
    assert not asyncio.run(_lesson(database_url, added)).pinned

    code, out, _ = lessons("retire", str(mined), "--reason", "we moved to black")
    assert code == 0 and out.strip() == f"lesson {mined} retired"
    lesson = asyncio.run(_lesson(database_url, mined))
    assert (lesson.status, lesson.reason) == (RETIRED, "we moved to black")
    assert "we moved to black" in lessons("show", str(mined))[1]

    code, out, _ = lessons("pin", str(mined))  # pinning a retired lesson brings it back
    lesson = asyncio.run(_lesson(database_url, mined))
    assert code == 0 and (lesson.status, lesson.pinned, lesson.reason) == (ACTIVE, True, None)


def test_bad_lesson_commands_say_what_is_wrong_and_change_nothing(lessons, database_url):
    code, _, err = lessons("show", "999")
    assert code == 1 and err.strip() == "compound: no lesson 999"
    code, out, _ = lessons("add", "--repo", REPO, "--text", "Small commits.")
    added = int(out.split()[1])
    code, _, err = lessons("edit", str(added))
    assert code == 2 and "nothing to change" in err
    code, _, err = lessons("edit", str(added), "--text", "   ")
    assert code == 2 and "--text must not be empty" in err
    code, _, err = lessons("add", "--repo", REPO, "--text", "x", "--kind", "poetry")
    assert code == 2 and "invalid choice: 'poetry'" in err
    assert asyncio.run(_lesson(database_url, added)).text == "Small commits."
