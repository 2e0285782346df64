"""What every handler gets besides the event and the GitHub client (arq's `ctx`)."""

from __future__ import annotations

import contextvars
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
    configs: Any = None  # bot.config_cache.ConfigCache: repo configs kept CONFIG_CACHE_SECONDS
    gate: Any = None  # bot.skips.DeliveryGate: told when an installation changes

    def __post_init__(self) -> None:
        if self.configs is None:
            from bot.config_cache import ConfigCache

            self.configs = ConfigCache(self.settings.config_cache_seconds)


Handler = Callable[[Any, Any, "Context"], Awaitable[None]]


# Why handlers did nothing, for `compound receive` to print (`skip`, `record_skips`).
_handler: contextvars.ContextVar[str] = contextvars.ContextVar("handler", default="handler")
_skips: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("skips", default=None)


def record_skips() -> dict[str, str]:
    """From now on in this context, `skip` also records its reason here, by handler name."""
    skips: dict[str, str] = {}
    _skips.set(skips)
    return skips


def skip(reason: str) -> None:
    """Say why the running handler does nothing with this event (debug log; `compound receive`)."""
    name = _handler.get()
    logging.getLogger("compound.handlers").debug("%s skipped: %s", name, reason)
    skips = _skips.get()
    if skips is not None:
        skips[name] = reason


def needs_github(handler: Handler) -> Handler:
    """For handlers that act on GitHub: without a registered App (setup mode, or
    `compound receive` without credentials) they have nothing to act with."""

    @functools.wraps(handler)
    async def wrapper(event: Any, gh: Any, ctx: Context) -> None:
        token = _handler.set(handler.__name__)
        try:
            if gh is None or ctx.sessions is None:
                return skip("no GitHub App configured (APP_ID and a private key)")
            await handler(event, gh, ctx)
        finally:
            _handler.reset(token)

    return wrapper
