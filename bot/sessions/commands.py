"""Parsing `/agent …` comments."""

from __future__ import annotations

import re
from dataclasses import dataclass

SUBCOMMANDS = frozenset({"help", "status", "stop", "retry", "fix-ci", "model", "lessons"})
_COMMAND = re.compile(r"\A\s*/agent(?:\s+|\Z)(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class Command:
    name: str  # a subcommand, or "instructions"
    argument: str  # the model alias, or the instructions text


def parse_command(body: str | None) -> Command | None:
    """`/agent` at the start of a comment; None when the comment is not a command."""
    match = _COMMAND.match(body or "")
    if match is None:
        return None
    rest = match.group(1).strip()
    word, _, argument = rest.partition(" ")
    word, argument = word.lower(), argument.strip()
    # A subcommand is the whole (one-line) comment; anything longer is instructions.
    if "\n" not in rest and word in SUBCOMMANDS and (word == "model" or not argument):
        return Command(word, argument)
    if not rest:
        return Command("help", "")
    return Command("instructions", rest)
