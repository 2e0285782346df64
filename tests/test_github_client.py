"""The GitHub client layer against the GitHub twin: real HTTP, no mocks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
import time

import aiohttp
import gidgethub
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.github import AppAuth, GitHub, InstallationTokens, InvalidPrivateKey, RetryPolicy, TokenScope
from bot.github.api import can_trigger, permission
from bot.metrics import Metrics
from bot.settings import load_settings

REPO = "octo/hello"


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers the waits, does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def settings(twin):
    """Settings pointing at the twin; afterwards, every request the client
    sent must have matched GitHub's OpenAPI description."""
    yield load_settings(
        _env_file=None,
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET="s3cret",
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
    )
    assert twin.violations == []


@pytest.fixture
def github(session, settings, metrics, sleep) -> GitHub:
    return GitHub.from_settings(session, settings, metrics, sleep=sleep)


@pytest.fixture
def installation_id(twin) -> int:
    iid = twin.add_installation(account="octo")
    twin.add_repo(REPO, installation_id=iid)
    return iid


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def calls(metrics: Metrics, method: str, status: str) -> float:
    return sample(metrics, "compound_github_api_calls_total", method=method, status=status)


def requests_to(twin, method: str, path: str) -> list:
    return [r for r in twin.requests if r.method == method and r.path == path]


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


# -- App credentials ---------------------------------------------------------


def test_app_jwt_is_reused_then_renewed():
    now = [1000.0]
    auth = AppAuth(1, rsa_pem(), clock=lambda: now[0])
    first = auth.jwt()
    now[0] += 7 * 60
    assert auth.jwt() == first
    assert auth._jwt_renew_at == 1000 + 8 * 60
    now[0] += 2 * 60
    auth.jwt()  # signed again (identical if within the same second)
    assert auth._jwt_renew_at == 1000 + 9 * 60 + 8 * 60


def test_fingerprint_is_githubs_sha256_of_the_public_key():
    pem = rsa_pem()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    auth = AppAuth(7, pem)
    assert auth.fingerprint == "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert pem not in repr(auth)


def test_a_bad_key_is_refused_without_quoting_it():
    with pytest.raises(InvalidPrivateKey) as info:
        AppAuth(1, "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key\n-----END RSA PRIVATE KEY-----")
    assert "not-a-key" not in str(info.value)
    assert info.value.__cause__ is None


async def test_app_client_authenticates_with_the_jwt(twin, github):
    app = await github.app().getitem("/app")
    assert app["id"] == twin.app_id
    assert calls(github.metrics, "GET", "200") == 1
    assert sample(github.metrics, "compound_github_rate_limit_limit", installation="0") > 0


# -- installation tokens -----------------------------------------------------


async def test_a_client_that_makes_no_call_costs_no_token(twin, github, installation_id):
    github.installation(installation_id)
    await asyncio.sleep(0)
    assert twin.token_requests.get(installation_id, 0) == 0


async def test_concurrent_calls_share_one_token_request(twin, github, installation_id):
    results = await asyncio.gather(*(github.installation(installation_id).getitem(f"/repos/{REPO}") for _ in range(25)))
    assert {r["full_name"] for r in results} == {REPO}
    assert twin.token_requests[installation_id] == 1
    assert sample(github.metrics, "compound_installation_token_requests_total") == 1
    # Later clients of the same installation reuse the cached token too.
    await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert twin.token_requests[installation_id] == 1


async def test_an_expiring_token_is_replaced(twin, session, settings, metrics, installation_id):
    # Tokens live 4 s and are dropped 2 s early: cached for 1-2 s (GitHub's
    # expires_at has whole seconds).
    twin.token_ttl = 4
    github = GitHub.from_settings(session, settings, metrics, token_margin=2)
    gh = github.installation(installation_id)
    await gh.getitem(f"/repos/{REPO}")
    await gh.getitem(f"/repos/{REPO}")
    assert twin.token_requests[installation_id] == 1
    await asyncio.sleep(2.2)
    await gh.getitem(f"/repos/{REPO}")
    assert twin.token_requests[installation_id] == 2


async def test_a_revoked_token_is_refreshed_once(twin, github, installation_id):
    gh = github.installation(installation_id)
    await gh.getitem(f"/repos/{REPO}")
    twin.revoke_tokens()
    repo = await gh.getitem(f"/repos/{REPO}")
    assert repo["full_name"] == REPO
    assert twin.token_requests[installation_id] == 2
    statuses = [r.status for r in requests_to(twin, "GET", f"/repos/{REPO}")]
    assert statuses.count(401) == 1
    assert calls(github.metrics, "GET", "401") == 1


