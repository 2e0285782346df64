"""Disk full on the data volume: intake answers 503, logs one line, recovers by itself.

A full disk is simulated with SQLite's `max_page_count` pragma on the real
store file: SQLite then fails writes with SQLITE_FULL ("database or disk is
full"), exactly the error a full volume gives, through the same write path
(aiosqlite, the intake's batch writer), without needing root to mount a tiny
filesystem. Raising the limit again is "space returns".
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from bot.service import Service
from tests.conftest import serving
from tests.test_front import connection, read_response, request, stored

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def deliver(port: int) -> tuple[int, str]:
    wire, delivery = request()
    async with connection(port) as (reader, writer):
        writer.write(wire)
        return (await read_response(reader))[0], delivery


async def set_max_pages(service: Service, pages: int) -> None:
    # The store has one SQLite connection; the pragma applies to it.
    async with service.store.engine.connect() as conn:
        await conn.execute(text(f"PRAGMA max_page_count = {pages}"))


async def test_a_full_disk_is_503_one_line_and_recovery(service: Service, caplog):
    async with serving(service) as listener:
        assert (await deliver(listener.port))[0] == 202
        async with service.store.engine.connect() as conn:
            used = (await conn.execute(text("PRAGMA page_count"))).scalar()
        await set_max_pages(service, used)
        with caplog.at_level(logging.WARNING, logger="compound"):
            answers = [await deliver(listener.port) for _ in range(5)]
        assert [s for s, _ in answers] == [503] * 5
        for _, delivery in answers:
            assert not await stored(service, delivery)
        refusals = [r for r in caplog.records if "refuses writes" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
        assert "full" in refusals[0].getMessage()
        await set_max_pages(service, 1_000_000_000)
        status, delivery = await deliver(listener.port)
        assert status == 202
        assert await stored(service, delivery)
