"""First-run App registration through GitHub's manifest flow (as Probot does).

When `compound serve` starts without `APP_ID`, the web app mounts these routes
instead of the webhook endpoint:

    from bot.manifest import setup_routes
    setup_routes(app, settings, env_path=settings.credentials_file, gate=SetupGate())

- Every page answers 403 to a browser the gate has not admitted: only the
  one that opened the one-time link `compound serve` printed
  (`bot/setup_gate.py`). The link's `/?token=...` sets the gate's cookie
  and redirects to `/`, so the token does not stay in the address bar.
- `GET /` explains that Compound is not registered yet and shows a form that
  POSTs the manifest built from `app.yml` to GitHub
  (`{web}/settings/apps/new`, or `{web}/organizations/{org}/settings/apps/new`
  with `?org=NAME`). The webhook URL and the redirect URL are derived from the
  URL the browser used (`X-Forwarded-Proto` / `X-Forwarded-Host` behind a
  proxy). A random `state`, bound to the admitted browser, rides along and is
  checked on return.
- GitHub sends the browser back to `GET /setup?code=...&state=...`. Compound
  trades the code for the App's credentials (`POST
  /app-manifests/{code}/conversions`), writes the private key to
  `github-app-{id}.private-key.pem` next to `env_path` and `APP_ID`,
  `PRIVATE_KEY_PATH`, `WEBHOOK_SECRET`, `GITHUB_CLIENT_ID` and
  `GITHUB_CLIENT_SECRET` into `env_path` (other lines kept, both files mode
  0600, values bare so that `docker run --env-file` reads them too; see
  `bot/envfile.py`), and shows a link to install the App. If either file
  cannot be written, the page shows the credentials instead, once: GitHub
  never hands out that key again. The running process does not switch modes:
  the operator restarts `compound serve`, whose settings loader reads
  `env_path`.

After one successful registration the routes refuse a second one (409), so a
stray visitor cannot replace the credentials before the restart. The code, the
key and the secrets are never logged; the web app's access log should log
paths without query strings, since `/setup`'s carries the (single-use) code.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import cachetools
import gidgethub
import gidgethub.aiohttp
import jinja2
import yaml
from aiohttp import web

from bot.envfile import UnsafeValue, plain, write_env, write_private
from bot.github.client import REQUESTER
from bot.reachability import reachability_advice
from bot.settings import Settings
from bot.setup_gate import SetupGate

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
{% if unreachable %}<p class="warning" role="alert"><strong>Webhooks will not arrive.</strong> {{ unreachable }}
Then restart <code>compound serve</code> and open this page again.</p>{% endif %}
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
registered. Its settings are saved in <code>{{ env_path }}</code> and its
private key in <code>{{ key_path }}</code> (both readable by this service's
user only).</p>
<ol><li><a href="{{ install_url }}">Install the App</a> on the repositories it
should work on.</li>
<li>Restart <code>compound serve</code> so that it picks up the new settings.</li></ol>""",
    )
)

_UNSAVED = _templates.from_string(
    _LAYOUT.replace(
        "{% block body %}{% endblock %}",
        """<p>The GitHub App <strong>{{ name }}</strong> (id {{ app_id }}) is
registered, but Compound could not save its credentials to
<code>{{ env_path }}</code>: {{ error }}.</p>
<p><strong>Copy them now.</strong> This page is shown once, and GitHub never
shows the private key again (you could only generate a new one in the App's
settings).</p>
<ol><li>Save the private key below to a file only the service can read, e.g.
<code>{{ key_name }}</code> with mode 0600.</li>
<li>Put these settings in the service's environment or in a dotenv file it
reads (<code>ENV_FILE</code>), with <code>PRIVATE_KEY_PATH</code> naming the
key file:
<pre id="settings">{{ settings_text }}</pre></li>
<li><a href="{{ install_url }}">Install the App</a> on the repositories it
should work on, and restart <code>compound serve</code>.</li></ol>
<pre id="private-key">{{ pem }}</pre>""",
    )
)

_MESSAGE = _templates.from_string(_LAYOUT.replace("{% block body %}{% endblock %}", "<p>{{ message }}</p>"))

_REGISTERED = {"title": "Already registered", "message": "Compound was just registered; restart `compound serve`."}
_FORBIDDEN = {
    "title": "Setup link needed",
    "message": "Only the browser that opened the one-time setup link printed on "
    "compound serve's console can register Compound. Restart "
    "compound serve for a new link if it was used elsewhere.",
}


