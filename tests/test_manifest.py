"""First-run App registration (the manifest flow) against the GitHub twin.

The pages run on a real server on loopback; each "browser" is its own client
session with its own cookie jar.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import stat
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from dotenv import dotenv_values

from bot.envfile import UnsafeValue, write_env
from bot.github import AppAuth
from bot.manifest import setup_routes
from bot.settings import load_settings
from bot.setup_gate import COOKIE, SetupGate

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
def gate() -> SetupGate:
    return SetupGate()


@pytest.fixture
async def server(settings, env_path, gate):
    app = web.Application()
    setup_routes(app, settings, env_path, gate=gate, manifest_path=APP_YML)
    # As `compound serve` runs it: no access log, whose request line would
    # carry the setup token and /setup's single-use code.
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    yield server
    await server.close()


@pytest.fixture
async def browser(server):
    """Another browser: its own cookie jar, never admitted unless a test does it."""
    clients = []

    async def make() -> TestClient:
        client = TestClient(server, cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.session.close()  # the server is the fixture's to close


@pytest.fixture
async def client(browser, gate):
    """The operator's browser, after opening the link `compound serve` printed."""
    client = await browser()
    await admit(client, gate.token)
    return client


async def admit(client, token: str) -> None:
    response = await client.get("/", params={"token": token}, allow_redirects=False)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/"
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http on loopback; https behind a proxy sets it
    assert cookie.value != token


def docker_env_file(text: str) -> dict[str, str]:
    """What `docker run --env-file` passes on (docker's opts/envfile.go): the
    line with leading blanks trimmed, `#` lines and blank lines skipped,
    everything after the first `=` taken as it is."""
    values = {}
    for line in text.splitlines():
        line = line.lstrip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


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
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()
    assert "/installations/new" in page
    assert "restart" in page.lower()

    text = env_path.read_text()
    assert text.startswith("# kept\nLOG_LEVEL=debug\n")
    assert "DATA_DIR=/srv/compound\n" in text
    assert text.count("APP_ID=") == 1
    assert "PRIVATE_KEY=" not in text and "BEGIN" not in text  # the key has a file of its own
    assert "GITHUB_CLIENT_ID=" in text and "GITHUB_CLIENT_SECRET=" in text
    assert stat.S_IMODE(os.stat(env_path).st_mode) == 0o600
    key_path = env_path.parent / f"github-app-{twin.app_id}.private-key.pem"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert key_path.read_text().strip() == twin.private_key_pem.strip()
    assert str(key_path) in page

    # docker run --env-file and the settings loader read the same values.
    assert docker_env_file(text) == dotenv_values(env_path)
    assert docker_env_file(text)["PRIVATE_KEY_PATH"] == str(key_path)

    loaded = load_settings(_env_file=env_path)
    assert loaded.app_id == twin.app_id
    assert loaded.private_key is None and loaded.private_key_path == key_path
    assert loaded.private_key_pem().strip() == twin.private_key_pem.strip()
    assert loaded.webhook_secret.get_secret_value() == twin.webhook_secret
    assert loaded.log_level == "debug"
    assert str(loaded.data_dir) == "/srv/compound"
    AppAuth(loaded.app_id, loaded.private_key_pem())  # the key is usable

    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "registered GitHub App" in logged
    client_secret = docker_env_file(text)["GITHUB_CLIENT_SECRET"]
    for secret in ("good-code", twin.webhook_secret, client_secret, twin.private_key_pem.splitlines()[2]):
        assert secret not in logged

    # Registered: the flow does not run a second time in this process.
    assert (await client.get("/")).status == 409
    assert (await client.get("/setup", params={"code": "x", "state": state})).status == 409


async def test_an_old_private_key_line_gives_way_to_the_key_file(client, twin, env_path):
    env_path.write_text("PRIVATE_KEY='-----BEGIN OLD-----'\nAPP_ID=1\n")
    twin.add_manifest_code("good-code")
    state = await start(client)
    response = await client.get("/setup", params={"code": "good-code", "state": state})
    assert response.status == 200, await response.text()
    assert "PRIVATE_KEY=" not in env_path.read_text()
    assert load_settings(_env_file=env_path).private_key_pem().strip() == twin.private_key_pem.strip()