async def test_concurrent_401s_refresh_the_token_once(twin, github, installation_id):
    await github.installation(installation_id).getitem(f"/repos/{REPO}")
    twin.revoke_tokens()
    await asyncio.gather(*(github.installation(installation_id).getitem(f"/repos/{REPO}") for _ in range(10)))
    assert twin.token_requests[installation_id] == 2


async def test_a_persistent_401_is_raised_after_one_refresh(twin, github, sleep, installation_id):
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=401, times=10)
    with pytest.raises(gidgethub.BadRequest) as info:
        await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert info.value.status_code == 401
    assert twin.token_requests[installation_id] == 2
    assert len(requests_to(twin, "GET", f"/repos/{REPO}")) == 2
    assert sleep.waits == []


async def test_an_unknown_installation_raises(twin, github):
    with pytest.raises(gidgethub.BadRequest) as info:
        await github.installation(999_999).getitem(f"/repos/{REPO}")
    assert info.value.status_code == 404


# -- retries -----------------------------------------------------------------


async def test_a_502_is_retried(twin, github, sleep, installation_id):
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=502)
    repo = await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert repo["full_name"] == REPO
    assert sleep.waits == [1.0]
    assert calls(github.metrics, "GET", "502") == 1
    assert calls(github.metrics, "GET", "200") == 1


async def test_5xx_forever_gives_up_after_four_tries(twin, github, sleep, installation_id):
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=503, times=100)
    with pytest.raises(gidgethub.GitHubBroken):
        await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert sleep.waits == [1.0, 2.0, 4.0]
    assert len(requests_to(twin, "GET", f"/repos/{REPO}")) == 4
    assert calls(github.metrics, "GET", "503") == 4


async def test_a_post_is_retried_on_5xx_too(twin, github, sleep, installation_id):
    # The token request itself (a POST by the App) goes through the same policy.
    twin.fail_next("POST", r"/access_tokens$", status=500)
    await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert sleep.waits == [1.0]
    assert twin.token_requests[installation_id] == 1


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_rate_limit_honours_retry_after(twin, github, sleep, installation_id, status):
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=status, headers={"Retry-After": "7"})
    repo = await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert repo["full_name"] == REPO
    assert sleep.waits == [7.0]


async def test_secondary_rate_limit_without_retry_after_waits_a_minute(twin, github, sleep, installation_id):
    # The twin's default 403 body: "You have exceeded a secondary rate limit..."
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=403)
    await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert sleep.waits == [60.0]


async def test_a_429_without_retry_after_waits_a_minute(twin, github, sleep, installation_id):
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=429)
    await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert sleep.waits == [60.0]


async def test_a_plain_403_is_not_retried(twin, github, sleep, installation_id):
    twin.fail_next(
        "GET",
        rf"^/repos/{REPO}$",
        status=403,
        body={"message": "Resource not accessible by integration"},
    )
    with pytest.raises(gidgethub.BadRequest):
        await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert sleep.waits == []


async def test_primary_exhaustion_waits_for_the_reset(twin, session, settings, metrics, sleep, installation_id):
    now = time.time()
    github = GitHub.from_settings(session, settings, metrics, sleep=sleep, clock=lambda: now)
    twin.fail_next(
        "GET",
        rf"^/repos/{REPO}$",
        status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 20)},
        body={"message": "API rate limit exceeded for installation."},
    )
    await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert len(sleep.waits) == 1 and 20 <= sleep.waits[0] <= 21


async def test_primary_exhaustion_past_the_cap_raises_at_once(twin, github, sleep, installation_id):
    twin.fail_next(
        "GET",
        rf"^/repos/{REPO}$",
        status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 1800)},
        body={"message": "API rate limit exceeded for installation."},
    )
    with pytest.raises(gidgethub.RateLimitExceeded):
        await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert sleep.waits == []
    assert len(requests_to(twin, "GET", f"/repos/{REPO}")) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_network_errors_are_retried_for_idempotent_methods_only(session):
    sleep = RecordingSleep()
    metrics = Metrics()
    github = GitHub(
        session,
        api_base_url=f"http://127.0.0.1:{closed_port()}/api/v3",
        auth=AppAuth(1, rsa_pem()),
        metrics=metrics,
        sleep=sleep,
        retry=RetryPolicy(attempts=3),
    )
    with pytest.raises(aiohttp.ClientConnectionError):
        await github.app().getitem("/app")
    assert sleep.waits == [1.0, 2.0]
    assert calls(metrics, "GET", "error") == 3
    sleep.waits.clear()
    with pytest.raises(aiohttp.ClientConnectionError):
        await github.app().post("/app/installations/1/access_tokens", data=b"")
    assert sleep.waits == []
    assert calls(metrics, "POST", "error") == 1


