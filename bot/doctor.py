"""`compound doctor`: one line per check of a deployment, each failure with its fix.

Nothing here changes anything: the database is not migrated, GitHub is only
read. Exit status 0 only when every check passes.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.settings import Settings, SettingsError, load_settings

MIN_FREE_BYTES = 1 << 30  # agents clone repositories into DATA_DIR
EXECUTABLES = {"claude-code": "claude", "codex": "codex", "aider": "aider"}
INSTALL_HINTS = {
    "claude-code": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "aider": "pip install aider-chat",
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text}\n     fix: {self.fix}"


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


async def run(*, webhook_url: str | None = None) -> list[Check]:
    """All checks, in the order an operator would fix them."""
    try:
        settings = load_settings()
        problem = _registration_problem(settings)
    except SettingsError as exc:
        return [_fail("settings", str(exc), "correct that variable in the environment or .env (README: Settings)")]
    checks = [
        Check("settings", True, f"App {settings.app_id}, API {settings.api_base_url}")
        if problem is None
        else _fail(
            "settings", problem, "set it in the environment or .env, or run `compound serve` to register the App"
        )
    ]
    checks.append(await _database(settings))
    if problem is None:
        checks.extend(await _github(settings, webhook_url))
    else:
        checks.extend(
            _fail(name, "not checked: the App's settings are incomplete", "fix the settings line first")
            for name in ("github auth", "webhook config", "webhook deliveries")
        )
    checks.append(await asyncio.to_thread(_agent_cli, settings))
    checks.append(await asyncio.to_thread(_sandbox, settings))
    checks.append(_disk(settings))
    return checks


def _registration_problem(settings: Settings) -> str | None:
    from bot.__main__ import _require_registered

    try:
        _require_registered(settings)
    except SettingsError as exc:
        return str(exc)
    return None


async def _database(settings: Settings) -> Check:
    from bot.store import Store, migration_state

    store = Store.connect(settings.resolved_database_url)
    try:
        current, head = await migration_state(store)
    except Exception as exc:  # any driver error: the operator needs its text
        return _fail(
            "database",
            f"cannot connect: {exc}".splitlines()[0],
            "check DATABASE_URL (or DATA_DIR for SQLite) and that the server is up",
        )
    finally:
        await store.close()
    if current != head:
        return _fail("database", f"migrations at {current or 'none'}, head is {head}", "run `compound db upgrade`")
    return Check("database", True, f"reachable, migrations at head ({head})")


async def _github(settings: Settings, webhook_url: str | None) -> list[Check]:
    import aiohttp
    import gidgethub

    from bot.github.client import GitHub, RetryPolicy
    from bot.metrics import Metrics

    where = f"GHE_HOST={settings.ghe_host}" if settings.ghe_host else "api.github.com"
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession() as session:
        github = GitHub.from_settings(session, settings, Metrics(), retry=RetryPolicy(attempts=1), timeout=timeout)
        client = github.app()
        try:
            app = await client.getitem("/app")
        except gidgethub.HTTPException as exc:
            fix = "check APP_ID and the private key (PRIVATE_KEY / PRIVATE_KEY_PATH) belong to the same App"
            return [_fail("github auth", f"GET /app answered {exc.status_code}", fix), *_skipped()]
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = f"cannot reach {settings.api_base_url}: {exc or type(exc).__name__}"
            return [_fail("github auth", detail, f"check the network and {where} (GHE_PROTOCOL)"), *_skipped()]
        checks = [Check("github auth", True, f"App {app.get('slug')!r} (id {app.get('id')})")]
        checks.append(await _hook_config(client, settings, webhook_url))
        checks.append(await _deliveries(client))
    return checks


def _skipped() -> list[Check]:
    return [
        _fail(name, "not checked: GitHub did not authenticate the App", "fix the github auth line first")
        for name in ("webhook config", "webhook deliveries")
    ]


async def _hook_config(client: Any, settings: Settings, webhook_url: str | None) -> Check:
    import gidgethub

    settings_page = "the App's settings on GitHub (General → Webhook)"
    try:
        config = await client.getitem("/app/hook/config")
    except gidgethub.HTTPException as exc:
        return _fail("webhook config", f"GET /app/hook/config answered {exc.status_code}", f"open {settings_page}")
    url = config.get("url") or ""
    expected = webhook_url or getattr(settings, "public_url", None)
    problems, fixes = [], []
    if not url:
        problems.append("no webhook URL")
        fixes.append(f"set the webhook URL to this service's {settings.webhook_path}")
    elif expected and url.rstrip("/") != expected.rstrip("/"):
        problems.append(f"URL is {url}, this service is {expected}")
        fixes.append(f"set the webhook URL to {expected}")
    elif not expected and urlsplit(url).path.rstrip("/") != settings.webhook_path.rstrip("/"):
        problems.append(f"URL {url} does not end in WEBHOOK_PATH {settings.webhook_path}")
        fixes.append(f"set the webhook URL's path to {settings.webhook_path} (or WEBHOOK_PATH to its path)")
    if config.get("content_type") != "json":
        problems.append(f"content type is {config.get('content_type')!r}")
        fixes.append("set Content type to application/json")
    if not config.get("secret"):
        problems.append("no secret set")
        fixes.append("set the webhook secret to WEBHOOK_SECRET's value")
    if str(config.get("insecure_ssl", "0")) != "0":
        problems.append("SSL verification is off")
        fixes.append("enable SSL verification")
    if problems:
        return _fail("webhook config", "; ".join(problems), "; ".join(fixes) + f" in {settings_page}")
    return Check("webhook config", True, f"{url}, json, secret set, SSL verified")


async def _deliveries(client: Any) -> Check:
    import gidgethub

    try:
        page = await client.getitem("/app/hook/deliveries?per_page=100")
    except gidgethub.HTTPException as exc:
        return _fail(
            "webhook deliveries",
            f"GET /app/hook/deliveries answered {exc.status_code}",
            "check the App's webhook is active in its settings on GitHub",
        )
    failed = [d for d in page if not 200 <= int(d.get("status_code") or 0) < 300]
    if failed:
        last = failed[0]
        detail = (
            f"{len(failed)} of the last {len(page)} failed, latest {last.get('guid')} "
            f"({last.get('event')}, {last.get('status_code')} {last.get('status')})"
        )
        return _fail(
            "webhook deliveries",
            detail,
            "make the webhook URL reach this service, then redeliver them from the App's Advanced settings",
        )
    return Check("webhook deliveries", True, f"none failed of the last {len(page)}")


def _agent_cli(settings: Settings) -> Check:
    backend = settings.agent_backend
    if backend == "command":
        words = shlex.split(settings.agent_command or "")
        executable = words[0] if words else ""
        hint = "install it, or correct AGENT_COMMAND"
    else:
        executable = EXECUTABLES[backend]
        hint = f"install it ({INSTALL_HINTS[backend]}) or choose another AGENT_BACKEND"
    path = shutil.which(executable) if executable else None
    if path is None:
        return _fail("agent cli", f"{executable or 'AGENT_COMMAND'} ({backend}) is not on PATH", hint)
    if backend == "command":
        return Check("agent cli", True, f"{path}")
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _fail("agent cli", f"{path} --version: {exc}", hint)
    output = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0:
        return _fail("agent cli", f"{path} --version exited {done.returncode}: {' '.join(output[-1:])}", hint)
    return Check("agent cli", True, f"{path} {output[0] if output else ''}".strip())


def _sandbox(settings: Settings) -> Check:
    from bot.agents.sandbox import probe

    s = settings
    sandbox = probe(
        s.agent_sandbox,
        paths=s.agent_sandbox_paths,
        network=s.agent_network,
        allow=s.agent_network_allow,
        user_name=s.agent_user,
    )
    if not sandbox.usable:
        return _fail("sandbox", sandbox.detail, "see docs/sandbox.md")
    return Check("sandbox", True, sandbox.describe())


def _disk(settings: Settings) -> Check:
    data_dir = settings.data_dir.resolve()
    existing = next(p for p in (data_dir, *data_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    shown = f"{free / (1 << 30):.1f} GiB free at {existing}"
    if free < MIN_FREE_BYTES:
        return _fail(
            "disk", shown, f"free space on that disk or point DATA_DIR elsewhere (needs {MIN_FREE_BYTES >> 30} GiB)"
        )
    return Check("disk", True, shown)


def report(checks: list[Check], *, as_json: bool) -> int:
    ok = all(c.ok for c in checks)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for check in checks:
            print(check.line())
        failed = sum(not c.ok for c in checks)
        print("all checks passed" if ok else f"{failed} of {len(checks)} checks failed")
    return 0 if ok else 1
