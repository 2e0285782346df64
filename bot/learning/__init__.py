"""Observe → learn → adjust (docs/learning.md).

When a session ends (merged, closed, escalated, failed, stopped) `Learning`
writes its outcome, mines lessons from its rounds, retires lessons that do
no better than their holdout, and posts or edits the retrospective on the
issue. Before each round it picks the round's prompt variant (Thompson
sampling on first-try success within the task kind), the lessons its prompt
carries and the ones held out of it, and, with `routing: learned`, the
model. Nothing here may break a session: every failure is logged and the
session goes on as it would have without learning.

The loop lives in `bot.learning.loop` and is loaded on first use of its
names here: `compound report` and `compound lessons` import this package
for `report` or `cli`, and should not pay for the loop's imports (the
repo config's YAML and gitignore parsers, the session store).
"""

from __future__ import annotations

from typing import Any

_LOOP = ("ENDINGS", "Concluded", "Learning", "RoundPlan", "lessons_of")


def __getattr__(name: str) -> Any:
    if name in _LOOP:
        from bot.learning import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LOOP)
