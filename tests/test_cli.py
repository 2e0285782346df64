"""The `compound` command as an operator runs it: help, settings errors, db, receive, worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from sqlalchemy import inspect

from bot.store.deliveries import DeliveryRecord
from tests.conftest import WEBHOOK_SECRET
from tests.service_process import COMPOUND, ServiceProcess, base_env
from tests.webhook_examples import example


def run(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMPOUND, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [[], ["serve"], ["worker"], ["receive"], ["doctor"], ["db"], ["db", "upgrade"], ["db", "payload"]],
    ids=" ".join,
)
def test_help(args, tmp_path):
    result = run(*args, "--help", env=base_env(), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: compound")


def test_console_script_is_installed(tmp_path):
    result = subprocess.run(
        [str(__import__("pathlib").Path(sys.executable).with_name("compound")), "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0 and result.stdout.startswith("compound ")


BAD_SETTINGS = {
    "PORT": ({"PORT": "abc", "WEBHOOK_SECRET": "s"}, "PORT"),
    "GHE_PROTOCOL": ({"GHE_PROTOCOL": "ftp", "WEBHOOK_SECRET": "s"}, "GHE_PROTOCOL"),
    "LOG_LEVEL": ({"LOG_LEVEL": "loud", "WEBHOOK_SECRET": "s"}, "LOG_LEVEL"),
    "WEBHOOK_PATH": ({"WEBHOOK_PATH": "hooks", "WEBHOOK_SECRET": "s"}, "WEBHOOK_PATH"),
    "no WEBHOOK_SECRET": ({"APP_ID": "1", "PRIVATE_KEY": "x"}, "WEBHOOK_SECRET"),
    "no key": ({"APP_ID": "1", "WEBHOOK_SECRET": "s"}, "PRIVATE_KEY"),
    "bad key": ({"APP_ID": "1", "WEBHOOK_SECRET": "s", "PRIVATE_KEY": "not a key"}, "PRIVATE_KEY"),
    "missing key file": (
        {"APP_ID": "1", "WEBHOOK_SECRET": "s", "PRIVATE_KEY_PATH": "/nonexistent/key.pem"},
        "PRIVATE_KEY_PATH",
    ),
    "AGENT_BACKEND": ({"AGENT_BACKEND": "gpt-in-a-box", "WEBHOOK_SECRET": "s"}, "AGENT_BACKEND"),
    "command without AGENT_COMMAND": ({"AGENT_BACKEND": "command", "WEBHOOK_SECRET": "s"}, "AGENT_COMMAND"),
    "AGENT_NETWORK_ALLOW": (
        {"AGENT_NETWORK_ALLOW": "api.anthropic.com,https://evil.example/", "WEBHOOK_SECRET": "s"},
        "AGENT_NETWORK_ALLOW",
    ),
    "AGENT_NETWORK_ALLOW port": ({"AGENT_NETWORK_ALLOW": "example.com:70000", "WEBHOOK_SECRET": "s"}, "1-65535"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_setting_stops_with_one_clear_line(case, tmp_path):
    env, name = BAD_SETTINGS[case]
    result = run("serve", env=base_env(DATA_DIR=tmp_path / "data", **env), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("compound: ") and name in lines[0]
    assert "Traceback" not in result.stderr
    assert "not a key" not in result.stderr  # never echo a key back
    assert not (tmp_path / "data").exists()


def test_worker_needs_a_registered_app(tmp_path):
    result = run("worker", env=base_env(WEBHOOK_SECRET="s"), cwd=tmp_path)
    assert result.returncode == 2 and "APP_ID" in result.stderr


async def test_db_upgrade_from_several_processes_at_once(tmp_path, database_url, store):
    env = base_env(DATABASE_URL=database_url, DATA_DIR=tmp_path / "data")
    procs = [
        await asyncio.create_subprocess_exec(
            *COMPOUND,
            "db",
            "upgrade",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert all(b"up to date" in out for out, _ in outputs)
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert "deliveries" in tables


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_receive_runs_a_saved_payload_through_the_handlers(tmp_path, database_url, store):
    payload = example("installation", "created")
    path = tmp_path / "installation.json"
    path.write_text(json.dumps(payload))
    env = base_env(DATABASE_URL=database_url, DATA_DIR=tmp_path / "data", LOG_LEVEL="warning")
    result = run(
        "receive", "--event", "installation", "--payload", str(path), "--delivery-id", "saved-1", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        "saved-1 installation.created: processed",
        "  on_installation_created: done",
    ]
    assert (await store.installations.get(payload["installation"]["id"])) is not None
    again = run("receive", "-e", "installation", "-p", str(path), "--delivery-id", "saved-1", env=env, cwd=tmp_path)
    assert again.returncode == 1 and "received before" in again.stderr


async def test_db_payload_prints_a_stored_payload_byte_for_byte(tmp_path, database_url, store):
    body = json.dumps(example("issues", "labeled"), indent=1).encode()  # as GitHub sent it, spaces and all
    await store.deliveries.insert_new([DeliveryRecord("stored-1", "issues", "labeled", 1, "o/r", body)], None, lease=30)
    env = base_env(DATABASE_URL=database_url, DATA_DIR=tmp_path / "data")
    result = subprocess.run(
        [*COMPOUND, "db", "payload", "stored-1"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == body
    missing = run("db", "payload", "nope", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "no delivery 'nope' is stored" in missing.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_receive_reports_an_unreadable_payload(tmp_path, database_url):
    env = base_env(DATABASE_URL=database_url, DATA_DIR=tmp_path / "data")
    (tmp_path / "bad.json").write_text("{nope")
    for path in ("bad.json", "missing.json"):
        result = run("receive", "-e", "issues", "-p", path, env=env, cwd=tmp_path)
        assert result.returncode == 2
        assert f"cannot read payload {path}" in result.stderr


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_web_only_process_and_separate_worker_share_postgresql(tmp_path, database_url, store, twin):
    """Split deployment: `serve --no-workers` stores, `compound worker` processes."""
    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATABASE_URL=database_url,
        DATA_DIR=tmp_path / "data",
    )
    web = ServiceProcess(tmp_path, env, args=("--no-workers",))
    await web.start()
    worker = ServiceProcess(tmp_path, env, command="worker")
    try:
        status, _ = await twin.deliver(
            web.url + "/api/github/webhooks",
            "installation",
            example("installation", "created"),
            secret=WEBHOOK_SECRET,
        )
        assert status == 202
        await asyncio.sleep(0.5)
        assert await store.deliveries.count("pending") == 1  # nobody processes it yet
        await worker.start()
        async with asyncio.timeout(30):
            while await store.deliveries.count("processed") < 1:
                await asyncio.sleep(0.1)
    finally:
        assert await web.stop() == 0, web.logs()
        if worker.proc is not None:
            assert await worker.stop() == 0, worker.logs()


@pytest.mark.parametrize("args", [["report"], ["events", "export"]], ids=" ".join)
def test_commands_that_read_ask_for_a_migrated_database(args, tmp_path):
    env = base_env(DATA_DIR=tmp_path / "data")
    (tmp_path / "data").mkdir()
    result = run(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert "DATABASE_URL" in result.stderr and "compound db upgrade" in result.stderr
    assert run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    after = run(*args, env=env, cwd=tmp_path)
    assert after.returncode == 0, after.stderr


@pytest.mark.parametrize(
    "url, warned",
    [
        ("http://localhost:3000/api/github/webhooks", True),
        ("https://compound.example.com/api/github/webhooks", False),
    ],
)
async def test_serve_warns_when_the_apps_webhook_url_cannot_be_reached(url, warned, tmp_path, twin):
    from tests.twin.rest.hooks import hook_config

    hook_config(twin)["url"] = url
    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATA_DIR=tmp_path / "data",
    )
    service = ServiceProcess(tmp_path, env)
    await service.start()
    try:
        logs = service.logs()
        assert "authenticated as GitHub App" in logs  # the start-up checks ran
        assert ("webhooks will not arrive" in logs) is warned, logs
        if warned:
            assert "localhost is this machine" in logs and "WEBHOOK_PROXY_URL" in logs
    finally:
        assert await service.stop() == 0, service.logs()
    assert twin.violations == []
