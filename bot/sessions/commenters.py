"""Whose comments a prompt quotes: people with write access, and Compound itself.

Anyone who can read a public repo can comment on its issues and pull requests,
and a comment quoted to the agent, even fenced as data, is a way to talk to it.
So by default (`prompt_comments: writers`) a prompt quotes only comments by
people whose permission on the repo is write, maintain or admin (the rule for
starting work, docs/design.md §5), by Compound itself, and by the bots `allowed_bots`
names (they may start work, so their words are the request). Everyone else's
are left out and counted; the prompt says how many and why. With
`prompt_comments: everyone` every comment is quoted, as data like all text
from GitHub, and nobody is looked up.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.config import PROMPT_COMMENTS_EVERYONE, RepoConfig
from bot.github.api import can_trigger, permission
from bot.prompts import Comment


class Commenters:
    """Who may be quoted in one round's prompt; GitHub is asked once per login."""

    def __init__(self, gh: Any, repo: str, config: RepoConfig, own_login: str) -> None:
        self._gh = gh
        self._owner, self._name = repo.split("/", 1)
        self._config = config
        self._own = own_login.lower()
        self._known: dict[str, bool] = {}

    @property
    def everyone(self) -> bool:
        return self._config.prompt_comments == PROMPT_COMMENTS_EVERYONE

    async def may_quote(self, login: str) -> bool:
        if self.everyone:
            return True
        key = login.lower()
        if key == self._own or self._config.allows_bot(login):
            return True
        if key not in self._known:
            # A bot is never a collaborator: no need to ask.
            if not key or key.endswith("[bot]"):
                self._known[key] = False
            else:
                self._known[key] = can_trigger(await permission(self._gh, self._owner, self._name, login))
        return self._known[key]

    async def screen(self, comments: list[Comment]) -> tuple[list[Comment], int]:
        """The comments the prompt may quote, and how many were left out.

        A review reply keeps the earlier comment it answers only if that one
        may be quoted too; a dropped earlier comment counts as left out, once
        however many replies answer it.
        """
        kept: list[Comment] = []
        left_out = 0
        dropped: set[int] = set()
        for c in comments:
            if not await self.may_quote(c.author):
                left_out += 1
                continue
            earlier = c.in_reply_to
            if earlier is not None and not await self.may_quote(earlier.author):
                c = replace(c, in_reply_to=None)
                if earlier.id is None or earlier.id not in dropped:
                    left_out += 1
                if earlier.id is not None:
                    dropped.add(earlier.id)
            kept.append(c)
        return kept, left_out
