"""Who Compound is on GitHub and in git: the App's bot user, and co-authors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.workspace import CommitIdentity

log = logging.getLogger("compound.sessions")


@dataclass
class BotIdentity:
    """Who Compound's commits are by: the App's bot user."""

    slug: str
    user_id: int | None = None

    @property
    def login(self) -> str:
        return f"{self.slug}[bot]"

    @property
    def commit_identity(self) -> CommitIdentity:
        return co_author(self.login, self.user_id)

    async def resolve(self, gh: Any) -> CommitIdentity:
        """The identity with the bot user's id, looked up once.

        GitHub links a commit to an account by its noreply address, and a bot's
        is `<id>+<slug>[bot]@users.noreply.github.com`; without the id the
        commit shows an unlinked author. A failed look-up is tried again on the
        next commit and does not hold this one up.
        """
        if self.user_id is None:
            try:
                user = await gh.getitem("/users/{username}", url_vars={"username": self.login})
                self.user_id = int(user["id"])
            except Exception as exc:
                log.warning("could not look up the bot user %s (%s); committing without its id", self.login, exc)
        return self.commit_identity


def co_author(login: str, user_id: int | None) -> CommitIdentity:
    """A GitHub account as git identity: its noreply address, with the id when known."""
    prefix = f"{user_id}+" if user_id else ""
    return CommitIdentity(name=login, email=f"{prefix}{login}@users.noreply.github.com")
