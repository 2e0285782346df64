"""Shared fixtures: databases (SQLite and a fresh PostgreSQL database per run), services."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import text

from bot.dispatch import DispatchPolicy
from bot.front import Listener, listen
from bot.logs import install_record_context
from bot.service import Service
from bot.settings import Settings, load_settings
from bot.store import Store
from bot.store.schema import metadata

pytest_plugins = ["tests.twin.fixtures"]

# The PostgreSQL server the machine runs (trust auth). The suite creates its own
# database there and drops it at the end; it never skips when the server is down.
PG_ADMIN_URL = os.environ.get("COMPOUND_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
WEBHOOK_SECRET = "test-webhook-secret-0f3c"


@pytest.fixture(scope="session", autouse=True)
def _log_context() -> None:
    install_record_context()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test run."""
    name = f"compound_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Plain database URLs, as an operator writes DATABASE_URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'compound.db'}"
    return request.getfixturevalue("pg_url")


async def _empty(store: Store) -> None:
    async with store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(text(f"DELETE FROM {table.name}"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    from bot.settings import async_database_url

    store = Store.connect(async_database_url(database_url))
    await store.migrate()
    await _empty(store)
    try:
        yield store
    finally:
        await _empty(store)
        await store.close()


def make_settings(tmp_path: Path, **env: object) -> Settings:
    values: dict[str, object] = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_FORMAT": "text",
    }
    values.update(env)
    return load_settings(_env_file=None, **values)


def twin_settings(tmp_path: Path, twin: Any, **env: object) -> Settings:
    """Settings of a registered App whose GitHub is the twin (over plain HTTP)."""
    return make_settings(
        tmp_path,
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        **env,
    )


FAST = DispatchPolicy(lease=2.0, max_attempts=3, backoff=0.05, sweep_interval=0.2)


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    """A started service (no GitHub App configured) on the parametrized database."""
    svc = Service(make_settings(tmp_path, DATABASE_URL=database_url), policy=FAST)
    await svc.start()
    await _empty(svc.store)
    try:
        yield svc
    finally:
        await svc.stop()


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[Listener]:
    """`service` behind the front on a free loopback port, as `compound serve` serves it."""
    listener = await listen(
        service.web_app(), service.intake, host="127.0.0.1", port=0, path=service.settings.webhook_path
    )
    try:
        yield listener
    finally:
        await listener.close(grace=1.0)


@pytest.fixture
async def http(service: Service) -> AsyncIterator[aiohttp.ClientSession]:
    """A client for the started `service` served as `compound serve` serves it."""
    async with serving(service) as listener, aiohttp.ClientSession(base_url=listener.url) as session:
        yield session


@pytest.fixture
async def webhook_url(service: Service) -> AsyncIterator[str]:
    """Where the started `service` takes deliveries, served as `compound serve` serves it."""
    async with serving(service) as listener:
        yield listener.url + service.settings.webhook_path


def agent_user_name(name: str = "compound-agent") -> str:
    """The unprivileged account user-mode tests run agents as (AGENT_USER).

    Tests run as root here and in CI: the account is made (a system user with
    its own group, no home) if missing, as the Docker image has it; `nobody`
    if it cannot be made.
    """
    import pwd
    import subprocess

    if os.geteuid() != 0:
        return name
    for attempt in range(2):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            if attempt == 0:  # another test process may be making it too: look again either way
                subprocess.run(
                    ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                     "--shell", "/usr/sbin/nologin", name],
                    capture_output=True,
                )  # fmt: skip
    return "nobody"
