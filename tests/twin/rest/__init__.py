"""REST operation handlers, registered by OpenAPI operation id."""

from . import actions, apps, checks, hooks, issues, pulls, repos, reviews, statuses, users  # noqa: F401  (registers handlers)
from . import hook_deliveries  # noqa: F401  (registers handlers)
from .base import HANDLERS, ApiError, Call, Reply, operation

__all__ = ["HANDLERS", "ApiError", "Call", "Reply", "operation"]
