"""How the twin checks who is calling: App JWTs and installation tokens."""

from __future__ import annotations

import base64
import binascii
import functools
import secrets
import time
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# GitHub refuses App JWTs that live longer than ten minutes.
MAX_JWT_LIFETIME = 600
# Leeway for clock drift, as GitHub allows (it suggests back-dating iat by 60 s).
LEEWAY = 60


class BadCredentials(Exception):
    """Answered as 401 "Bad credentials"."""


@functools.cache
def app_private_key_pem() -> str:
    """A fresh RSA 2048 key, generated once per process (generation is slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@functools.cache
def _public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.public_key()


def verify_app_jwt(token: str, app_id: int, private_key_pem: str) -> dict[str, object]:
    """Check an App JWT as GitHub does: RS256, our key, iss, and a short life."""
    try:
        claims = jwt.decode(
            token,
            _public_key(private_key_pem),
            algorithms=["RS256"],
            options={"require": ["iat", "exp", "iss"], "verify_iss": False},
            leeway=LEEWAY,
        )
    except jwt.PyJWTError as exc:
        raise BadCredentials(f"invalid JWT: {exc}") from exc
    if str(claims["iss"]) != str(app_id):
        raise BadCredentials(f"JWT iss {claims['iss']!r} is not app {app_id}")
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise BadCredentials("JWT iat/exp are not numbers")
    # GitHub's rule is exp <= now + 10 min; its own docs back-date iat by 60 s,
    # so a JWT may span 11 minutes from iat but never end more than 10 ahead.
    if exp <= iat or exp - iat > MAX_JWT_LIFETIME + LEEWAY or exp > time.time() + MAX_JWT_LIFETIME + 5:
        raise BadCredentials("'Expiration time' claim ('exp') is too far in the future")
    if iat > time.time() + LEEWAY:
        raise BadCredentials("'Issued at' claim ('iat') is in the future")
    return claims


@dataclass
class InstallationToken:
    token: str
    installation_id: int
    expires_at: float
    # Full names the token is limited to (None: every repo of the installation).
    repositories: frozenset[str] | None = None
    permissions: dict[str, str] = field(default_factory=dict)
    revoked: bool = False

    def valid(self, now: float | None = None) -> bool:
        return not self.revoked and (now or time.time()) < self.expires_at


@dataclass(frozen=True)
class TokenRequest:
    """One POST .../access_tokens as the twin received it, and the token it minted."""

    installation_id: int
    # The body's fields as sent (None when absent).
    repositories: list[str] | None
    repository_ids: list[int] | None
    permissions: dict[str, str] | None
    token: InstallationToken


@dataclass
class TokenStore:
    """Installation tokens the twin has minted."""

    tokens: dict[str, InstallationToken] = field(default_factory=dict)

    def mint(
        self,
        installation_id: int,
        ttl: float,
        permissions: dict[str, str],
        repositories: frozenset[str] | None = None,
    ) -> InstallationToken:
        token = InstallationToken(
            token="ghs_" + secrets.token_hex(18),
            installation_id=installation_id,
            expires_at=time.time() + ttl,
            repositories=repositories,
            permissions=permissions,
        )
        self.tokens[token.token] = token
        return token

    def check(self, value: str) -> InstallationToken:
        token = self.tokens.get(value)
        if token is None or not token.valid():
            raise BadCredentials("unknown, expired or revoked installation token")
        return token

    def revoke_all(self) -> None:
        for token in self.tokens.values():
            token.revoked = True


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """("bearer"|"token", credential) from an Authorization header, if any."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "token") or not value.strip():
        return None
    return scheme, value.strip()


def parse_basic(header: str | None) -> str | None:
    """The password of an HTTP Basic Authorization header (git sends the token there)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2
