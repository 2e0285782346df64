"""GitHub REST clients for the App and its installations.

`GitHub` is the factory the service holds; `github.app()` and
`github.installation(id)` hand out `GitHubClient`s, which are gidgethub
clients (`getitem`, `getiter`, `post`, ...). Everything Compound adds lives in
`GitHubClient._request`, the single I/O seam of gidgethub, so gidgethub's own
header, pagination, ETag-cache and error code still run around it:

- authentication: the App JWT, or the installation token fetched lazily on
  the first request (a handler that makes no call costs no token request),
  refreshed once on a 401; `github.repository(id, "o/r", permissions)` hands
  out a client whose token reaches that one repository only;
- retries with bounded exponential backoff on 5xx, secondary rate limits and
  primary rate-limit exhaustion, honouring `Retry-After` / `x-ratelimit-reset`
  (see `RetryPolicy` for the numbers);
- metrics per HTTP exchange and rate-limit gauges per installation.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import http
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import cachetools
import gidgethub
import gidgethub.aiohttp
import gidgethub.sansio

from bot.github.auth import (
    TOKEN_SAFETY_MARGIN,
    WHOLE_INSTALLATION,
    AppAuth,
    InstallationTokens,
    TokenScope,
    narrowed,
)
from bot.github.breaker import CircuitBreaker
from bot.metrics import Metrics
from bot.settings import Settings, SettingsError

log = logging.getLogger("compound.github")

REQUESTER = "Compound"

# The only permission of the token git pushes with (GitHub adds metadata:read).
PUSH_PERMISSIONS = {"contents": "write"}

# Methods whose repetition has the same effect as one call. Only these are
# retried after a network error: a POST or PATCH that failed in transit may
# already have been applied (a comment posted twice is worse than an error the
# delivery's own retry deals with).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# A request that never got a complete answer (TimeoutError covers aiohttp's
# ServerTimeoutError and the total-timeout error).
_NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)

Sleep = Callable[[float], Awaitable[None]]

# Set while a request runs, so that the installation-token request it makes
# is counted with it by the breaker, not as a request of its own.
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("compound_github_request", default=False)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a request is retried.

    With the defaults a request is tried at most 4 times; between tries it
    waits 1 s, 2 s, then 4 s (5xx, network errors), or what GitHub asks for:
    `Retry-After`, or until `x-ratelimit-reset` when the primary limit is used
    up, or 60 s for a secondary limit that names no delay (GitHub's advice).
    A single wait longer than `max_wait` is not waited out: the error is
    raised so that the delivery is retried later instead of holding a worker.
    """

    attempts: int = 4
    backoff: float = 1.0
    max_wait: float = 60.0
    secondary_wait: float = 60.0

    def backoff_for(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based)."""
        return min(self.backoff * 2.0 ** (attempt - 1), self.max_wait)


class GitHub:
    """Hands out GitHub clients sharing one HTTP session, token cache and ETag cache."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base_url: str,
        auth: AppAuth,
        metrics: Metrics,
        cache: MutableMapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        token_margin: float = TOKEN_SAFETY_MARGIN,
        timeout: aiohttp.ClientTimeout | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.session = session
        # One per GitHub host: every client this factory hands out shares it.
        self.breaker = breaker or CircuitBreaker(urlsplit(api_base_url).hostname or api_base_url)
        self.api_base_url = api_base_url
        self.auth = auth
        self.metrics = metrics
        # gidgethub keys this cache by URL and stores (etag, last-modified,
        # body, next-page); GETs send If-None-Match and reuse the body on 304.
        # Sharing it across installations is safe: GitHub answers 304 only
        # when the caller may see the resource and it is unchanged.
        self.cache: MutableMapping[str, Any] = cache if cache is not None else cachetools.LRUCache(maxsize=4096)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.timeout = timeout or aiohttp.ClientTimeout(total=60)
        self.tokens = InstallationTokens(self._create_installation_token, metrics=metrics, margin=token_margin)

    @classmethod
    def from_settings(
        cls,
        session: aiohttp.ClientSession,
        settings: Settings,
        metrics: Metrics,
        **kwargs: Any,
    ) -> GitHub:
        pem = settings.private_key_pem()
        if settings.app_id is None or pem is None:
            raise SettingsError("APP_ID and PRIVATE_KEY (or PRIVATE_KEY_PATH) are required")
        auth = AppAuth(settings.app_id, pem)
        kwargs.setdefault(
            "breaker",
            CircuitBreaker(
                urlsplit(settings.api_base_url).hostname or settings.api_base_url,
                threshold=settings.github_breaker_threshold,
                cooldown=settings.github_breaker_cooldown,
            ),
        )
        return cls(session, api_base_url=settings.api_base_url, auth=auth, metrics=metrics, **kwargs)

    def app(self) -> GitHubClient:
        """A client authenticated as the App itself (JWT)."""
        return GitHubClient(self, installation_id=None)

    def installation(self, installation_id: int) -> GitHubClient:
        """A client acting as the given installation (a token for all its repositories)."""
        return GitHubClient(self, installation_id=int(installation_id))

    def repository(self, installation_id: int, full_name: str, permissions: Mapping[str, str]) -> GitHubClient:
        """A client whose token reaches only `full_name`, with at most `permissions`.

        The scope is settled on the first request: `permissions` capped at what
        the installation was granted, so an installation that has not accepted
        one of them still works (with less) instead of failing on a 422.
        """
        name = full_name.split("/", 1)[1]
        return GitHubClient(self, installation_id=int(installation_id), repository=name, permissions=dict(permissions))

    async def scope(self, installation_id: int, repository: str, permissions: Mapping[str, str]) -> TokenScope:
        """One repository (a name, no owner), `permissions` as far as the installation has them."""
        granted = await self.tokens.granted(installation_id)
        allowed = narrowed(permissions, granted) if granted is not None else None
        return TokenScope.of([repository], allowed)

    async def push_token(self, installation_id: int, full_name: str) -> str:
        """The token git pushes (and fetches) with: that one repository, `contents: write` only."""
        name = full_name.split("/", 1)[1]
        return await self.tokens.get(int(installation_id), TokenScope.of([name], PUSH_PERMISSIONS))

    async def _create_installation_token(self, installation_id: int, scope: TokenScope) -> dict[str, Any]:
        body = scope.body()
        data = await self.app().post(
            "/app/installations/{installation_id}/access_tokens",
            {"installation_id": installation_id},
            data=body if body else b"",
        )
        return dict(data)


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """A gidgethub client with Compound's auth, retry and metrics at its I/O seam."""

    def __init__(
        self,
        github: GitHub,
        *,
        installation_id: int | None,
        repository: str | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(github.session, REQUESTER, cache=github.cache, base_url=github.api_base_url)
        self.installation_id = installation_id
        self.repository = repository
        self._github = github
        self._wanted = permissions
        self._scope: TokenScope | None = WHOLE_INSTALLATION if repository is None else None
        self._rate_label = str(installation_id or 0)

    def __repr__(self) -> str:
        who = "app" if self.installation_id is None else f"installation={self.installation_id}"
        if self.repository is not None:
            who += f" repository={self.repository}"
        return f"<GitHubClient {who} {self.base_url}>"

    async def sleep(self, seconds: float) -> None:
        await self._github.sleep(seconds)

    async def download(
        self, url: str, url_vars: Mapping[str, Any], *, chunk_size: int = 64 * 1024
    ) -> AsyncIterator[bytes]:
        """Stream a file GitHub serves through a redirect (job logs, archives).

        GitHub answers such endpoints with a 302 to a short-lived, signed URL on
        another host (a blob store). That request must not carry the
        installation token, so the redirect is followed here, by hand, without
        any credentials; the body is yielded in chunks and never held whole.
        """
        target = gidgethub.sansio.format_url(url, url_vars, base_url=self.base_url)
        authorization, _ = await self._credentials()
        headers = {"authorization": authorization, "user-agent": REQUESTER, "accept": "application/vnd.github+json"}
        timeout = self._github.timeout
        async with self._session.get(target, headers=headers, allow_redirects=False, timeout=timeout) as first:
            self._github.metrics.github_calls.labels("GET", str(first.status)).inc()
            if first.status in (301, 302, 303, 307, 308):
                location = first.headers.get("location")
                if not location:
                    raise aiohttp.ClientResponseError(
                        first.request_info, (), status=first.status, message="redirect without a Location"
                    )
            elif first.status == 200:
                async for chunk in first.content.iter_chunked(chunk_size):
                    yield chunk
                return
            else:
                raise (
                    gidgethub.BadRequest(http.HTTPStatus(first.status))
                    if first.status < 500
                    else gidgethub.GitHubBroken(http.HTTPStatus(first.status))
                )
        # A fresh request: no Authorization, not even one aiohttp might carry over.
        plain = {"user-agent": REQUESTER}
        download_timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        async with self._session.get(location, headers=plain, timeout=download_timeout) as blob:
            blob.raise_for_status()
            async for chunk in blob.content.iter_chunked(chunk_size):
                yield chunk

    async def _credentials(self) -> tuple[str, str | None]:
        """The Authorization header value, and the installation token in it."""
        if self.installation_id is None:
            return f"bearer {self._github.auth.jwt()}", None
        token = await self._github.tokens.get(self.installation_id, await self.token_scope())
        return f"token {token}", token

    async def token_scope(self) -> TokenScope:
        """What this client's installation token is narrowed to (settled on first use)."""
        if self._scope is None:
            assert self.installation_id is not None and self.repository is not None
            self._scope = await self._github.scope(self.installation_id, self.repository, self._wanted or {})
        return self._scope

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request through the host's breaker: counted once, after the retries."""
        if _inside.get():  # the token request an installation request makes: part of that one
            return await self._request_with_retries(method, url, headers, body)
        breaker = self._github.breaker
        probe = breaker.before()  # GitHubUnavailable while it is open
        mark = _inside.set(True)
        try:
            answer = await self._request_with_retries(method, url, headers, body)
        except _NETWORK_ERRORS as exc:
            breaker.failure(f"{type(exc).__name__}: {exc}".rstrip(": "), probe)
            raise
        except gidgethub.GitHubBroken as exc:  # the installation token's request answered 5xx
            breaker.failure(f"HTTP {exc.status_code}", probe)
            raise
        except BaseException:
            if probe:  # cancelled or a token problem: let another request probe
                breaker.failure("the probe did not finish", probe)
            raise
        finally:
            _inside.reset(mark)
        if answer[0] >= 500:
            breaker.failure(f"HTTP {answer[0]}", probe)
        else:
            breaker.success(probe)
        return answer

    async def _request_with_retries(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = dict(headers)
        token: str | None = None
        if "authorization" not in headers:  # a caller's explicit jwt= / oauth_token= wins
            headers["authorization"], token = await self._credentials()
        policy = self._github.retry
        refreshed = False
        attempt = 1
        while True:
            try:
                status, response_headers, data = await self._exchange(method, url, headers, body)
            except _NETWORK_ERRORS as exc:
                self._github.metrics.github_calls.labels(method, "error").inc()
                if method not in IDEMPOTENT_METHODS or attempt >= policy.attempts:
                    raise
                delay = policy.backoff_for(attempt)
                log.warning(
                    "GitHub request failed (%s), retrying in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra=self._log_fields(method, url, attempt=attempt),
                )
            else:
                if status == 401 and token is not None and not refreshed:
                    # Revoked or expired early: one fresh token, one more try.
                    refreshed = True
                    assert self.installation_id is not None
                    log.info(
                        "installation token refused, requesting a new one",
                        extra=self._log_fields(method, url, attempt=attempt),
                    )
                    scope = await self.token_scope()
                    self._github.tokens.invalidate(self.installation_id, token, scope)
                    token = await self._github.tokens.get(self.installation_id, scope)
                    headers["authorization"] = f"token {token}"
                    continue
                retry_in = self._retry_delay(status, response_headers, data, attempt)
                if retry_in is None:
                    return status, response_headers, data
                delay = retry_in
                log.warning(
                    "GitHub answered %s, retrying in %.1fs",
                    status,
                    delay,
                    extra=self._log_fields(method, url, attempt=attempt, status=status),
                )
            attempt += 1
            await self.sleep(delay)

    async def _exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        started = time.monotonic()
        async with self._session.request(
            method, url, headers=headers, data=body, timeout=self._github.timeout
        ) as response:
            data = await response.read()
        status = response.status
        metrics = self._github.metrics
        metrics.github_calls.labels(method, str(status)).inc()
        limit = response.headers.get("x-ratelimit-limit")
        remaining = response.headers.get("x-ratelimit-remaining")
        if limit is not None and remaining is not None:
            try:
                metrics.github_rate_limit.labels(self._rate_label).set(int(limit))
                metrics.github_rate_remaining.labels(self._rate_label).set(int(remaining))
            except ValueError:
                pass
        log.debug(
            "%s %s -> %s (%.0f ms)",
            method,
            _show_url(url),
            status,
            (time.monotonic() - started) * 1000,
            extra=self._log_fields(method, url, status=status),
        )
        return status, response.headers, data

    def _retry_delay(self, status: int, headers: Mapping[str, str], body: bytes, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to answer as is."""
        policy = self._github.retry
        if attempt >= policy.attempts:
            return None
        retry_after = _retry_after(headers, self._github.clock)
        if status >= 500:
            wait = retry_after if retry_after is not None else policy.backoff_for(attempt)
        elif status in (403, 429):
            if headers.get("x-ratelimit-remaining") == "0":
                # Primary limit used up: nothing succeeds before the reset.
                reset = _float(headers.get("x-ratelimit-reset"))
                if retry_after is not None:
                    wait = retry_after
                elif reset is not None:
                    wait = max(reset - self._github.clock(), 0.0) + 1.0
                else:
                    wait = policy.max_wait
            elif retry_after is not None:
                wait = retry_after
            elif status == 429 or _mentions_secondary_limit(body):
                wait = max(policy.secondary_wait, policy.backoff_for(attempt))
            else:
                return None  # a plain 403: permissions, not load
        else:
            return None
        if wait > policy.max_wait:
            log.warning(
                "GitHub asks to wait %.0fs (over %.0fs); giving up so the work is retried later",
                wait,
                policy.max_wait,
                extra={"installation": self.installation_id, "status": status},
            )
            return None
        return wait

    def _log_fields(self, method: str, url: str, **fields: Any) -> dict[str, Any]:
        return {
            "installation": self.installation_id,
            "method": method,
            "url": _show_url(url),
            **fields,
        }


def _show_url(url: str) -> str:
    """The URL's path for logs (no host, no query string)."""
    return urlsplit(url).path


def _mentions_secondary_limit(body: bytes) -> bool:
    text = body.lower()
    # "abuse detection" is how older GitHub Enterprise Server versions say it.
    return b"secondary rate limit" in text or b"abuse detection" in text


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(headers: Mapping[str, str], clock: Callable[[], float]) -> float | None:
    """`Retry-After` in seconds; it may be a number or an HTTP date."""
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _float(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - clock(), 0.0)
