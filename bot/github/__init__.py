"""Talking to GitHub: App and installation credentials, and REST clients.

github = GitHub.from_settings(session, settings, metrics)
gh = github.installation(installation_id)   # no request yet
gh = github.repository(installation_id, "o/r", {"issues": "write"})  # one repo's token
token = await github.push_token(installation_id, "o/r")     # contents:write on o/r
issue = await gh.getitem("/repos/{owner}/{repo}/issues/{n}", {...})
"""

from bot.github.auth import (
    TOKEN_SAFETY_MARGIN,
    AppAuth,
    InstallationToken,
    InstallationTokens,
    InvalidPrivateKey,
    TokenScope,
)
from bot.github.breaker import CircuitBreaker, GitHubUnavailable
from bot.github.client import PUSH_PERMISSIONS, REQUESTER, GitHub, GitHubClient, RetryPolicy

__all__ = [
    "CircuitBreaker",
    "GitHubUnavailable",
    "PUSH_PERMISSIONS",
    "REQUESTER",
    "TOKEN_SAFETY_MARGIN",
    "AppAuth",
    "GitHub",
    "GitHubClient",
    "InstallationToken",
    "InstallationTokens",
    "InvalidPrivateKey",
    "RetryPolicy",
    "TokenScope",
]
