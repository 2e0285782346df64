"""The App's own webhook configuration (its deliveries: hook_deliveries.py).

State lives on the twin as `twin.hook_config`, made on
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
        config = {
            "url": "https://example.com/api/github/webhooks",
            "content_type": "json",
            "secret": "twin-webhook-secret",
            "insecure_ssl": "0",
        }
        twin.hook_config = config  # type: ignore[attr-defined]
    return config


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