class ManifestFlow:
    """The two pages of the flow, with the states handed out and not yet used."""

    def __init__(
        self,
        settings: Settings,
        env_path: Path,
        *,
        gate: SetupGate,
        manifest_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.env_path = Path(env_path)
        self.gate = gate
        if manifest_path is None:
            cwd_manifest = Path("app.yml")
            manifest_path = cwd_manifest if cwd_manifest.is_file() else DEFAULT_MANIFEST
        self.manifest_path = manifest_path
        # state -> the browser session it was handed to
        self._states: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize=1024, ttl=STATE_TTL)
        self.registered: dict[str, Any] | None = None

    def manifest(self, base_url: str) -> dict[str, Any]:
        """The manifest GitHub receives: app.yml plus this server's URLs."""
        with self.manifest_path.open(encoding="utf-8") as f:
            spec = yaml.safe_load(f) or {}
        manifest = {k: spec[k] for k in MANIFEST_KEYS if k in spec}
        manifest["hook_attributes"] = {
            **(manifest.get("hook_attributes") or {}),
            # With a proxy channel GitHub sends to the channel, Compound reads it (bot/proxy.py).
            "url": self.settings.webhook_proxy_url or base_url + self.settings.webhook_path,
        }
        manifest["redirect_url"] = base_url + "/setup"
        return manifest

    async def register_page(self, request: web.Request) -> web.StreamResponse:
        browser = self.gate.browser(request)
        if browser is None or "token" in request.query:
            return self._admit(request, browser)
        if self.registered is not None:
            return _page(_MESSAGE, 409, **_REGISTERED)
        org = request.query.get("org")
        web_base = self.settings.web_base_url
        if org:
            if not _ORG_NAME.match(org):
                return _page(
                    _MESSAGE, 400, title="Invalid organization", message=f"{org!r} is not a GitHub organization name."
                )
            new_app_url = f"{web_base}/organizations/{org}/settings/apps/new"
        else:
            new_app_url = f"{web_base}/settings/apps/new"
        state = secrets.token_urlsafe(24)
        self._states[state] = browser
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
            unreachable=reachability_advice(
                manifest["hook_attributes"]["url"], proxy_url=self.settings.webhook_proxy_url
            ),
        )

    def _admit(self, request: web.Request, browser: str | None) -> web.StreamResponse:
        """The one-time link: set the browser's cookie and drop the token from the URL."""
        session = browser or self.gate.admit(request)  # the link opened again: still in
        if session is None:
            log.warning("setup page refused: not the browser that opened the setup link")
            return _page(_MESSAGE, 403, **_FORBIDDEN)
        query = {k: v for k, v in request.query.items() if k != "token"}
        response = web.Response(status=303, headers={"Location": request.rel_url.with_query(query).path_qs})
        _private(response)
        secure = external_base_url(request).startswith("https://")
        self.gate.set_cookie(response, session, secure=secure)
        if browser is None:
            log.info("setup link used; this browser may now register the App")
        return response

    async def setup_page(self, request: web.Request) -> web.Response:
        browser = self.gate.browser(request)
        if browser is None:
            log.warning("setup callback refused: not the browser that opened the setup link")
            return _page(_MESSAGE, 403, **_FORBIDDEN)
        if self.registered is not None:
            return _page(_MESSAGE, 409, **_REGISTERED)
        state = request.query.get("state", "")
        code = request.query.get("code", "")
        owner = self._states.get(state) if state else None
        if owner is None or not hmac.compare_digest(owner, browser):
            return _page(
                _MESSAGE,
                400,
                title="Registration not recognised",
                message="This link does not belong to a registration started "
                "here, or it is over an hour old. Start again from the home page.",
            )
        if not code:
            return _page(
                _MESSAGE,
                400,
                title="No code",
                message="GitHub's answer carried no code. Start again from the home page.",
            )
        try:
            app = await self._convert(code)
        except gidgethub.BadRequest as exc:
            # 404 or 422: the code is unknown, used or expired; it stays dead.
            del self._states[state]
            log.warning("GitHub refused the manifest code (%s)", int(exc.status_code))
            return _page(
                _MESSAGE,
                400,
                title="GitHub refused the registration code",
                message=f"GitHub answered {int(exc.status_code)}: the code is unknown, "
                "already used or expired. Start again from the home page.",
            )
        except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("manifest conversion failed: %s", type(exc).__name__)
            return _page(
                _MESSAGE,
                502,
                title="GitHub could not be reached",
                message="Trading the code for the App's credentials failed. Reload this page to try again.",
            )
        del self._states[state]
        # From here on the credentials exist only in `app`: whatever happens,
        # this request shows or saves them, and no second registration runs.
        self.registered = {"id": app["id"], "slug": app.get("slug")}
        name = app.get("name") or app.get("slug") or app["id"]
        install_url = f"{app['html_url'].rstrip('/')}/installations/new"
        key_path = self.env_path.parent.resolve() / key_file_name(app["id"])
        values = credential_values(app, key_path)
        try:
            save_credentials(self.env_path, key_path, values, app["pem"])
        except (OSError, UnsafeValue) as exc:
            error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log.error(
                "registered GitHub App id=%s slug=%s but could not save its credentials "
                "to %s (%s); the setup page shows them once",
                app["id"],
                app.get("slug"),
                self.env_path,
                error,
            )
            return _page(
                _UNSAVED,
                200,
                title="Save Compound's credentials",
                name=name,
                app_id=app["id"],
                env_path=self.env_path,
                error=error,
                key_name=key_path.name,
                settings_text="".join(f"{k}={v}\n" for k, v in values.items() if v is not None),
                pem=_pem(app["pem"]),
                install_url=install_url,
            )
        log.info(
            "registered GitHub App id=%s slug=%s; settings written to %s, key to %s",
            app["id"],
            app.get("slug"),
            self.env_path,
            key_path,
        )
        return _page(
            _DONE,
            200,
            title="Compound is registered",
            name=name,
            app_id=app["id"],
            install_url=install_url,
            env_path=self.env_path,
            key_path=key_path,
        )

    async def _convert(self, code: str) -> dict[str, Any]:
        # Unauthenticated: the code itself is the credential.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            gh = gidgethub.aiohttp.GitHubAPI(session, REQUESTER, base_url=self.settings.api_base_url)
            data = await gh.post("/app-manifests/{code}/conversions", {"code": code}, data=b"")
        return dict(data)