async def test_without_the_setup_link_nothing_is_served_or_written(browser, twin, env_path):
    before = env_path.read_bytes()
    twin.add_manifest_code("good-code")
    stranger = await browser()
    for path, query in [("/", {}), ("/", {"org": "acme-corp"}), ("/setup", {"code": "good-code", "state": "s"})]:
        response = await stranger.get(path, params=query, allow_redirects=False)
        assert response.status == 403, (path, await response.text())
        assert "one-time setup link" in await response.text()
        assert COOKIE not in response.cookies
    assert env_path.read_bytes() == before
    assert [p.name for p in env_path.parent.iterdir() if p.name != "twin"] == [".env"]
    assert not [r for r in twin.requests if "app-manifests" in r.path]


async def test_a_wrong_token_or_a_made_up_cookie_is_refused(browser, server, gate, env_path):
    before = env_path.read_bytes()
    stranger = await browser()
    for token in ("", "wrong", gate.token[:-1], gate.token + "x"):
        response = await stranger.get("/", params={"token": token}, allow_redirects=False)
        assert response.status == 403
        assert COOKIE not in response.cookies
    forged = await browser()
    forged.session.cookie_jar.update_cookies({COOKIE: gate.token}, response.url)
    assert (await forged.get("/", allow_redirects=False)).status == 403
    assert env_path.read_bytes() == before
    # The wrong guesses did not spend the link.
    await admit(await browser(), gate.token)


