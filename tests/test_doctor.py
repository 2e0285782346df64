"""`compound doctor` against the GitHub twin: all pass, then each failure has its own line and fix."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.service_process import COMPOUND, base_env
from tests.twin.rest.hooks import hook_config


async def doctor(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    # Run without blocking the loop: the twin answers from this very loop.
    proc = await asyncio.create_subprocess_exec(
        *COMPOUND,
        "doctor",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def fake_claude(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "claude"
    cli.write_text("#!/bin/sh\necho '9.9.9 (Claude Code)'\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.fixture
async def env(tmp_path, twin):
    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATA_DIR=tmp_path / "data",
        AGENT_SANDBOX="none",
        AGENT_BACKEND="claude-code",
    )
    env["PATH"] = f"{fake_claude(tmp_path)}{os.pathsep}{env.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(*COMPOUND, "db", "upgrade", env=env, cwd=tmp_path)
    assert await proc.wait() == 0
    hook_config(twin)["secret"] = WEBHOOK_SECRET
    twin.hook_deliveries.record(
        "issues",
        {"action": "labeled", "installation": {"id": 1}, "repository": {"id": 1}},
        guid="0b989ba4-242f-11e5-81e1-c7b6966d2516",
        status_code=202,
    )
    return env


def line(output: str, name: str) -> str:
    found = [ln for ln in output.splitlines() if ln[5:].startswith(name + ":")]
    assert len(found) == 1, output
    return found[0]


def fix_after(output: str, name: str) -> str:
    lines = output.splitlines()
    i = lines.index(line(output, name))
    assert lines[i + 1].strip().startswith("fix: "), output
    return lines[i + 1]


async def test_all_pass_against_the_twin(env, tmp_path, twin):
    status, out = await doctor(env, tmp_path)
    assert status == 0, out
    for name in (
        "settings",
        "database",
        "github auth",
        "webhook config",
        "webhook deliveries",
        "agent cli",
        "sandbox",
        "disk",
    ):
        assert line(out, name).startswith("ok   "), out
    assert "9.9.9 (Claude Code)" in line(out, "agent cli")
    assert twin.calls("apps/get-webhook-config-for-app")

    status, out = await doctor(env, tmp_path, "--json")
    report = json.loads(out)
    assert status == 0 and report["ok"] is True and len(report["checks"]) == 8


async def test_wrong_webhook_url(env, tmp_path, twin):
    hook_config(twin)["url"] = "https://old.example.com/hooks"
    status, out = await doctor(env, tmp_path)
    assert status == 1
    assert line(out, "webhook config").startswith("FAIL") and "WEBHOOK_PATH" in line(out, "webhook config")
    assert "/api/github/webhooks" in fix_after(out, "webhook config")
    assert [ln for ln in out.splitlines() if ln.startswith("FAIL")] == [line(out, "webhook config")]

    hook_config(twin)["url"] = "https://old.example.com/api/github/webhooks"
    status, out = await doctor(env, tmp_path, "--webhook-url", "https://compound.example.com/api/github/webhooks")
    assert status == 1 and "this service is https://compound.example.com" in line(out, "webhook config")
    assert "https://compound.example.com/api/github/webhooks" in fix_after(out, "webhook config")


async def test_missing_secret_and_ssl_off(env, tmp_path, twin):
    hook_config(twin).update(secret=None, insecure_ssl="1")
    status, out = await doctor(env, tmp_path)
    assert status == 1
    assert "no secret set" in line(out, "webhook config") and "SSL verification is off" in line(out, "webhook config")
    assert "WEBHOOK_SECRET" in fix_after(out, "webhook config")


async def test_failed_deliveries(env, tmp_path, twin):
    twin.hook_deliveries.record(
        "issues",
        {"action": "labeled", "installation": {"id": 1}, "repository": {"id": 1}},
        guid="dead-beef",
        status_code=0,
    )
    status, out = await doctor(env, tmp_path)
    assert status == 1
    assert "1 of the last 2 failed, latest dead-beef" in line(out, "webhook deliveries")
    assert "redeliver" in fix_after(out, "webhook deliveries")


async def test_unreachable_github(env, tmp_path, twin):
    env = {**env, "GHE_HOST": "127.0.0.1:9"}  # discard port: nothing listens
    status, out = await doctor(env, tmp_path)
    assert status == 1
    assert "cannot reach http://127.0.0.1:9/api/v3" in line(out, "github auth")
    assert "GHE_HOST" in fix_after(out, "github auth")
    assert "not checked" in line(out, "webhook config")
    assert line(out, "database").startswith("ok")


async def test_wrong_key_is_an_auth_failure(env, tmp_path, twin):
    status, out = await doctor({**env, "APP_ID": str(twin.app_id + 1)}, tmp_path)
    assert status == 1 and "GET /app answered 401" in line(out, "github auth")
    assert "APP_ID" in fix_after(out, "github auth")


async def test_missing_agent_cli(env, tmp_path):
    status, out = await doctor({**env, "AGENT_BACKEND": "codex"}, tmp_path)
    assert status == 1
    assert "codex (codex) is not on PATH" in line(out, "agent cli")
    assert "AGENT_BACKEND" in fix_after(out, "agent cli")


async def test_migrations_behind_and_bad_settings(env, tmp_path):
    status, out = await doctor({**env, "DATA_DIR": str(tmp_path / "fresh")}, tmp_path)
    assert status == 1 and "compound db upgrade" in fix_after(out, "database")

    status, out = await doctor({**env, "PORT": "abc"}, tmp_path, "--json")
    report = json.loads(out)
    assert status == 1 and report["checks"][0]["name"] == "settings" and "PORT" in report["checks"][0]["detail"]