def setup_routes(
    app: web.Application,
    settings: Settings,
    env_path: Path,
    *,
    gate: SetupGate,
    manifest_path: Path | None = None,
) -> ManifestFlow:
    """Mount `GET /` and `GET /setup` on `app`; returns the flow (for tests)."""
    flow = ManifestFlow(settings, env_path, gate=gate, manifest_path=manifest_path)
    app.router.add_get("/", flow.register_page)
    app.router.add_get("/setup", flow.setup_page)
    return flow


def external_base_url(request: web.Request) -> str:
    """The scheme and host the browser used, as a proxy reports them."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    return f"{proto or request.scheme}://{host or request.host}"


def key_file_name(app_id: object) -> str:
    return f"github-app-{app_id}.private-key.pem"


def credential_values(app: dict[str, Any], key_path: Path) -> dict[str, str | None]:
    """The dotenv settings for a converted manifest; PRIVATE_KEY is removed, the file wins."""
    return {
        "APP_ID": str(app["id"]),
        "PRIVATE_KEY": None,
        "PRIVATE_KEY_PATH": str(key_path),
        "WEBHOOK_SECRET": app.get("webhook_secret") or "",
        "GITHUB_CLIENT_ID": app.get("client_id") or "",
        "GITHUB_CLIENT_SECRET": app.get("client_secret") or "",
    }


def save_credentials(env_path: Path, key_path: Path, values: dict[str, str | None], pem: str) -> None:
    """The key to its own file, then the settings; a failure leaves neither behind."""
    for name, value in values.items():
        if value is not None:
            plain(name, value)  # refuse before writing anything
    existed = key_path.exists()
    write_private(key_path, _pem(pem))
    try:
        write_env(env_path, values)
    except BaseException:
        if not existed:
            key_path.unlink(missing_ok=True)
        raise


def _pem(pem: str) -> str:
    return pem.strip().replace("\r\n", "\n") + "\n"


def _private(response: web.StreamResponse) -> None:
    # Setup pages carry secrets or tokens: not cached, not leaked as a Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"


def _page(template: jinja2.Template, status: int, **context: Any) -> web.Response:
    response = web.Response(text=template.render(**context), status=status, content_type="text/html")
    _private(response)
    return response
