"""The App's own webhook: its configuration, and (minimal) its recent deliveries.

State lives on the twin as `twin.hook_config` / `twin.hook_deliveries`, made on
first use so a test can set them before or after the twin starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Call, Reply, operation

if TYPE_CHECKING:
    from ..server import GitHubTwin


def hook_config(twin: GitHubTwin) -> dict[str, Any]:
    """The App's webhook config as GitHub stores it (the secret in clear)."""
    config = getattr(twin, "hook_config", None)
    if config is None:
        config = {"url": "https://example.com/api/github/webhooks", "content_type": "json",
                  "secret": "twin-webhook-secret", "insecure_ssl": "0"}
        twin.hook_config = config  # type: ignore[attr-defined]
    return config


def hook_deliveries(twin: GitHubTwin) -> list[dict[str, Any]]:
    """Recent deliveries, newest first, in the shape of `hook-delivery-item`."""
    items = getattr(twin, "hook_deliveries", None)
    if items is None:
        items = []
        twin.hook_deliveries = items  # type: ignore[attr-defined]
    return items


def _shown(config: dict[str, Any]) -> dict[str, Any]:
    # GitHub never returns the secret: "********" when one is set, absent otherwise.
    shown = {k: v for k, v in config.items() if k != "secret"}
    if config.get("secret"):
        shown["secret"] = "********"
    return shown


@operation("apps/get-webhook-config-for-app")
async def get_webhook_config(call: Call) -> Reply:
    return Reply(200, _shown(hook_config(call.twin)))


@operation("apps/update-webhook-config-for-app")
async def update_webhook_config(call: Call) -> Reply:
    config = hook_config(call.twin)
    config.update({k: v for k, v in (call.json or {}).items() if v is not None})
    return Reply(200, _shown(config))


# Minimal, for `compound doctor` (first page only, no cursor). The catch-up
# redelivery work serves this operation with cursors too; keep one of the two.
@operation("apps/list-webhook-deliveries")
async def list_webhook_deliveries_first_page(call: Call) -> Reply:
    per_page = int(call.query.get("per_page", "30"))
    return Reply(200, hook_deliveries(call.twin)[:per_page])
