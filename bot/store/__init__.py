"""The store: SQLAlchemy Core (async) over SQLite (default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.settings import SettingsError
from bot.store.base import utcnow
from bot.store.deliveries import SQLITE_BUSY_MS, DeliveryStore
from bot.store.installations import InstallationStore
from bot.store.learning import LearningStore
from bot.store.sessions import SessionStore
from bot.store.triggers import TriggerStore

# The intake's writer uses INSERT … RETURNING (3.35).
MIN_SQLITE = (3, 35, 0)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same in every Compound process.
_MIGRATION_LOCK = 0x0C0B0D


class Store:
    """Owns the engine; the per-table stores hang off it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.deliveries = DeliveryStore(engine)
        self.installations = InstallationStore(engine)
        self.sessions = SessionStore(engine)
        self.triggers = TriggerStore(engine)
        self.learning = LearningStore(engine)

    @classmethod
    def connect(cls, url: str, **engine_args: Any) -> Store:
        """Build a store from an async SQLAlchemy URL (see Settings.resolved_database_url)."""
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise SettingsError("DATABASE_URL: not a database URL; use sqlite:///path or postgresql://…") from exc
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise SettingsError(f"DATABASE_URL: unsupported scheme {backend!r}; use sqlite:///path or postgresql://…")
        if backend == "sqlite":
            if sqlite3.sqlite_version_info < MIN_SQLITE:
                raise SettingsError(
                    f"DATABASE_URL: SQLite {'.'.join(map(str, MIN_SQLITE))} or newer is needed and this "
                    f"Python has {sqlite3.sqlite_version}; use a newer Python build, or PostgreSQL"
                )
            if parsed.database and parsed.database != ":memory:":
                try:
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise SettingsError(
                        f"DATABASE_URL: cannot create the SQLite file's directory: {exc.strerror}"
                    ) from exc
            # One connection: SQLite has one writer anyway, and two connections of
            # one process would only wait on each other's locks (busy handler sleeps).
            engine_args.setdefault("pool_size", 1)
            engine_args.setdefault("max_overflow", 0)
            engine_args.setdefault("pool_timeout", 60)
            # Roll back on the way back to the pool only when a transaction is
            # open: on aiosqlite every rollback is a trip to its thread and
            # back, and the intake's writer returns the connection after each
            # batch with nothing open.
            engine_args.setdefault("pool_reset_on_return", None)
            # The intake's writer runs its statements on the event loop's thread
            # (see DeliveryStore._write_sqlite); aiosqlite opens it in its own.
            engine_args.setdefault("connect_args", {"check_same_thread": False})
            engine = create_async_engine(url, **engine_args)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine.pool, "reset", _sqlite_reset)
        else:
            engine_args.setdefault("pool_size", 10)
            engine_args.setdefault("max_overflow", 10)
            engine_args.setdefault("pool_pre_ping", True)
            # Plan each execution with its parameters: a cached generic plan made
            # while `deliveries` was small keeps scanning it whole once it is not
            # (the processed marks' UPDATE … WHERE delivery_id = ANY($2) did).
            engine_args.setdefault("connect_args", {"server_settings": {"plan_cache_mode": "force_custom_plan"}})
            engine = create_async_engine(url, **engine_args)
        return cls(engine)

    async def migrate(self) -> None:
        """Apply Alembic migrations up to head; safe to run from several processes.

        PostgreSQL serialises them with an advisory lock; SQLite (one machine)
        with a lock file beside the database.
        """
        if self.dialect == "postgresql":
            async with self.engine.begin() as conn:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                await conn.run_sync(_upgrade)
            return
        database = self.engine.url.database
        lock_path = Path(f"{database}.migrate-lock") if database and database != ":memory:" else None
        with open(lock_path or os.devnull, "a+b") as lock:
            if lock_path is not None:
                await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


async def check_reachable(url: str, timeout: float = 15.0) -> None:
    """Connect once and run `SELECT 1`; SettingsError naming DATABASE_URL when that fails.

    The CLI calls it before a command opens the store, so an unreachable or
    misnamed database is one line and exit 2, not a traceback from deep inside.
    """
    store = Store.connect(url)
    try:
        await asyncio.wait_for(store.ping(), timeout)
    except Exception as exc:  # any failure to connect is the setting's to report
        reason = getattr(exc, "orig", None) or exc
        detail = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        raise SettingsError(f"DATABASE_URL: cannot reach the database ({type(reason).__name__}: {detail})") from None
    finally:
        await store.close()


async def migration_state(store: Store) -> tuple[str | None, str]:
    """(the database's Alembic revision or None, the head this version ships)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    async with store.engine.connect() as conn:
        current = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    return current, head


async def check_migrated(url: str) -> None:
    """SettingsError when the database predates this version's schema.

    Commands that only read (`compound report`, `compound events export`) do not
    migrate a database behind the operator's back; they say what to run
    instead of failing on a missing table. A database a newer Compound has
    migrated further is read as it is.
    """
    from alembic.script import ScriptDirectory

    store = Store.connect(url)
    try:
        current, head = await migration_state(store)
    finally:
        await store.close()
    if current == head:
        return
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if current is None or current in known:
        raise SettingsError(
            f"DATABASE_URL: the database is not migrated (at {current or 'no revision'}, this version needs {head}); "
            "run `compound db upgrade` (or start `compound serve` once)"
        )


def _upgrade(sync_conn: Any) -> None:
    # Imported here: alembic costs a command that only reads (`compound report`) a quarter second.
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def _sqlite_reset(dbapi_conn: Any, _record: Any, state: Any) -> None:
    if not state.terminate_only and dbapi_conn.driver_connection.in_transaction:
        dbapi_conn.rollback()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; FULL makes every commit durable
    # (group commit in the intake keeps that affordable).
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    _sqlite_wal(cur)
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


# Between two tries of switching a database another process is writing to WAL.
WAL_RETRY_SECONDS = 0.05


def _sqlite_wal(cur: Any) -> None:
    """`PRAGMA journal_mode=WAL`, waiting for another process that holds the database.

    SQLite answers "database is locked" at once, without its busy handler,
    when the switch meets another connection's write lock (waiting could
    deadlock): `compound serve` and `compound worker` started together on a
    new database file did, and the second one exited with "cannot reach the
    database". So the switch is tried again until SQLITE_BUSY_MS has passed.
    It sleeps on the event loop's thread, which only a start-up contending for
    a database still being created ever pays for.
    """
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's own OperationalError, adapted by SQLAlchemy or not
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(WAL_RETRY_SECONDS)


__all__ = ["Store", "utcnow"]
