"""Webhook deliveries: stored before the 202, processed once, retried, recovered.

A delivery belongs to the process that claimed it until `claimed_until`; a
live process keeps extending its claims (heartbeat), so the deliveries of a
process that died become claimable by any other process (or by itself after a
restart) once the lease runs out.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.store.base import aware, utcnow
from bot.store.payloads import pack
from bot.store.schema import Payload
from bot.store.schema import deliveries as d
from bot.store.schema import delivery_payloads as body_table

PENDING, PROCESSED, FAILED = "pending", "processed", "failed"
# Not run through the handlers, for a reason recorded with it (bot/skips.py).
SKIPPED = "skipped"


@dataclass(slots=True)
class DeliveryRecord:
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repo: str | None
    # The body exactly as GitHub sent and signed it (JSON, UTF-8).
    payload: bytes
    attempts: int = 0
    # Handlers that still have to succeed; None means all of them.
    pending_handlers: list[str] | None = None
    status: str = PENDING
    last_error: str | None = None
    skip_reason: str | None = None
    received_at: datetime | None = None
    processed_at: datetime | None = None
    # Set by the intake: whether the receiving process keeps it to process itself.
    claimed: bool = False


# The hot path (every delivery stored, every delivery marked processed) is
# written at the driver level: one precompiled statement per batch, sent in a
# single call, instead of SQLAlchemy building and executing statements (on
# aiosqlite that is a thread hand-off per cursor, execute, fetch and commit).
_COLUMNS = (
    "delivery_id, event, action, installation_id, repo, payload, received_at, "
    "status, attempts, next_attempt_at, claimed_by, claimed_until"
)
_MARK_PROCESSED = (
    f"status = '{PROCESSED}', processed_at = {{now}}, claimed_by = NULL, claimed_until = NULL, "
    "pending_handlers = NULL, attempts = attempts + 1"
)
# PostgreSQL: one statement (hence one transaction and one round trip) marks the
# processed ones and stores the new ones, from arrays.
_PG_WRITE = f"""
WITH done AS (
    UPDATE {d.name} SET {_MARK_PROCESSED.format(now="$1")}
    WHERE delivery_id = ANY($2::varchar[])
)
INSERT INTO {d.name} ({_COLUMNS})
SELECT i, e, a, n, r, p, $1, '{PENDING}', 0, $1, c, u
FROM unnest($3::varchar[], $4::varchar[], $5::varchar[], $6::bigint[], $7::varchar[],
            $8::text[], $9::varchar[], $10::timestamptz[]) AS t(i, e, a, n, r, p, c, u)
ON CONFLICT (delivery_id) DO NOTHING
RETURNING delivery_id
"""
# SQLite keeps the body in delivery_payloads (schema.py): the row gets an
# empty `payload` and the number of its body.
_SQLITE_ROW = f"(?, ?, ?, ?, ?, x'', ?, '{PENDING}', 0, ?, ?, ?, ?)"
_SQLITE_STRIDE = 10  # parameters per row
_SQLITE_NEXT_BODY = f"SELECT coalesce(max(id), 0) + 1 FROM {body_table.name}"
# The ids as one JSON array: one statement whatever their number.
_SQLITE_MARK = (
    f"UPDATE {d.name} SET {_MARK_PROCESSED.format(now='?')} WHERE delivery_id IN (SELECT value FROM json_each(?))"
)


@functools.cache  # n is at most the writer's batch size
def _sqlite_insert(n: int) -> str:
    values = ", ".join([_SQLITE_ROW] * n)
    # RETURNING gives the ids really inserted (SQLite 3.35+): one statement, no look-up.
    return (
        f"INSERT INTO {d.name} ({_COLUMNS}, payload_id) VALUES {values} "
        "ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id"
    )


@functools.cache
def _sqlite_insert_bodies(n: int) -> str:
    return f"INSERT INTO {body_table.name} (id, payload) VALUES " + ", ".join(["(?, ?)"] * n)


# How long a SQLite connection waits for another process's write lock (ms).
SQLITE_BUSY_MS = 10_000


@dataclass(slots=True)
class _SqliteBatch:
    """One write's statements and their parameters, ready to run."""

    marks: tuple[str, str] | None  # (processed_at, JSON array of ids)
    insert_sql: str | None
    insert_params: list[Any]  # _SQLITE_STRIDE a row, the body's number last (set by run)
    bodies: list[bytes]  # packed, in the rows' order

    def run(self, db: sqlite3.Connection) -> list[Any]:
        """Inside the open transaction: mark, insert; the rows of the ids really inserted."""
        if self.marks is not None:
            db.execute(_SQLITE_MARK, self.marks)
        if self.insert_sql is None:
            return []
        # The bodies' numbers: the write lock is ours, so nobody else takes these.
        first = db.execute(_SQLITE_NEXT_BODY).fetchone()[0]
        params, bodies = self.insert_params, self.bodies
        for i in range(len(bodies)):
            params[i * _SQLITE_STRIDE + _SQLITE_STRIDE - 1] = first + i
        inserted = db.execute(self.insert_sql, params).fetchall()
        # Bodies for the rows really inserted; a duplicate's number stays unused.
        if len(inserted) == len(bodies):
            numbered = [(first + i, body) for i, body in enumerate(bodies)]
        else:
            new = {row[0] for row in inserted}
            numbered = [(first + i, body) for i, body in enumerate(bodies) if params[i * _SQLITE_STRIDE] in new]
        if numbered:
            db.execute(_sqlite_insert_bodies(len(numbered)), [v for pair in numbered for v in pair])
        return inserted


