"""The first run as an operator does it: `compound serve` without APP_ID, the
printed link, GitHub's manifest flow (the twin), the restart that starts registered."""

from __future__ import annotations

import html
import os
import re
import socket
import stat
from pathlib import Path

import aiohttp
from dotenv import dotenv_values

from tests.service_process import ServiceProcess, base_env
from tests.test_manifest import docker_env_file

LINK = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)")


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def setup_link(service: ServiceProcess) -> str:
    """The link on the console; stdout and the log carry the same one."""
    found = LINK.findall(service.logs())
    assert len(found) == 2 and found[0] == found[1], service.logs()
    port, token = found[0]
    assert int(port) == service.port
    return f"http://127.0.0.1:{port}/?token={token}"


def browser() -> aiohttp.ClientSession:
    # unsafe=True: keep cookies for an IP address, as browsers do.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_setup_mode_listens_on_loopback_only_and_refuses_strangers(tmp_path):
    data = tmp_path / "data"
    service = ServiceProcess(tmp_path, base_env(DATA_DIR=data), host=None)
    await service.start()
    try:
        link = setup_link(service)
        assert "listening on http://127.0.0.1:" in service.logs()
        # GitHub cannot deliver to a loopback address: `compound serve` says so and what to do.
        assert "Webhooks will not arrive" in service.logs() and "WEBHOOK_PROXY_URL" in service.logs()
        # Bound to 127.0.0.1 itself: another loopback address (or any other interface) is not served.
        assert reachable("127.0.0.1", service.port)
        assert not reachable("127.0.0.2", service.port)

        async with browser() as stranger:
            for path in ("/", "/?org=acme-corp", "/setup?code=c&state=s", "/?token=wrong"):
                async with stranger.get(service.url + path, allow_redirects=False) as r:
                    assert r.status == 403, path
            assert not stranger.cookie_jar.filter_cookies(service.url)
        async with browser() as operator, operator.get(link) as r:
            assert r.status == 200
            assert "Register Compound" in await r.text()
    finally:
        assert await service.stop() == 0
    assert not (data / ".env").exists()
    assert not list(data.glob("*.pem"))


async def test_an_explicit_host_is_kept_in_setup_mode(tmp_path):
    service = ServiceProcess(tmp_path, base_env(DATA_DIR=tmp_path / "data"), host="0.0.0.0")
    await service.start()
    try:
        assert reachable("127.0.0.2", service.port)
        setup_link(service)  # printed for 127.0.0.1, with a word on using the machine's name
        assert "this machine's name" in service.logs()
    finally:
        await service.stop()


async def test_first_run_registers_and_the_restarted_service_is_configured(tmp_path, twin):
    data = tmp_path / "data"
    env = base_env(DATA_DIR=data, GHE_HOST=twin.host, GHE_PROTOCOL="http", LOG_FORMAT="text")
    first = ServiceProcess(tmp_path, env, host=None)
    await first.start()
    try:
        assert (await first.get_json("/healthz"))["registered"] is False
        link = setup_link(first)
        twin.add_manifest_code("first-run-code")
        async with browser() as operator:
            async with operator.get(link) as r:
                assert r.status == 200
                assert str(r.url) == first.url + "/"  # the token left the address bar
                page = await r.text()
            action = html.unescape(re.search(r'<form action="([^"]+)"', page).group(1))
            state = re.search(r"[?&]state=([^&]+)", action).group(1)
            # GitHub sends the browser back with a code and the state.
            async with (
                browser() as other,
                other.get(first.url + "/setup", params={"code": "first-run-code", "state": state}) as r,
            ):
                assert r.status == 403
            assert not (data / ".env").exists()
            async with operator.get(first.url + "/setup", params={"code": "first-run-code", "state": state}) as r:
                assert r.status == 200, await r.text()
                assert "Compound is registered" in await r.text()
    finally:
        assert await first.stop() == 0

    env_file = data / ".env"
    key_file = data / f"github-app-{twin.app_id}.private-key.pem"
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    values = dotenv_values(env_file)
    assert docker_env_file(env_file.read_text()) == values
    assert values["APP_ID"] == str(twin.app_id)
    assert values["WEBHOOK_SECRET"] == twin.webhook_secret
    assert Path(values["PRIVATE_KEY_PATH"]) == key_file.resolve()
    for secret in (twin.webhook_secret, values["GITHUB_CLIENT_SECRET"], "first-run-code"):
        assert secret not in first.logs()

    # The same command on the same DATA_DIR, nothing else changed: registered.
    again = ServiceProcess(tmp_path, env, host=None)
    await again.start()
    try:
        health = await again.get_json("/healthz")
        assert health["registered"] is True, again.logs()
        assert f"authenticated as GitHub App '{twin.app_slug}' (id {twin.app_id})" in again.logs()
        assert not LINK.search(again.logs())
        # Registered, HOST unset: all interfaces, as before setup mode existed.
        assert reachable("127.0.0.2", again.port)
        async with aiohttp.ClientSession() as s, s.get(again.url + "/") as r:
            assert r.status == 404  # no setup pages any more
    finally:
        assert await again.stop() == 0
