"""Installations of the App and the repositories they cover."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.base import utcnow
from bot.store.schema import installations as inst
from bot.store.schema import repositories as repos


@dataclass(slots=True)
class Installation:
    id: int
    account_login: str
    account_type: str | None
    repository_selection: str | None
    suspended: bool
    deleted: bool


@dataclass(slots=True)
class Repository:
    id: int
    installation_id: int
    full_name: str
    private: bool
    removed: bool


class InstallationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def upsert(
        self,
        installation_id: int,
        *,
        account_login: str,
        account_type: str | None,
        repository_selection: str | None,
        suspended: bool = False,
        deleted: bool = False,
    ) -> None:
        now = utcnow()
        values = {
            "account_login": account_login,
            "account_type": account_type,
            "repository_selection": repository_selection,
            "suspended": suspended,
            "deleted": deleted,
            "updated_at": now,
        }
        stmt = self._insert(inst).values(id=installation_id, created_at=now, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[inst.c.id], set_=values)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def set_flags(self, installation_id: int, **flags: bool) -> None:
        stmt = update(inst).where(inst.c.id == installation_id).values(updated_at=utcnow(), **flags)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def get(self, installation_id: int) -> Installation | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(inst).where(inst.c.id == installation_id))).first()
        if row is None:
            return None
        m = row._mapping
        return Installation(
            id=m["id"],
            account_login=m["account_login"],
            account_type=m["account_type"],
            repository_selection=m["repository_selection"],
            suspended=bool(m["suspended"]),
            deleted=bool(m["deleted"]),
        )

    async def add_repositories(self, installation_id: int, items: Iterable[dict[str, Any]]) -> None:
        """Record repositories (GitHub's `{id, full_name, private}` objects) as covered."""
        now = utcnow()
        rows = [
            {
                "id": r["id"],
                "installation_id": installation_id,
                "full_name": r["full_name"],
                "private": bool(r.get("private", False)),
                "removed": False,
                "updated_at": now,
            }
            for r in items
        ]
        if not rows:
            return
        stmt = self._insert(repos)
        stmt = stmt.on_conflict_do_update(
            index_elements=[repos.c.id],
            set_={
                "installation_id": stmt.excluded.installation_id,
                "full_name": stmt.excluded.full_name,
                "private": stmt.excluded.private,
                "removed": False,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt, rows)

    async def remove_repositories(self, installation_id: int, repo_ids: Iterable[int]) -> None:
        ids = list(repo_ids)
        stmt = update(repos).where(repos.c.installation_id == installation_id).values(removed=True, updated_at=utcnow())
        if ids:
            stmt = stmt.where(repos.c.id.in_(ids))
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def repositories(self, installation_id: int, *, include_removed: bool = False) -> list[Repository]:
        stmt = select(repos).where(repos.c.installation_id == installation_id).order_by(repos.c.full_name)
        if not include_removed:
            stmt = stmt.where(repos.c.removed.is_(False))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            Repository(
                id=m["id"],
                installation_id=m["installation_id"],
                full_name=m["full_name"],
                private=bool(m["private"]),
                removed=bool(m["removed"]),
            )
            for m in (row._mapping for row in rows)
        ]

    async def repository_removed(self, installation_id: int, full_name: str) -> bool:
        """Was the App removed from this repository (and not added back)?

        Only what an `installation_repositories` or `installation` event said:
        a repository the store never heard of is not removed (an installation
        on all repositories is not told of each new one).
        """
        stmt = select(repos.c.removed).where(
            repos.c.installation_id == installation_id, func.lower(repos.c.full_name) == full_name.lower()
        )
        async with self.engine.connect() as conn:
            flags = list((await conn.execute(stmt)).scalars())
        return bool(flags) and all(flags)
