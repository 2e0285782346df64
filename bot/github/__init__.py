"""Talking to GitHub: App and installation credentials, and REST clients.

    github = GitHub.from_settings(session, settings, metrics)
    gh = github.installation(installation_id)   # no request yet
    issue = await gh.getitem("/repos/{owner}/{repo}/issues/{n}", {...})
"""

from bot.github.auth import (
    TOKEN_SAFETY_MARGIN,
    AppAuth,
    InstallationToken,
    InstallationTokens,
    InvalidPrivateKey,
)
from bot.github.client import REQUESTER, GitHub, GitHubClient, RetryPolicy

__all__ = [
    "REQUESTER",
    "TOKEN_SAFETY_MARGIN",
    "AppAuth",
    "GitHub",
    "GitHubClient",
    "InstallationToken",
    "InstallationTokens",
    "InvalidPrivateKey",
    "RetryPolicy",
]
