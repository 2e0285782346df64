"""Whether GitHub can reach a webhook URL, and what to do when it cannot.

GitHub delivers from the internet: a URL on this machine (localhost, a
loopback address) or on a private network never receives anything. The setup
page and `compound serve` say so, and offer the two ways out: a webhook proxy
channel (WEBHOOK_PROXY_URL, bot/proxy.py) or a public URL.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def unreachable_reason(url: str) -> str | None:
    """Why GitHub (on the internet) cannot reach `url`, or None if nothing says it cannot."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if not host:
        return "it has no host"
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return f"{host} is this machine"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host.endswith((".local", ".internal", ".lan", ".home.arpa")) or "." not in host:
            return f"{host} is a local network name"
        return None
    if address.is_loopback:
        return f"{host} is a loopback address (this machine)"
    if address.is_unspecified:
        return f"{host} is not an address anyone can connect to"
    if address.is_private or address.is_link_local:
        return f"{host} is a private network address"
    return None


def reachability_advice(webhook_url: str, *, proxy_url: str | None) -> str | None:
    """What to tell the operator when GitHub will not reach the webhook URL; None when fine."""
    if proxy_url:
        return None
    why = unreachable_reason(webhook_url)
    if why is None:
        return None
    return (
        f"GitHub cannot deliver webhooks to {webhook_url}: {why}, not reachable from the internet. "
        "Either create a webhook proxy channel (https://smee.io/new) and set WEBHOOK_PROXY_URL to it, "
        "so Compound reads the deliveries from there; or serve Compound at a public HTTPS URL "
        "(a reverse proxy or a tunnel) and open the setup page through that URL."
    )
