"""What every handler gets besides the event and the GitHub client (arq's `ctx`)."""

from __future__ import annotations

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
