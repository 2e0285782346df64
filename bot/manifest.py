"""First-run App registration through GitHub's manifest flow (as Probot does).

When `compound serve` starts without `APP_ID`, the web app mounts these routes
instead of the webhook endpoint:

    from bot.manifest import setup_routes
    setup_routes(app, settings, env_path=Path(".env"))

- `GET /` explains that Compound is not registered yet and shows a form that
  POSTs the manifest built from `app.yml` to GitHub
  (`{web}/settings/apps/new`, or `{web}/organizations/{org}/settings/apps/new`
  with `?org=NAME`). The webhook URL and the redirect URL are derived from the
  URL the browser used (`X-Forwarded-Proto` / `X-Forwarded-Host` behind a
  proxy). A random `state` rides along and is checked on return.
- GitHub sends the browser back to `GET /setup?code=...&state=...`. Compound
  trades the code for the App's credentials (`POST
  /app-manifests/{code}/conversions`), writes `APP_ID`, `PRIVATE_KEY` (one
  line, literal `\\n`), `WEBHOOK_SECRET`, `GITHUB_CLIENT_ID` and
  `GITHUB_CLIENT_SECRET` into `env_path` (other lines kept, mode 0600), and
  shows a link to install the App. The running process does not switch modes:
  the operator restarts `compound serve`, which then reads the new `.env`.

After one successful registration the routes refuse a second one (409), so a
stray visitor cannot replace the credentials before the restart. The code, the
key and the secrets are never logged; the web app's access log should log
paths without query strings, since `/setup`'s carries the (single-use) code.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import cachetools
import gidgethub
import gidgethub.aiohttp
import jinja2
import yaml
from aiohttp import web
from dotenv.parser import parse_stream

from bot.github.client import REQUESTER
from bot.settings import Settings

log = logging.getLogger("compound.manifest")

# Repo root, next to the `bot` package; the working directory's app.yml wins.
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "app.yml"

# Keys GitHub's manifest accepts; anything else in app.yml is Compound's own.
MANIFEST_KEYS = (
    "name",
    "url",
    "description",
    "public",
    "hook_attributes",
    "redirect_url",
    "callback_urls",
    "setup_url",
    "setup_on_update",
    "request_oauth_on_install",
    "default_events",
    "default_permissions",
)

# GitHub's manifest codes live one hour; a state older than that is useless.
STATE_TTL = 3600

_ORG_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")

_templates = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Compound: {{ title }}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2em}button{font-size:1rem;padding:.5em 1em}</style>
</head><body><h1>{{ title }}</h1>{% block body %}{% endblock %}</body></html>"""

_REGISTER = _templates.from_string(
    _LAYOUT.replace(
        "{% block body %}{% endblock %}",
        """<p>Compound is running but is not registered as a GitHub App yet
(no <code>APP_ID</code> is set).</p>
<p>The button below registers it on GitHub from <code>app.yml</code>
{%- if org %} under the organization <strong>{{ org }}</strong>{% else %} under your
account (add <code>?org=NAME</code> to this page's URL for an organization){% endif %}.
GitHub sends its webhooks to <code>{{ hook_url }}</code>, then returns here
and Compound saves the App's credentials to <code>{{ env_path }}</code>.</p>
<form action="{{ action }}" method="post">
<input type="hidden" name="manifest" value="{{ manifest }}">
<button type="submit">Register Compound on GitHub</button>
</form>""",
    )
)

_DONE = _templates.from_string(
    _LAYOUT.replace(
        "{% block body %}{% endblock %}",
        """<p>The GitHub App <strong>{{ name }}</strong> (id {{ app_id }}) is
registered and its credentials are saved in <code>{{ env_path }}</code>.</p>
<ol><li><a href="{{ install_url }}">Install the App</a> on the repositories it
should work on.</li>
<li>Restart <code>compound serve</code> so that it picks up the new settings.</li></ol>""",
    )
)

_MESSAGE = _templates.from_string(
    _LAYOUT.replace("{% block body %}{% endblock %}", "<p>{{ message }}</p>")
)


