"""The aiohttp application: webhook intake, health, metrics, first-run setup."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.intake import MAX_BODY, Intake
from bot.metrics import Metrics
from bot.settings import Settings
from bot.setup_gate import SetupGate
from bot.store import Store

log = logging.getLogger("compound.web")


def create_app(
    settings: Settings,
    *,
    intake: Intake,
    store: Store,
    metrics: Metrics,
    setup_gate: SetupGate | None = None,
    sandbox: Callable[[], dict[str, Any] | None] = lambda: None,
) -> web.Application:
    """Build the web app from its parts; nothing here opens a socket."""
    # aiohttp refuses to read past GitHub's 25 MB cap; the intake answers 413.
    app = web.Application(client_max_size=MAX_BODY)

    async def healthz(request: web.Request) -> web.Response:
        try:
            await store.ping()
        except Exception as exc:
            log.warning("health check: store unreachable: %s", exc)
            return web.json_response({"status": "unavailable", "store": "unreachable"}, status=503)
        body: dict[str, Any] = {"status": "ok", "store": store.dialect, "registered": settings.github_configured}
        if (isolation := sandbox()) is not None:
            body["sandbox"] = isolation  # how agents are isolated here (docs/sandbox.md)
        return web.json_response(body)

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_post(settings.webhook_path, intake.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    if settings.app_id is None:
        from bot.manifest import setup_routes

        # Without a gate nobody could pass; with one, only the console's link does.
        setup_routes(app, settings, settings.credentials_file, gate=setup_gate or SetupGate())
    return app
