"""Credentials for talking to GitHub as the App and as its installations.

`AppAuth` signs App JWTs (reused for a few minutes rather than signed per
call). `InstallationTokens` holds installation access tokens until shortly
before they expire, so steady load costs one token request per installation
per hour, and concurrent callers for one installation share one request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cachetools
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from gidgethub import apps

from bot.metrics import Metrics

log = logging.getLogger("compound.github")

# GitHub refuses JWTs whose `exp` is more than 10 minutes ahead; gidgethub
# backdates `iat` by 60 s, so a fresh JWT lives 9 minutes. Reusing it for 8
# leaves a minute of headroom for slow requests and clock skew.
_JWT_EXPIRATION = 10 * 60
_JWT_REUSE_FOR = 8 * 60

# An installation token is dropped this long before its `expires_at`, so a
# request never starts with a token about to lapse.
TOKEN_SAFETY_MARGIN = 5 * 60


class InvalidPrivateKey(ValueError):
    """The App's private key cannot be read as a PEM private key."""


class AppAuth:
    """The App's identity: its id and private key, and JWTs signed with it."""

    def __init__(
        self,
        app_id: int,
        private_key_pem: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # The message of the original error may quote the key material.
            raise InvalidPrivateKey("PRIVATE_KEY is not a PEM private key") from None
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.app_id = app_id
        # GitHub shows this same value next to the key in the App's settings
        # (`openssl rsa -pubout -outform DER | openssl sha256 -binary | base64`).
        digest = hashlib.sha256(public_der).digest()
        self.fingerprint = "SHA256:" + base64.b64encode(digest).decode()
        self._pem = private_key_pem
        self._clock = clock
        self._jwt: str | None = None
        self._jwt_renew_at = 0.0

    def jwt(self) -> str:
        """An App JWT, signed afresh only every few minutes."""
        now = self._clock()
        if self._jwt is None or now >= self._jwt_renew_at:
            self._jwt = apps.get_jwt(
                app_id=str(self.app_id), private_key=self._pem, expiration=_JWT_EXPIRATION
            )
            self._jwt_renew_at = now + _JWT_REUSE_FOR
        return self._jwt

    def __repr__(self) -> str:  # never the key
        return f"AppAuth(app_id={self.app_id}, fingerprint={self.fingerprint!r})"


@dataclass(frozen=True)
class InstallationToken:
    token: str
    expires_at: float  # seconds since the epoch

    def __repr__(self) -> str:  # never the token
        return f"InstallationToken(expires_at={self.expires_at})"


# Creates one installation token: POST /app/installations/{id}/access_tokens,
# answering GitHub's JSON ({"token": ..., "expires_at": ...}).
TokenFetcher = Callable[[int], Awaitable[dict[str, Any]]]


class InstallationTokens:
    """Installation access tokens, cached until `margin` seconds before expiry."""

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        metrics: Metrics | None = None,
        margin: float = TOKEN_SAFETY_MARGIN,
        maxsize: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._metrics = metrics
        self._margin = margin
        # The cache's clock is the wall clock because `expires_at` is one.
        self._cache: cachetools.TLRUCache[int, InstallationToken] = cachetools.TLRUCache(
            maxsize=maxsize, ttu=self._expiry, timer=clock
        )
        self._inflight: dict[int, asyncio.Task[InstallationToken]] = {}

    def _expiry(self, _key: int, value: InstallationToken, _now: float) -> float:
        return value.expires_at - self._margin

    async def get(self, installation_id: int) -> str:
        """A valid token for the installation, requesting one only when needed."""
        cached = self._cache.get(installation_id)
        if cached is not None:
            return cached.token
        task = self._inflight.get(installation_id)
        if task is None:
            # One request per installation however many callers wait for it.
            # The task is kept until it finishes; shield() below keeps a
            # cancelled caller from cancelling it for the others.
            task = asyncio.ensure_future(self._request(installation_id))
            self._inflight[installation_id] = task
            task.add_done_callback(lambda t: self._forget_request(installation_id, t))
        token = await asyncio.shield(task)
        return token.token

    def _forget_request(self, installation_id: int, task: asyncio.Task[InstallationToken]) -> None:
        if self._inflight.get(installation_id) is task:
            del self._inflight[installation_id]

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget the cached token (only if it is still `token`, when given).

        Passing the token that was refused keeps concurrent callers that all
        saw the same 401 from dropping the fresh token one of them fetched.
        """
        cached = self._cache.get(installation_id)
        if cached is not None and (token is None or cached.token == token):
            del self._cache[installation_id]

    async def _request(self, installation_id: int) -> InstallationToken:
        if self._metrics is not None:
            self._metrics.token_requests.inc()
        log.debug("requesting installation token", extra={"installation": installation_id})
        data = await self._fetch(installation_id)
        expires_at = _parse_timestamp(data["expires_at"])
        token = InstallationToken(token=data["token"], expires_at=expires_at)
        self._cache[installation_id] = token
        log.info(
            "installation token obtained",
            extra={"installation": installation_id, "expires_at": data["expires_at"]},
        )
        return token


def _parse_timestamp(value: str) -> float:
    # GitHub writes "2016-07-11T22:14:10Z"; fromisoformat reads "Z" since 3.11.
    return datetime.fromisoformat(value).timestamp()