# -- conditional requests, metrics -------------------------------------------


async def test_a_repeated_get_is_answered_304_from_the_cache(twin, github, installation_id):
    gh = github.installation(installation_id)
    first = await gh.getitem(f"/repos/{REPO}")
    second = await github.installation(installation_id).getitem(f"/repos/{REPO}")
    assert second == first
    assert [r.status for r in requests_to(twin, "GET", f"/repos/{REPO}")] == [200, 304]
    assert calls(github.metrics, "GET", "304") == 1


async def test_rate_limit_gauges_per_installation(twin, github, installation_id):
    await github.installation(installation_id).getitem(f"/repos/{REPO}")
    label = str(installation_id)
    limit = sample(github.metrics, "compound_github_rate_limit_limit", installation=label)
    remaining = sample(github.metrics, "compound_github_rate_limit_remaining", installation=label)
    assert limit == 5000
    assert 0 < remaining < limit
    # The token request was the App's own call.
    assert sample(github.metrics, "compound_github_rate_limit_limit", installation="0") == 5000


async def test_no_secret_reaches_the_logs(twin, github, sleep, installation_id, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("aiohttp", "aiohttp.client", "aiohttp.internal", "compound"):
        caplog.set_level(logging.DEBUG, logger=name)
    gh = github.installation(installation_id)
    await gh.getitem(f"/repos/{REPO}")
    twin.revoke_tokens()
    twin.fail_next("GET", rf"^/repos/{REPO}$", status=502)
    await gh.getitem(f"/repos/{REPO}")
    await github.app().getitem("/app")
    assert twin.token_requests[installation_id] == 2
    assert any(r.name == "compound.github" for r in caplog.records)

    secrets = [t for t in twin.tokens.tokens]  # every token the twin minted
    secrets.append(github.auth.jwt())
    secrets.extend(line for line in twin.private_key_pem.splitlines() if "-----" not in line)
    logged = [caplog.text]
    for record in caplog.records:
        logged.append(repr(record.__dict__))
    everything = "\n".join(logged)
    for secret in secrets:
        assert secret not in everything


# -- API helpers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected", "allowed"),
    [
        ("admin", "admin", True),
        ("maintain", "maintain", True),
        ("write", "write", True),
        ("triage", "triage", False),
        ("read", "read", False),
    ],
)
async def test_permission(twin, github, installation_id, role, expected, allowed):
    twin.set_permission(REPO, "alice", role)
    level = await permission(github.installation(installation_id), "octo", "hello", "alice")
    assert level == expected
    assert can_trigger(level) is allowed


async def test_permission_of_an_unknown_user_is_none(twin, github, installation_id):
    level = await permission(github.installation(installation_id), "octo", "hello", "nobody-here")
    assert level == "none"
    assert not can_trigger(level)


# -- the token cache on its own ----------------------------------------------


async def test_token_cache_shares_one_request_and_survives_a_cancelled_caller():
    release = asyncio.Event()
    fetched: list[int] = []

    async def fetch(installation_id: int, scope: TokenScope) -> dict:
        fetched.append(installation_id)
        await release.wait()
        return {"token": f"t{len(fetched)}", "expires_at": "2999-01-01T00:00:00Z"}

    tokens = InstallationTokens(fetch)
    waiters = [asyncio.ensure_future(tokens.get(5)) for _ in range(10)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    release.set()
    results = await asyncio.gather(*waiters[1:])
    assert set(results) == {"t1"} and fetched == [5]
    # Invalidating with a stale token keeps the current one.
    tokens.invalidate(5, token="stale")
    assert await tokens.get(5) == "t1" and fetched == [5]
    tokens.invalidate(5, token="t1")
    assert await tokens.get(5) == "t2"


async def test_token_cache_expires_by_margin():
    now = [0.0]

    async def fetch(installation_id: int, scope: TokenScope) -> dict:
        return {"token": "t", "expires_at": "1970-01-01T01:00:00+00:00"}  # epoch 3600

    metrics = Metrics()
    tokens = InstallationTokens(fetch, metrics=metrics, margin=300, clock=lambda: now[0])
    await tokens.get(1)
    now[0] = 3299
    await tokens.get(1)
    assert sample(metrics, "compound_installation_token_requests_total") == 1
    now[0] = 3300
    await tokens.get(1)
    assert sample(metrics, "compound_installation_token_requests_total") == 2
