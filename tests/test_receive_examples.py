"""`compound receive` with examples/ and tests/fixtures: a line per handler, what it did or why not."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.service_process import COMPOUND, base_env
from tests.webhook_examples import validate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "webhooks" / "examples"
SHIPPED = {
    "issues.labeled.json": ("issues", "on_issues_labeled"),
    "issue_comment.created.json": ("issue_comment", "on_issue_comment_created"),
    "check_suite.completed.json": ("check_suite", "on_check_suite_completed"),
}


async def receive(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *COMPOUND,
        "receive",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_examples_are_single_valid_payloads():
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(SHIPPED)
    for name, (event, _) in SHIPPED.items():
        payload = json.loads((EXAMPLES / name).read_text())
        validate(event, payload)
        assert payload["installation"]["id"]
    assert json.loads((EXAMPLES / "issues.labeled.json").read_text())["label"]["name"] == "agent"
    assert json.loads((EXAMPLES / "issue_comment.created.json").read_text())["comment"]["body"].startswith("/agent")
    assert json.loads((EXAMPLES / "check_suite.completed.json").read_text())["check_suite"]["conclusion"] == "failure"


@pytest.mark.parametrize("name", sorted(SHIPPED))
async def test_an_example_without_an_app_says_why_each_handler_skipped(name, tmp_path):
    event, handler = SHIPPED[name]
    status, out, _ = await receive(
        base_env(DATA_DIR=tmp_path / "data"), tmp_path, "-e", event, "-p", str(EXAMPLES / name)
    )
    assert status == 0, out
    assert f"  {handler}: skipped: no GitHub App configured" in out.splitlines()[1]


async def test_a_fixture_list_needs_an_index_or_each(tmp_path):
    env = base_env(DATA_DIR=tmp_path / "data")
    fixture = str(FIXTURES / "issues.json")
    count = len(json.loads(Path(fixture).read_text()))
    status, out, err = await receive(env, tmp_path, "-e", "issues", "-p", fixture)
    assert status == 2 and f"holds {count} payloads" in err and "--index N" in err and "--each" in err

    status, out, err = await receive(env, tmp_path, "-e", "issues", "-p", fixture, "--index", str(count))
    assert status == 2 and f"--index {count}" in err

    # Ended: processed, or skipped with its reason (GitHub's examples for repository
    # webhooks have no installation to act for).
    ended = re.compile(r"^\S+ issues\.\S+: (processed|skipped\n  skipped: no installation in the payload)", re.M)
    status, out, _ = await receive(env, tmp_path, "-e", "issues", "-p", fixture, "--index", "0")
    assert status == 0 and len(ended.findall(out)) == 1, out

    status, out, _ = await receive(env, tmp_path, "-e", "issues", "-p", fixture, "--each")
    assert status == 0 and len(ended.findall(out)) == count, out

    status, _, err = await receive(env, tmp_path, "-e", "issues", "-p", str(EXAMPLES / "issues.labeled.json"), "--each")
    assert status == 2 and "holds one payload" in err


async def test_with_the_app_a_non_trigger_and_a_non_writer_say_why(tmp_path, twin):
    labeled = json.loads((EXAMPLES / "issues.labeled.json").read_text())
    iid = twin.add_installation(account=labeled["repository"]["owner"]["login"], account_type="User")
    twin.add_repo(labeled["repository"]["full_name"], iid)
    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATA_DIR=tmp_path / "data",
        AGENT_SANDBOX="none",
    )
    labeled["installation"]["id"] = iid
    labeled["label"]["name"] = "bug"
    (tmp_path / "bug.json").write_text(json.dumps(labeled))
    status, out, _ = await receive(env, tmp_path, "-e", "issues", "-p", "bug.json")
    assert status == 0, out
    assert "on_issues_labeled: skipped: label 'bug' is not a trigger (the trigger label is 'agent')" in out

    comment = json.loads((EXAMPLES / "issue_comment.created.json").read_text())
    comment["installation"]["id"] = iid
    comment["issue"]["number"] = twin.add_issue(comment["repository"]["full_name"], title="Add --verbose")
    twin.set_permission(comment["repository"]["full_name"], comment["sender"]["login"], "read")
    (tmp_path / "comment.json").write_text(json.dumps(comment))
    status, out, err = await receive(env, tmp_path, "-e", "issue_comment", "-p", "comment.json")
    assert status == 0, out + err
    assert f"on_issue_comment_created: skipped: {comment['sender']['login']} may not command the agent" in out
    assert (
        "only people with write access"
        in twin.comments(comment["repository"]["full_name"], comment["issue"]["number"])[0].body
    )
