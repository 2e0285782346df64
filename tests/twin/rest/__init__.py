"""REST operation handlers, registered by OpenAPI operation id."""

from . import (  # noqa: F401  (registers handlers)
    actions,
    apps,
    checks,
    hook_deliveries,  # noqa: F401  (registers handlers)
    hooks,
    issues,
    pulls,
    repos,
    reviews,
    statuses,
    users,
)
from .base import HANDLERS, ApiError, Call, Reply, operation

__all__ = ["HANDLERS", "ApiError", "Call", "Reply", "operation"]