async def test_the_link_admits_one_browser_only(client, browser, gate):
    assert (await client.get("/")).status == 200
    # Opened again in the same browser: still in.
    response = await client.get("/", params={"token": gate.token, "org": "acme-corp"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/?org=acme-corp"
    assert (await client.get(response.headers["Location"])).status == 200
    # Another browser with the same link (a copied console log, a proxy's log): out.
    late = await browser()
    response = await late.get("/", params={"token": gate.token}, allow_redirects=False)
    assert response.status == 403
    assert COOKIE not in response.cookies


async def test_the_link_keeps_the_other_query_parameters(browser, gate, twin):
    client = await browser()
    response = await client.get("/", params={"token": gate.token, "org": "acme-corp"}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/?org=acme-corp"
    response = await client.get(response.headers["Location"])
    action, _ = form(await response.text())
    assert action.startswith(f"http://{twin.host}/organizations/acme-corp/settings/apps/new?state=")


async def test_the_cookie_is_secure_behind_an_https_proxy(browser, gate):
    client = await browser()
    response = await client.get(
        "/", params={"token": gate.token}, headers={"X-Forwarded-Proto": "https"}, allow_redirects=False
    )
    assert response.status == 303
    assert response.cookies[COOKIE]["secure"]


async def test_a_callback_from_another_browser_is_refused(client, browser, twin, env_path, gate):
    before = env_path.read_bytes()
    twin.add_manifest_code("good-code")
    state = await start(client)
    other = await browser()
    response = await other.get("/setup", params={"code": "good-code", "state": state})
    assert response.status == 403
    # Even with the link in hand: it is spent, and a new cookie would not own this state.
    response = await other.get("/", params={"token": gate.token}, allow_redirects=False)
    assert response.status == 403
    response = await other.get("/setup", params={"code": "good-code", "state": state, "token": gate.token})
    assert response.status == 403
    assert env_path.read_bytes() == before
    assert not [r for r in twin.requests if "app-manifests" in r.path]
    # The browser that started the registration still finishes it.
    response = await client.get("/setup", params={"code": "good-code", "state": state})
    assert response.status == 200, await response.text()
    assert load_settings(_env_file=env_path).app_id == twin.app_id


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


@pytest.fixture
def unwritable_env_path(tmp_path) -> Path:
    """DATA_DIR/.env where DATA_DIR cannot be created: its parent is a file.

    (A read-only mount fails the same way; chmod would not stop the root the
    suite may run as.)"""
    (tmp_path / "not-a-directory").write_text("")
    return tmp_path / "not-a-directory" / "data" / ".env"


async def test_credentials_that_cannot_be_written_are_shown_once(
    browser, settings, gate, twin, unwritable_env_path, caplog
):
    app = web.Application()
    setup_routes(app, settings, unwritable_env_path, gate=gate, manifest_path=APP_YML)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    try:
        client = TestClient(server, cookie_jar=aiohttp.CookieJar(unsafe=True))
        await admit(client, gate.token)
        twin.add_manifest_code("good-code")
        state = await start(client)
        response = await client.get("/setup", params={"code": "good-code", "state": state})
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        page = await response.text()
        assert "could not save" in page and "Copy them now" in page
        assert "/installations/new" in page

        key = re.search(r'<pre id="private-key">([^<]*)</pre>', page)
        shown = re.search(r'<pre id="settings">([^<]*)</pre>', page)
        assert key and shown
        assert html.unescape(key.group(1)).strip() == twin.private_key_pem.strip()
        values = docker_env_file(html.unescape(shown.group(1)))
        assert values["APP_ID"] == str(twin.app_id)
        assert values["WEBHOOK_SECRET"] == twin.webhook_secret
        assert values["GITHUB_CLIENT_SECRET"]
        assert values["PRIVATE_KEY_PATH"].endswith(f"github-app-{twin.app_id}.private-key.pem")
        AppAuth(int(values["APP_ID"]), html.unescape(key.group(1)))

        assert "could not save its credentials" in caplog.text
        assert twin.webhook_secret not in caplog.text
        # Once: the page cannot be had again, by this browser or another.
        assert (await client.get("/setup", params={"code": "good-code", "state": state})).status == 409
        assert (await client.get("/")).status == 409
        await client.session.close()
    finally:
        await server.close()
    assert not unwritable_env_path.parent.exists()


def test_write_env_creates_a_private_file(tmp_path):
    path = tmp_path / "new.env"
    write_env(path, {"APP_ID": "12", "WEBHOOK_SECRET": "s3cr3t/+=:@,.-_", "GONE": None})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == "APP_ID=12\nWEBHOOK_SECRET=s3cr3t/+=:@,.-_\n"
    loaded = load_settings(_env_file=path)
    assert loaded.app_id == 12
    assert loaded.webhook_secret.get_secret_value() == "s3cr3t/+=:@,.-_"
    assert docker_env_file(path.read_text()) == dotenv_values(path)


def test_write_env_removes_a_name_and_keeps_the_rest(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=1\n# note\nPRIVATE_KEY='x'\nB = 2\nPRIVATE_KEY=y")
    write_env(path, {"PRIVATE_KEY": None, "C": "3"})
    assert path.read_text() == "A=1\n# note\nB = 2\nC=3\n"


@pytest.mark.parametrize(
    "value",
    ["two\nlines", "'quoted'", '"quoted"', " leading", "trailing ", "a #comment", "${HOME}", "back\\slash"],
)
def test_write_env_refuses_what_docker_and_dotenv_read_differently(tmp_path, value):
    path = tmp_path / ".env"
    path.write_text("KEPT=1\n")
    with pytest.raises(UnsafeValue) as raised:
        write_env(path, {"APP_ID": "1", "WEBHOOK_SECRET": value})
    assert "WEBHOOK_SECRET" in str(raised.value) and value not in str(raised.value)
    assert path.read_text() == "KEPT=1\n"


async def test_the_home_page_says_github_cannot_reach_a_loopback_webhook_url(client):
    page = await (await client.get("/")).text()
    assert "Webhooks will not arrive" in page
    assert "loopback" in page and "WEBHOOK_PROXY_URL" in page and "https://smee.io/new" in page
    # Through a public URL (a reverse proxy) nothing is said.
    response = await client.get("/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bot.example.com"})
    assert "Webhooks will not arrive" not in await response.text()


async def test_with_a_proxy_channel_github_sends_to_the_channel(twin, env_path, gate):
    channel = "https://smee.io/AbCdEf123456"
    settings = load_settings(_env_file=None, GHE_HOST=twin.host, GHE_PROTOCOL="http", WEBHOOK_PROXY_URL=channel)
    app = web.Application()
    setup_routes(app, settings, env_path, gate=gate, manifest_path=APP_YML)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as client:
        await admit(client, gate.token)
        page = await (await client.get("/")).text()
    _, manifest = form(page)
    assert manifest["hook_attributes"]["url"] == channel
    assert "Webhooks will not arrive" not in page
