"""`installation` and `installation_repositories`: which accounts and repos have the App."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context

router = routing.Router()
log = logging.getLogger("compound.handlers.installations")


def _account(installation: dict[str, Any]) -> tuple[str, str | None]:
    account = installation.get("account") or {}
    # Enterprise installations carry `slug`/`name` instead of `login`.
    login = account.get("login") or account.get("slug") or account.get("name") or "unknown"
    return login, account.get("type")


async def _record_installation(event: sansio.Event, ctx: Context, **flags: bool) -> int:
    installation = event.data["installation"]
    login, account_type = _account(installation)
    await ctx.store.installations.upsert(
        installation["id"],
        account_login=login,
        account_type=account_type,
        repository_selection=installation.get("repository_selection"),
        suspended=flags.get("suspended", bool(installation.get("suspended_at"))),
        deleted=flags.get("deleted", False),
    )
    installation_id: int = installation["id"]
    _changed(ctx, installation_id)
    return installation_id


def _changed(ctx: Context, installation_id: int) -> None:
    """What the store says of the installation changed: deliveries for it are skipped, or no longer."""
    if ctx.gate is not None:
        ctx.gate.forget(installation_id)


@router.register("installation", action="created")
async def on_installation_created(event: sansio.Event, gh: Any, ctx: Context) -> None:
    installation_id = await _record_installation(event, ctx)
    repositories = event.data.get("repositories") or []
    await ctx.store.installations.add_repositories(installation_id, repositories)
    _changed(ctx, installation_id)
    log.info("installed on %d repositories", len(repositories), extra={"installation": installation_id})


@router.register("installation", action="deleted")
async def on_installation_deleted(event: sansio.Event, gh: Any, ctx: Context) -> None:
    installation_id = await _record_installation(event, ctx, deleted=True)
    await ctx.store.installations.remove_repositories(installation_id, [])
    _changed(ctx, installation_id)
    log.info("uninstalled", extra={"installation": installation_id})


@router.register("installation", action="suspend")
async def on_installation_suspend(event: sansio.Event, gh: Any, ctx: Context) -> None:
    await _record_installation(event, ctx, suspended=True)


@router.register("installation", action="unsuspend")
async def on_installation_unsuspend(event: sansio.Event, gh: Any, ctx: Context) -> None:
    await _record_installation(event, ctx, suspended=False)


@router.register("installation", action="new_permissions_accepted")
async def on_installation_new_permissions_accepted(event: sansio.Event, gh: Any, ctx: Context) -> None:
    await _record_installation(event, ctx)


@router.register("installation_repositories", action="added")
async def on_installation_repositories_added(event: sansio.Event, gh: Any, ctx: Context) -> None:
    installation_id = await _record_installation(event, ctx)
    await ctx.store.installations.add_repositories(installation_id, event.data.get("repositories_added") or [])
    _changed(ctx, installation_id)


@router.register("installation_repositories", action="removed")
async def on_installation_repositories_removed(event: sansio.Event, gh: Any, ctx: Context) -> None:
    installation_id = await _record_installation(event, ctx)
    removed = [r["id"] for r in event.data.get("repositories_removed") or []]
    if removed:
        await ctx.store.installations.remove_repositories(installation_id, removed)
        _changed(ctx, installation_id)
