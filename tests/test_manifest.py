"""First-run App registration (the manifest flow) against the GitHub twin."""

from __future__ import annotations

import html
import json
import logging
import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.github import AppAuth
from bot.manifest import setup_routes, write_env
from bot.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
APP_YML = ROOT / "app.yml"
SETTINGS_VARS = ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET", "WEBHOOK_PATH")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in SETTINGS_VARS + ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def env_path(tmp_path) -> Path:
    path = tmp_path / ".env"
    path.write_text("# kept\nLOG_LEVEL=debug\nAPP_ID=\nDATA_DIR=/srv/compound\n")
    return path


@pytest.fixture
def settings(twin):
    yield load_settings(_env_file=None, GHE_HOST=twin.host, GHE_PROTOCOL="http")
    assert twin.violations == []


@pytest.fixture
async def client(aiohttp_client, settings, env_path):
    app = web.Application()
    setup_routes(app, settings, env_path, manifest_path=APP_YML)
    # As `compound serve` runs it: no access log, whose request line would
    # carry /setup's single-use code.
    server = TestServer(app)
    await server.start_server(access_log=None)
    return await aiohttp_client(server)


def form(page: str) -> tuple[str, dict]:
    action = re.search(r'<form action="([^"]+)" method="post">', page)
    manifest = re.search(r'<input type="hidden" name="manifest" value="([^"]*)">', page)
    assert action and manifest, page
    return html.unescape(action.group(1)), json.loads(html.unescape(manifest.group(1)))


async def start(client, **query) -> str:
    """Open the home page as a browser would; the state GitHub will hand back."""
    response = await client.get("/", params=query)
    assert response.status == 200
    action, _ = form(await response.text())
    return re.search(r"[?&]state=([^&]+)", action).group(1)


async def test_home_page_offers_the_manifest_from_app_yml(client, twin, settings):
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "not registered" in page
    action, manifest = form(page)
    assert action.startswith(f"http://{twin.host}/settings/apps/new?state=")

    spec = yaml.safe_load(APP_YML.read_text())
    base = f"http://{client.server.host}:{client.server.port}"
    assert manifest["name"] == spec["name"]
    assert manifest["url"] == spec["url"]
    assert manifest["description"] == spec["description"]
    assert manifest["public"] is spec["public"]
    assert manifest["default_events"] == spec["default_events"]
    assert manifest["default_permissions"] == spec["default_permissions"]
    assert manifest["hook_attributes"]["url"] == base + settings.webhook_path
    assert manifest["hook_attributes"]["url"].endswith("/api/github/webhooks")
    assert manifest["redirect_url"] == base + "/setup"


async def test_home_page_uses_the_proxy_s_view_of_the_url(client):
    response = await client.get(
        "/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bot.example.com, proxy"}
    )
    _, manifest = form(await response.text())
    assert manifest["hook_attributes"]["url"] == "https://bot.example.com/api/github/webhooks"
    assert manifest["redirect_url"] == "https://bot.example.com/setup"


async def test_an_organization_gets_its_own_registration_url(client, twin):
    response = await client.get("/", params={"org": "acme-corp"})
    action, _ = form(await response.text())
    assert action.startswith(f"http://{twin.host}/organizations/acme-corp/settings/apps/new?state=")
    response = await client.get("/", params={"org": "../evil"})
    assert response.status == 400


async def test_setup_writes_the_credentials_to_env(client, twin, env_path, caplog):
    caplog.set_level(logging.DEBUG)
    twin.add_manifest_code("good-code")
    state = await start(client)
    response = await client.get("/setup", params={"code": "good-code", "state": state})
    assert response.status == 200, await response.text()
    page = await response.text()
    assert "/installations/new" in page
    assert "restart" in page.lower()

    text = env_path.read_text()
    assert text.startswith("# kept\nLOG_LEVEL=debug\n")
    assert "DATA_DIR=/srv/compound\n" in text
    assert text.count("APP_ID=") == 1
    key_line = next(line for line in text.splitlines() if line.startswith("PRIVATE_KEY="))
    assert "\\n" in key_line  # the PEM on one line
    assert "GITHUB_CLIENT_ID=" in text and "GITHUB_CLIENT_SECRET=" in text
    assert stat.S_IMODE(os.stat(env_path).st_mode) == 0o600

    loaded = load_settings(_env_file=env_path)
    assert loaded.app_id == twin.app_id
    assert loaded.private_key_pem().strip() == twin.private_key_pem.strip()
    assert loaded.webhook_secret.get_secret_value() == twin.webhook_secret
    assert loaded.log_level == "debug"
    assert str(loaded.data_dir) == "/srv/compound"
    AppAuth(loaded.app_id, loaded.private_key_pem())  # the key is usable

    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "registered GitHub App" in logged
    for secret in ("good-code", twin.webhook_secret, loaded.private_key.get_secret_value()[40:80]):
        assert secret not in logged

    # Registered: the flow does not run a second time in this process.
    assert (await client.get("/")).status == 409
    assert (await client.get("/setup", params={"code": "x", "state": state})).status == 409


async def test_setup_with_a_state_not_handed_out_is_refused(client, twin, env_path):
    before = env_path.read_bytes()
    twin.add_manifest_code("good-code")
    await start(client)
    response = await client.get("/setup", params={"code": "good-code", "state": "forged"})
    assert response.status == 400
    response = await client.get("/setup", params={"code": "good-code"})
    assert response.status == 400
    assert env_path.read_bytes() == before
    # The code was never traded.
    assert not [r for r in twin.requests if "app-manifests" in r.path]


async def test_setup_with_an_unknown_code_shows_an_error(client, env_path, caplog):
    before = env_path.read_bytes()
    state = await start(client)
    response = await client.get("/setup", params={"code": "no-such-code", "state": state})
    assert response.status == 400
    page = await response.text()
    assert "unknown, already used or expired" in page
    assert env_path.read_bytes() == before
    assert "no-such-code" not in caplog.text


def test_write_env_creates_a_private_file(tmp_path):
    path = tmp_path / "new.env"
    write_env(path, {"APP_ID": "12", "WEBHOOK_SECRET": "it's\\"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = load_settings(_env_file=path)
    assert loaded.app_id == 12
    assert loaded.webhook_secret.get_secret_value() == "it's\\"
