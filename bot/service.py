"""Builds the running service from Settings: store, GitHub client, intake, dispatcher."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.engine import make_url

import handlers
from bot import __version__
from bot.background import cancel
from bot.context import Context
from bot.dispatch import Dispatcher, DispatchPolicy
from bot.intake import DeliveryWriter, Intake
from bot.logs import install_record_context, redactor
from bot.metrics import Metrics
from bot.settings import Settings
from bot.setup_gate import SetupGate
from bot.skips import DeliveryGate
from bot.store import Store
from bot.web import create_app

log = logging.getLogger("compound.service")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Service:
    """One Compound process. `start()` opens everything, `stop()` closes it in order."""

    settings: Settings
    policy: DispatchPolicy | None = None
    run_workers: bool = True
    # `compound serve` reads WEBHOOK_PROXY_URL's channel; workers and `receive` do not.
    read_proxy: bool = False

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = DispatchPolicy(
                lease=self.settings.delivery_lease_seconds,
                max_attempts=self.settings.delivery_max_attempts,
            )
        self.owner = worker_id()
        self.metrics = Metrics()
        self.store = Store.connect(self.settings.resolved_database_url)
        self.session: aiohttp.ClientSession | None = None
        self.worker: Any = None
        self.github: Any = None
        self.sandbox: Any = None  # bot.agents.sandbox.Sandbox, once probed
        self.digest_task: asyncio.Task[None] | None = None  # the periodic digest (docs/report.md), when on
        self.catch_up: Any = None  # bot.redeliver.CatchUp, with GitHub and workers
        self.proxy: Any = None  # bot.proxy.ProxyChannel, with WEBHOOK_PROXY_URL
        self.retention: Any = None  # bot.retention.Retention, in worker processes
        # Setup mode: the one-time token `compound serve` prints (bot/setup_gate.py).
        self.setup_gate = SetupGate() if self.settings.app_id is None else None
        self.gate = DeliveryGate(self.store)
        self.context = Context(settings=self.settings, store=self.store, metrics=self.metrics, gate=self.gate)
        self.dispatcher = Dispatcher(
            router=handlers.router,
            store=self.store.deliveries,
            metrics=self.metrics,
            owner=self.owner,
            context=self.context,
            client_for=self._client_for,
            policy=self.policy,
            gate=self.gate,
        )
        self.writer = DeliveryWriter(self.store.deliveries, self.owner, self.policy.lease)
        secret = self.settings.webhook_secret
        self.intake = Intake(
            secret=secret.get_secret_value() if secret else None,
            writer=self.writer,
            dispatcher=self.dispatcher if self.run_workers else None,
            metrics=self.metrics,
            events=handlers.EVENTS,
        )

    def _client_for(self, installation_id: int | None) -> Any:
        if self.github is None:
            return None
        return self.github.installation(installation_id) if installation_id else self.github.app()

    async def start(self) -> None:
        install_record_context()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.store.migrate()
        self.session = aiohttp.ClientSession()
        if self.settings.github_configured:
            from bot.github import GitHub

            redactor.add_secret(self.settings.private_key_pem())
            self.github = GitHub.from_settings(self.session, self.settings, self.metrics)
            self.context.github = self.github
            self.dispatcher.breaker = self.github.breaker
            self.github.breaker.on_close.append(self.dispatcher.resume_held)
            self.gate.github = self.github
        if self.github is not None:
            app = await self._check_app()
            if app and self.read_proxy and not self.settings.webhook_proxy_url:
                await self._check_webhook_url()
            if self.run_workers:
                await self._probe_sandbox()
            self._start_sessions(app)
            if self.run_workers and self.settings.report_digest_repo:
                from bot.learning.digest import Digest

                digest = Digest(
                    self.settings, self.store, self.github, bot_login=f"{app.get('slug') or 'compound'}[bot]"
                )
                self.digest_task = asyncio.create_task(digest.run(), name="digest")
        self.writer.start()
        if self.run_workers:
            self.dispatcher.start()
        if self.read_proxy and self.settings.webhook_proxy_url and self.settings.webhook_secret:
            from bot.proxy import ProxyChannel

            self.proxy = ProxyChannel(self.settings.webhook_proxy_url, self.intake)
            self.proxy.start()
        if self.github is not None and self.run_workers and self.settings.redeliver == "on":
            self._start_catch_up()
        if self.run_workers and self.settings.retention_interval > 0:
            self._start_retention()
        log.info(
            "compound %s started",
            __version__,
            extra={
                "worker": self.owner,
                "database": _describe_db(self.settings.resolved_database_url),
                "app_id": self.settings.app_id,
                "key_fingerprint": self.github.auth.fingerprint if self.github else None,
                "api": self.settings.api_base_url,
                "workers": self.run_workers,
            },
        )

    def _start_catch_up(self) -> None:
        from datetime import timedelta

        from bot.redeliver import CatchUp

        s = self.settings
        self.catch_up = CatchUp(
            self.github,
            self.store.engine,
            events=handlers.EVENTS,
            window=timedelta(hours=s.redeliver_window_hours),
            interval=s.redeliver_interval,
            recent=timedelta(hours=1),
            cap=s.redeliver_max,
        )
        self.catch_up.start()

    def _start_retention(self) -> None:
        """The periodic retention pass (docs/operations.md#retention): every worker process
        runs one; the store's lock lets one at a time do it."""
        from bot.retention import Retention
        from bot.workspace import Workspaces

        workspaces = Workspaces(self.settings.data_dir, self.settings.git_base_url)
        self.retention = Retention.from_settings(self.settings, self.store, workspaces)
        self.retention.start()

    async def _check_app(self) -> dict[str, Any]:
        """Say at start which App the credentials belong to; GitHub being down is no reason to stop."""
        try:
            app = await self.github.app().getitem("/app")
        except Exception as exc:
            log.warning("could not verify the App's credentials with GitHub: %s", exc)
            return {}
        log.info("authenticated as GitHub App %r (id %s)", app.get("slug"), app.get("id"))
        return dict(app)

    async def _check_webhook_url(self) -> None:
        """Warn when the App's webhook URL is one GitHub can never reach (a localhost registration).

        Nothing would arrive, and nothing else would say why; the setup page
        warns before registering, this says it on every start after.
        """
        from bot.reachability import reachability_advice

        try:
            config = await asyncio.wait_for(self.github.app().getitem("/app/hook/config"), 10)
        except Exception as exc:  # GitHub down or the endpoint refused: not a reason to stop
            log.debug("could not read the App's webhook config: %s", exc)
            return
        url = config.get("url") or ""
        advice = (
            reachability_advice(url, proxy_url=None)
            if url
            else (
                "the App has no webhook URL: set one in its settings on GitHub (General → Webhook), "
                "or set WEBHOOK_PROXY_URL to a proxy channel"
            )
        )
        if advice:
            log.warning(
                "webhooks will not arrive: %s Then put that URL in the App's settings on GitHub "
                "(General → Webhook URL).",
                advice,
            )

    async def _probe_sandbox(self) -> None:
        """Find what isolates agents on this host (docs/sandbox.md), before any round runs."""
        import asyncio

        from bot.agents.lending import make_private
        from bot.agents.sandbox import probe

        s = self.settings
        self.sandbox = await asyncio.to_thread(
            probe,
            s.agent_sandbox,
            paths=s.agent_sandbox_paths,
            network=s.agent_network,
            allow=s.agent_network_allow,
            user_name=s.agent_user,
        )
        if self.sandbox.mode == "user":
            # File modes are all that keeps the agent (another user) out: from
            # here on nothing the service writes is anyone else's to read.
            os.umask(0o077)
            await asyncio.to_thread(self.sandbox.reclaim, s.data_dir.resolve())  # and harden_data_dir
            make_private([Path(".env"), s.credentials_file, s.private_key_path], streams=(1, 2))

    def _start_sessions(self, app: dict[str, Any]) -> None:
        from bot.agents import AgentRunner
        from bot.agents.orphans import RunRecords
        from bot.events import EventLog
        from bot.learning import Learning
        from bot.prompts import Prompts
        from bot.sessions.manager import SessionManager
        from bot.sessions.worker import BotIdentity, SessionWorker
        from bot.workspace import Workspaces

        events = EventLog(
            self.settings.events_path,
            self.store.sessions,
            max_bytes=int(self.settings.events_max_mb * 1024 * 1024),
            keep=self.settings.events_keep,
        )
        identity = BotIdentity(slug=app.get("slug") or "compound")
        learning = Learning(
            self.store.sessions,
            self.store.learning,
            self.github,
            events,
            self.settings.lesson_holdout,
            enabled=self.settings.learning == "on",
        )
        events.listeners.append(learning.on_event)
        runner = AgentRunner(sandbox=self.sandbox, records=RunRecords(self.settings.data_dir / "agents"))
        if self.run_workers:
            from bot.learning.reflect import Reflector

            learning.reflector = Reflector(self.settings, runner, Prompts())
            assert self.policy is not None  # __post_init__ sets it
            self.worker = SessionWorker(
                settings=self.settings,
                store=self.store.sessions,
                github=self.github,
                workspaces=Workspaces(self.settings.data_dir, self.settings.git_base_url),
                prompts=Prompts(),
                events=events,
                owner=self.owner,
                identity=identity,
                lease=self.policy.lease,
                runner=runner,
                learning=learning,
            )
            self.worker.start()
        self.context.sessions = SessionManager(
            self.settings,
            self.store.sessions,
            events,
            self.worker,
            bot_login=identity.login,
            learning=learning,
        )

    async def stop(self) -> None:
        await cancel(self.digest_task)
        if self.retention is not None:
            await self.retention.close()
        if self.proxy is not None:
            await self.proxy.close()
        if self.catch_up is not None:
            await self.catch_up.close()
        if self.worker is not None:
            await self.worker.close()
        await self.writer.close()
        if self.run_workers:
            await self.dispatcher.stop()
        if self.session is not None:
            await self.session.close()
        await self.store.close()

    def web_app(self) -> web.Application:
        return create_app(
            self.settings,
            intake=self.intake,
            store=self.store,
            metrics=self.metrics,
            setup_gate=self.setup_gate,
            sandbox=lambda: self.sandbox.health() if self.sandbox is not None else None,
        )


def _describe_db(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
