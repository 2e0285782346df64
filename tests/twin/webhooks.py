"""Webhook deliveries, signed and headed exactly as GitHub sends them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import aiohttp

HOOK_ID = 424242


def signature_headers(body: bytes, secret: str) -> dict[str, str]:
    key = secret.encode()
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def delivery_headers(
    event: str, body: bytes, secret: str, app_id: int, delivery_id: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/7a1d2c3",
        "Accept": "*/*",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": str(HOOK_ID),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(app_id),
        **signature_headers(body, secret),
    }


async def deliver(
    url: str,
    event: str,
    payload: dict[str, Any],
    secret: str,
    app_id: int,
    delivery_id: str | None = None,
) -> tuple[int, str]:
    """POST one delivery; the receiver's status and body text."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = delivery_headers(event, body, secret, app_id, delivery_id)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=body, headers=headers) as response:
            return response.status, await response.text()
