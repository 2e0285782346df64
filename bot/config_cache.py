"""Each repository's `.github/compound.yml`, kept for a while (CONFIG_CACHE_SECONDS).

Most `issues.labeled` deliveries carry a label that is no trigger (`bug`,
`needs-triage`); deciding that took a request for the repo config every time,
so an outage or a burst of triage made every label wait on GitHub. The parsed
config (and its error, if it was invalid) is kept per repository; a push to
the default branch that touches the file drops it at once (handlers/push.py),
so a change to the trigger label counts from the next label on.

Per process and in memory: several workers each read a repo's config once per
interval, which is what a cache shared through the store would save, and not
worth a write per read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.config import CONFIG_PATH, RepoConfig, load_repo_config


class ConfigCache:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic, size: int = 10_000) -> None:
        self.seconds = seconds
        self.clock = clock
        self.size = size
        self._repos: dict[str, tuple[float, RepoConfig, str | None]] = {}

    async def get(self, gh: Any, repo: str) -> tuple[RepoConfig, str | None]:
        """The repo's config and its error, from GitHub at most once per interval."""
        now = self.clock()
        kept = self._repos.get(repo)
        if kept is not None and now - kept[0] < self.seconds:
            return kept[1], kept[2]
        owner, name = repo.split("/", 1)
        config, error = await load_repo_config(gh, owner, name)
        if self.seconds > 0:
            if len(self._repos) >= self.size:  # the oldest out: dicts keep insertion order
                self._repos.pop(next(iter(self._repos)))
            self._repos.pop(repo, None)
            self._repos[repo] = (now, config, error)
        return config, error

    def cached(self, repo: str) -> bool:
        kept = self._repos.get(repo)
        return kept is not None and self.clock() - kept[0] < self.seconds

    def invalidate(self, repo: str) -> None:
        self._repos.pop(repo, None)

    def on_push(self, repo: str, data: dict[str, Any]) -> bool:
        """Drop the repo's config when a push to its default branch touched the file; whether it did."""
        default = (data.get("repository") or {}).get("default_branch")
        if default and data.get("ref") != f"refs/heads/{default}":
            return False
        for commit in [*(data.get("commits") or []), data.get("head_commit") or {}]:
            touched = [*(commit.get("added") or []), *(commit.get("modified") or []), *(commit.get("removed") or [])]
            if CONFIG_PATH in touched:
                self.invalidate(repo)
                return True
        if data.get("forced") or len(data.get("commits") or []) >= 20:  # GitHub lists at most 20 commits
            self.invalidate(repo)
            return True
        return False
