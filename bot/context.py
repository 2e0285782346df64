"""What every handler gets besides the event and the GitHub client (arq's `ctx`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.metrics import Metrics
    from bot.settings import Settings
    from bot.store import Store


@dataclass
class Context:
    settings: Settings
    store: Store
    metrics: Metrics
    github: Any = None  # bot.github.GitHub when the App is registered
    sessions: Any = None  # bot.sessions.manager.SessionManager


Handler = Callable[[Any, Any, "Context"], Awaitable[None]]


def needs_github(handler: Handler) -> Handler:
    """For handlers that act on GitHub: without a registered App (setup mode, or
    `compound receive` without credentials) they have nothing to act with."""

    @functools.wraps(handler)
    async def wrapper(event: Any, gh: Any, ctx: Context) -> None:
        if gh is None or ctx.sessions is None:
            logging.getLogger("compound.handlers").debug(
                "%s skipped: no GitHub App configured", handler.__name__
            )
            return
        await handler(event, gh, ctx)

    return wrapper