class ManifestFlow:
    """The two pages of the flow, with the states handed out and not yet used."""

    def __init__(
        self,
        settings: Settings,
        env_path: Path,
        *,
        manifest_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.env_path = Path(env_path)
        if manifest_path is None:
            cwd_manifest = Path("app.yml")
            manifest_path = cwd_manifest if cwd_manifest.is_file() else DEFAULT_MANIFEST
        self.manifest_path = manifest_path
        self._states: cachetools.TTLCache[str, bool] = cachetools.TTLCache(
            maxsize=1024, ttl=STATE_TTL
        )
        self.registered: dict[str, Any] | None = None

    def manifest(self, base_url: str) -> dict[str, Any]:
        """The manifest GitHub receives: app.yml plus this server's URLs."""
        with self.manifest_path.open(encoding="utf-8") as f:
            spec = yaml.safe_load(f) or {}
        manifest = {k: spec[k] for k in MANIFEST_KEYS if k in spec}
        manifest["hook_attributes"] = {
            **(manifest.get("hook_attributes") or {}),
            "url": base_url + self.settings.webhook_path,
        }
        manifest["redirect_url"] = base_url + "/setup"
        return manifest

    async def register_page(self, request: web.Request) -> web.Response:
        if self.registered is not None:
            return _page(_MESSAGE, 409, title="Already registered",
                         message="Compound was just registered; restart `compound serve`.")
        org = request.query.get("org")
        web_base = self.settings.web_base_url
        if org:
            if not _ORG_NAME.match(org):
                return _page(_MESSAGE, 400, title="Invalid organization",
                             message=f"{org!r} is not a GitHub organization name.")
            new_app_url = f"{web_base}/organizations/{org}/settings/apps/new"
        else:
            new_app_url = f"{web_base}/settings/apps/new"
        state = secrets.token_urlsafe(24)
        self._states[state] = True
        base_url = external_base_url(request)
        manifest = self.manifest(base_url)
        return _page(
            _REGISTER,
            200,
            title="Register Compound",
            org=org,
            action=f"{new_app_url}?state={state}",
            manifest=json.dumps(manifest),
            hook_url=manifest["hook_attributes"]["url"],
            env_path=self.env_path,
        )

    async def setup_page(self, request: web.Request) -> web.Response:
        if self.registered is not None:
            return _page(_MESSAGE, 409, title="Already registered",
                         message="Compound was just registered; restart `compound serve`.")
        state = request.query.get("state", "")
        code = request.query.get("code", "")
        if not state or state not in self._states:
            return _page(_MESSAGE, 400, title="Registration not recognised",
                         message="This link does not belong to a registration started "
                                 "here, or it is over an hour old. Start again from the home page.")
        if not code:
            return _page(_MESSAGE, 400, title="No code",
                         message="GitHub's answer carried no code. Start again from the home page.")
        try:
            app = await self._convert(code)
        except gidgethub.BadRequest as exc:
            # 404 or 422: the code is unknown, used or expired; it stays dead.
            del self._states[state]
            log.warning("GitHub refused the manifest code (%s)", int(exc.status_code))
            return _page(_MESSAGE, 400, title="GitHub refused the registration code",
                         message=f"GitHub answered {int(exc.status_code)}: the code is unknown, "
                                 "already used or expired. Start again from the home page.")
        except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("manifest conversion failed: %s", type(exc).__name__)
            return _page(_MESSAGE, 502, title="GitHub could not be reached",
                         message="Trading the code for the App's credentials failed. "
                                 "Reload this page to try again.")
        del self._states[state]
        write_env(
            self.env_path,
            {
                "APP_ID": str(app["id"]),
                "PRIVATE_KEY": app["pem"].strip().replace("\r\n", "\n").replace("\n", "\\n"),
                "WEBHOOK_SECRET": app.get("webhook_secret") or "",
                "GITHUB_CLIENT_ID": app.get("client_id") or "",
                "GITHUB_CLIENT_SECRET": app.get("client_secret") or "",
            },
        )
        self.registered = {"id": app["id"], "slug": app.get("slug")}
        log.info("registered GitHub App id=%s slug=%s; settings written to %s",
                 app["id"], app.get("slug"), self.env_path)
        return _page(
            _DONE,
            200,
            title="Compound is registered",
            name=app.get("name") or app.get("slug") or app["id"],
            app_id=app["id"],
            install_url=f"{app['html_url'].rstrip('/')}/installations/new",
            env_path=self.env_path,
        )

    async def _convert(self, code: str) -> dict[str, Any]:
        # Unauthenticated: the code itself is the credential.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            gh = gidgethub.aiohttp.GitHubAPI(
                session, REQUESTER, base_url=self.settings.api_base_url
            )
            data = await gh.post("/app-manifests/{code}/conversions", {"code": code}, data=b"")
        return dict(data)


def setup_routes(
    app: web.Application,
    settings: Settings,
    env_path: Path,
    *,
    manifest_path: Path | None = None,
) -> ManifestFlow:
    """Mount `GET /` and `GET /setup` on `app`; returns the flow (for tests)."""
    flow = ManifestFlow(settings, env_path, manifest_path=manifest_path)
    app.router.add_get("/", flow.register_page)
    app.router.add_get("/setup", flow.setup_page)
    return flow


def external_base_url(request: web.Request) -> str:
    """The scheme and host the browser used, as a proxy reports them."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    return f"{proto or request.scheme}://{host or request.host}"


def write_env(path: Path, values: dict[str, str]) -> None:
    """Set `values` in the dotenv file at `path`, keeping its other lines.

    Written to a temporary file and renamed, so a crash leaves the old file;
    the result is readable by its owner only (it holds the App's key).
    """
    path = Path(path)
    try:
        original = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        original = ""
    out: list[str] = []
    written: set[str] = set()
    for binding in parse_stream(io.StringIO(original)):
        key = binding.key
        if key in values:
            if key not in written:  # a duplicate later line is dropped
                out.append(f"{key}={_quote(values[key])}\n")
                written.add(key)
        else:
            out.append(binding.original.string)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    out.extend(f"{k}={_quote(v)}\n" for k, v in values.items() if k not in written)
    fd, tmp = tempfile.mkstemp(prefix=".env.", dir=path.resolve().parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(out))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


def _quote(value: str) -> str:
    """A single-quoted dotenv value: python-dotenv decodes only `\\\\` and `\\'` there,
    so a PEM's literal `\\n` stays as written."""
    return "'" + re.sub(r"\\(?=[\\']|$)|'", lambda m: "\\" + m.group(0), value) + "'"


def _page(template: jinja2.Template, status: int, **context: Any) -> web.Response:
    return web.Response(text=template.render(**context), status=status, content_type="text/html")
