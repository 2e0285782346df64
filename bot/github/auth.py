"""Credentials for talking to GitHub as the App and as its installations.

`AppAuth` signs App JWTs (reused for a few minutes rather than signed per
call). `InstallationTokens` holds installation access tokens until shortly
before they expire, so steady load costs one token request per installation
and scope per hour, and concurrent callers for one share one request. A scope
(`TokenScope`) narrows a token to some repositories and permissions: a round
pushes with one for its repository and `contents: write` only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
            self._jwt = apps.get_jwt(app_id=str(self.app_id), private_key=self._pem, expiration=_JWT_EXPIRATION)
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


@dataclass(frozen=True)
class TokenScope:
    """What a token is narrowed to when it is requested.

    `repositories` are names without the owner (the installation's account
    owns them all); `permissions` are (name, level) pairs. None leaves that
    side as wide as the installation: GitHub then grants every repository or
    every permission the installation has. Sorted, so equal scopes share a
    cache entry.
    """

    repositories: tuple[str, ...] | None = None
    permissions: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def of(cls, repositories: Iterable[str] | None = None, permissions: Mapping[str, str] | None = None) -> TokenScope:
        return cls(
            tuple(sorted(set(repositories))) if repositories is not None else None,
            tuple(sorted(permissions.items())) if permissions is not None else None,
        )

    @property
    def whole(self) -> bool:
        return self.repositories is None and self.permissions is None

    def body(self) -> dict[str, Any]:
        """The JSON body of POST /app/installations/{id}/access_tokens."""
        body: dict[str, Any] = {}
        if self.repositories is not None:
            body["repositories"] = list(self.repositories)
        if self.permissions is not None:
            body["permissions"] = dict(self.permissions)
        return body

    def __str__(self) -> str:  # for logs
        repos = ",".join(self.repositories) if self.repositories is not None else "all"
        perms = ",".join(f"{k}:{v}" for k, v in self.permissions) if self.permissions is not None else "all"
        return f"repositories={repos} permissions={perms}"


WHOLE_INSTALLATION = TokenScope()

# Creates one installation token: POST /app/installations/{id}/access_tokens
# with the scope's body, answering GitHub's JSON ({"token", "expires_at",
# "permissions", ...}).
TokenFetcher = Callable[[int, TokenScope], Awaitable[dict[str, Any]]]

_Key = tuple[int, TokenScope]


class InstallationTokens:
    """Installation access tokens per (installation, scope), cached until `margin`
    seconds before expiry.

    A token for the whole installation also tells what the installation was
    granted (its `permissions`); `granted()` remembers that, so narrower
    tokens ask only for what GitHub can give.
    """

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
        self._cache: cachetools.TLRUCache[_Key, InstallationToken] = cachetools.TLRUCache(
            maxsize=maxsize, ttu=self._expiry, timer=clock
        )
        self._inflight: dict[_Key, asyncio.Task[InstallationToken]] = {}
        self._granted: cachetools.LRUCache[int, dict[str, str]] = cachetools.LRUCache(maxsize=maxsize)

    def _expiry(self, _key: _Key, value: InstallationToken, _now: float) -> float:
        return value.expires_at - self._margin

    async def get(self, installation_id: int, scope: TokenScope = WHOLE_INSTALLATION) -> str:
        """A valid token for the installation and scope, requesting one only when needed."""
        key = (installation_id, scope)
        cached = self._cache.get(key)
        if cached is not None:
            return cached.token
        task = self._inflight.get(key)
        if task is None:
            # One request per (installation, scope) however many callers wait
            # for it. The task is kept until it finishes; shield() below keeps
            # a cancelled caller from cancelling it for the others.
            task = asyncio.ensure_future(self._request(key))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._forget_request(key, t))
        token = await asyncio.shield(task)
        return token.token

    async def granted(self, installation_id: int) -> dict[str, str] | None:
        """The permissions the installation was granted, as its last whole-installation
        token said (None if GitHub did not say). Costs a token request only when
        no such token is cached, so what it says is at most a token's life old."""
        await self.get(installation_id)
        known = self._granted.get(installation_id)
        return dict(known) if known is not None else None

    def _forget_request(self, key: _Key, task: asyncio.Task[InstallationToken]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    def invalidate(
        self, installation_id: int, token: str | None = None, scope: TokenScope = WHOLE_INSTALLATION
    ) -> None:
        """Forget the cached token (only if it is still `token`, when given).

        Passing the token that was refused keeps concurrent callers that all
        saw the same 401 from dropping the fresh token one of them fetched.
        """
        key = (installation_id, scope)
        cached = self._cache.get(key)
        if cached is not None and (token is None or cached.token == token):
            del self._cache[key]

    async def _request(self, key: _Key) -> InstallationToken:
        installation_id, scope = key
        if self._metrics is not None:
            self._metrics.token_requests.inc()
        fields = {"installation": installation_id, "scope": str(scope)}
        log.debug("requesting installation token", extra=fields)
        data = await self._fetch(installation_id, scope)
        expires_at = _parse_timestamp(data["expires_at"])
        token = InstallationToken(token=data["token"], expires_at=expires_at)
        self._cache[key] = token
        if scope.whole and isinstance(data.get("permissions"), dict):
            self._granted[installation_id] = {str(k): str(v) for k, v in data["permissions"].items()}
        log.info("installation token obtained", extra={**fields, "expires_at": data["expires_at"]})
        return token


def narrowed(wanted: Mapping[str, str], granted: Mapping[str, str]) -> dict[str, str]:
    """`wanted`, each permission capped at the level the installation was granted;
    one it was not granted at all is left out (GitHub refuses a token that asks
    for more than the installation has, with 422)."""
    levels = {"read": 1, "write": 2, "admin": 3}
    out: dict[str, str] = {}
    for name, level in wanted.items():
        have = granted.get(name)
        if have is None or have not in levels:
            continue
        out[name] = level if levels.get(level, 0) <= levels[have] else have
    return out


def _parse_timestamp(value: str) -> float:
    # GitHub writes "2016-07-11T22:14:10Z"; fromisoformat reads "Z" since 3.11.
    return datetime.fromisoformat(value).timestamp()