def _sqlite_statements(db: sqlite3.Connection, batch: _SqliteBatch) -> list[Any] | None:
    """On the event loop: open the transaction and run its statements, not the commit.

    They only change pages in SQLite's cache, and on this thread nobody else
    wants the GIL that each step gives back; in aiosqlite's thread every step
    had to take it back from the busy event loop (`perf`: a third of that
    thread's time went to futex waits and context switches).
    Returns the ids inserted, or None when another process holds the
    write lock: waiting for it here would stop the loop, so the caller runs
    the whole transaction in the thread instead (`_sqlite_write`).
    """
    db.execute("PRAGMA busy_timeout=0")
    try:
        # IMMEDIATE: the write lock now, where not getting it at once is
        # handled, not at the first write, where the loop would wait for it.
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        return None
    finally:
        db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    try:
        return batch.run(db)
    except BaseException:
        db.rollback()
        raise


def _sqlite_commit(db: sqlite3.Connection) -> None:
    """In aiosqlite's thread: the WAL write, its fsync, and now and then a checkpoint."""
    try:
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _sqlite_write(db: sqlite3.Connection, batch: _SqliteBatch) -> list[Any]:
    """In aiosqlite's thread: the whole transaction, waiting for the write lock if need be."""
    try:
        db.execute("BEGIN IMMEDIATE")
        inserted = batch.run(db)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return inserted


async def _driver(conn: AsyncConnection) -> Any:
    """The DBAPI driver's own connection under `conn` (asyncpg's or aiosqlite's).

    Typed Any: SQLAlchemy types it so, being the driver's own class.
    """
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:  # only after the pooled connection was invalidated
        raise RuntimeError("the database connection was invalidated")
    return driver


class DeliveryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        timestamp = d.c.received_at.type.dialect_impl(engine.dialect)
        # How SQLAlchemy binds a datetime on this dialect (SQLite: its text format).
        self._bind_time: Callable[[datetime], Any] = timestamp.bind_processor(engine.dialect) or (lambda value: value)
        # PostgreSQL: the intake's writer keeps one connection between its
        # batches; a checkout per batch costs a round trip (the pre-ping).
        self._held: AsyncConnection | None = None

    async def insert_new(self, records: Sequence[DeliveryRecord], owner: str | None, lease: float) -> set[str]:
        """Store the deliveries not stored before, claimed by `owner`; return their ids.

        With `owner=None` they are stored unclaimed, for any process to claim.
        """
        return await self.write(records, owner, lease, claim_all=True)

    async def mark_processed(self, delivery_ids: Iterable[str]) -> None:
        await self.write((), None, 0.0, processed=delivery_ids)

    async def write(
        self,
        records: Sequence[DeliveryRecord],
        owner: str | None,
        lease: float,
        processed: Iterable[str] = (),
        *,
        claim_all: bool = False,
        hold: bool = False,
    ) -> set[str]:
        """One transaction: mark `processed` done, store the `records` not stored before.

        A record is claimed by `owner` when `claim_all` or its `claimed` is set,
        otherwise stored unclaimed. Returns the ids of the records really new.
        `hold`: for one caller that writes one batch at a time (the intake's
        writer), keep the PostgreSQL connection for the next call; give it
        back with `release_held`.
        """
        done = list(processed)
        if not records and not done:
            return set()
        now = utcnow()
        until = now + timedelta(seconds=lease)
        rows: dict[str, DeliveryRecord] = {}
        for r in records:
            rows.setdefault(r.delivery_id, r)
        if self._postgres:
            return await self._write_postgres(rows, done, now, owner, until, claim_all, hold)
        return await self._write_sqlite(rows, done, now, owner, until, claim_all)

    async def _write_postgres(
        self,
        rows: dict[str, DeliveryRecord],
        done: list[str],
        now: datetime,
        owner: str | None,
        until: datetime,
        claim_all: bool,
        hold: bool,
    ) -> set[str]:
        records = rows.values()
        claimers = [owner if claim_all or r.claimed else None for r in records]
        args = (
            now,
            done,
            list(rows),
            [r.event for r in records],
            [r.action for r in records],
            [r.installation_id for r in records],
            [r.repo for r in records],
            [r.payload.decode() for r in records],
            claimers,
            [until if c is not None else None for c in claimers],
        )
        if not hold:
            async with self.engine.connect() as conn:
                # asyncpg outside a transaction: the statement commits by itself.
                result = await (await _driver(conn)).fetch(_PG_WRITE, *args)
            return {row[0] for row in result}
        held = self._held
        if held is not None and (await _driver(held)).is_closed():
            await self.release_held()  # the server closed it (a restart): take a fresh one
            held = None
        if held is None:
            held = self._held = await self.engine.connect()
        try:
            result = await (await _driver(held)).fetch(_PG_WRITE, *args)
        except BaseException:
            await self.release_held(invalidate=True)
            raise
        return {row[0] for row in result}

    async def release_held(self, *, invalidate: bool = False) -> None:
        """Give the connection kept by `write(hold=True)` back to the pool (or drop it)."""
        conn, self._held = self._held, None
        if conn is None:
            return
        try:
            if invalidate:
                await conn.invalidate()
            await conn.close()
        except Exception:  # it is gone either way
            pass

    async def _write_sqlite(
        self,
        rows: dict[str, DeliveryRecord],
        done: list[str],
        now: datetime,
        owner: str | None,
        until: datetime,
        claim_all: bool,
    ) -> set[str]:
        at = self._bind_time(now)
        claimed_until = self._bind_time(until)
        marks = insert_sql = None
        insert_params: list[Any] = []
        bodies: list[bytes] = []
        if done:
            marks = (at, orjson.dumps(done).decode())
        if rows:
            insert_sql = _sqlite_insert(len(rows))
            for r in rows.values():
                claimer = owner if claim_all or r.claimed else None
                insert_params += (
                    r.delivery_id,
                    r.event,
                    r.action,
                    r.installation_id,
                    r.repo,
                    at,
                    at,
                    claimer,
                    claimed_until if claimer is not None else None,
                    None,
                )
                bodies.append(pack(r.payload))
        async with self.engine.connect() as conn:
            driver = await _driver(conn)  # aiosqlite.Connection
            db = driver._conn
            # The pool's one connection is ours until the block ends: aiosqlite's
            # thread runs nothing else on it meanwhile, so this thread may.
            batch = _SqliteBatch(marks, insert_sql, insert_params, bodies)
            inserted = _sqlite_statements(db, batch)
            # aiosqlite's own queue to its thread (SQLAlchemy's adapter uses it too).
            if inserted is None:
                inserted = await driver._execute(_sqlite_write, db, batch)
            else:
                await driver._execute(_sqlite_commit, db)
        return {row[0] for row in inserted}

    async def claim_due(self, owner: str, lease: float, limit: int = 100) -> list[DeliveryRecord]:
        """Claim pending deliveries nobody holds and whose retry time has come."""
        now = utcnow()
        due = (
            select(d.c.delivery_id)
            .where(
                d.c.status == PENDING,
                or_(d.c.claimed_until.is_(None), d.c.claimed_until < now),
                or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now),
            )
            .order_by(d.c.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            update(d)
            .where(d.c.delivery_id.in_(due))
            .values(claimed_by=owner, claimed_until=now + timedelta(seconds=lease))
            .returning(*_RECORD_COLUMNS)
        )
        async with self.engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
        records = [_record(row) for row in rows]
        records.sort(key=lambda r: r.received_at or now)
        return records

    async def renew(self, owner: str, lease: float) -> int:
        """Heartbeat: extend every claim this process holds."""
        stmt = (
            update(d)
            .where(d.c.claimed_by == owner, d.c.status == PENDING)
            .values(claimed_until=utcnow() + timedelta(seconds=lease))
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def release(self, owner: str, delivery_id: str | None = None) -> None:
        """Give up this process's claims (all, or one): others may take them at once."""
        stmt = (
            update(d).where(d.c.claimed_by == owner, d.c.status == PENDING).values(claimed_by=None, claimed_until=None)
        )
        if delivery_id is not None:
            stmt = stmt.where(d.c.delivery_id == delivery_id)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def mark_attempt_failed(
        self,
        delivery_id: str,
        *,
        pending_handlers: list[str],
        error: str,
        retry_at: datetime | None,
        lease: float,
        count: bool = True,
    ) -> int:
        """Record a failed attempt; `retry_at=None` parks the delivery as failed.

        `count=False`: a delivery held while GitHub is down; its attempts stay.
        """
        values: dict[str, Any] = {
            "attempts": d.c.attempts + (1 if count else 0),
            "pending_handlers": json.dumps(sorted(pending_handlers)),
            "last_error": error[-4000:],
        }
        if retry_at is None:
            values.update(status=FAILED, claimed_by=None, claimed_until=None, processed_at=utcnow())
        else:
            # Keep the claim until the retry is due (plus the lease), so another
            # process does not pick it up early; if we die it becomes free.
            values.update(next_attempt_at=retry_at, claimed_until=retry_at + timedelta(seconds=lease))
        stmt = update(d).where(d.c.delivery_id == delivery_id).values(**values).returning(d.c.attempts)
        async with self.engine.begin() as conn:
            attempts: int = (await conn.execute(stmt)).scalar_one()
        return attempts

    async def mark_skipped(self, delivery_id: str, reason: str) -> bool:
        """Record that the delivery will not be acted on, and why; False if it was not pending."""
        stmt = (
            update(d)
            .where(d.c.delivery_id == delivery_id, d.c.status == PENDING)
            .values(
                status=SKIPPED,
                skip_reason=reason[:500],
                processed_at=utcnow(),
                claimed_by=None,
                claimed_until=None,
                pending_handlers=None,
            )
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def get(self, delivery_id: str) -> DeliveryRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*_RECORD_COLUMNS).where(d.c.delivery_id == delivery_id))).first()
        return _record(row) if row else None

    async def count(self, status: str | None = None) -> int:
        stmt = select(func.count()).select_from(d)
        if status is not None:
            stmt = stmt.where(d.c.status == status)
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).scalar_one()


# The body: in delivery_payloads (SQLite rows since migration 0004), else in the row.
_PAYLOAD = func.coalesce(
    select(body_table.c.payload).where(body_table.c.id == d.c.payload_id).scalar_subquery(),
    d.c.payload,
    type_=Payload,
).label("payload")

_RECORD_COLUMNS = (
    d.c.delivery_id,
    d.c.event,
    d.c.action,
    d.c.installation_id,
    d.c.repo,
    _PAYLOAD,
    d.c.attempts,
    d.c.pending_handlers,
    d.c.status,
    d.c.last_error,
    d.c.skip_reason,
    d.c.received_at,
    d.c.processed_at,
)


def _record(row: Any) -> DeliveryRecord:
    m = row._mapping
    pending = m["pending_handlers"]
    return DeliveryRecord(
        delivery_id=m["delivery_id"],
        event=m["event"],
        action=m["action"],
        installation_id=m["installation_id"],
        repo=m["repo"],
        payload=m["payload"],
        attempts=m["attempts"],
        pending_handlers=json.loads(pending) if pending else None,
        status=m["status"],
        last_error=m["last_error"],
        skip_reason=m["skip_reason"],
        received_at=aware(m["received_at"]),
        processed_at=aware(m["processed_at"]),
    )
