"""Small rules of sessions: parsing `/agent` comments, what is never pushed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.config import RepoConfig
from bot.sessions.commands import Command, parse_command
from bot.sessions.rounds import RoundRunner
from bot.sessions.worker import BotIdentity, co_author


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/agent", Command("help", "")),
        ("/agent help", Command("help", "")),
        ("  /agent status  ", Command("status", "")),
        ("/agent STOP", Command("stop", "")),
        ("/agent retry", Command("retry", "")),
        ("/agent fix-ci", Command("fix-ci", "")),
        ("/agent model opus", Command("model", "opus")),
        ("/agent fix the bug in x", Command("instructions", "fix the bug in x")),
        ("/agent stop the world", Command("instructions", "stop the world")),
        ("/agent retry\nbut slower", Command("instructions", "retry\nbut slower")),
        ("/agent\nplease do x\nand y", Command("instructions", "please do x\nand y")),
        ("hello /agent", None),
        ("/agentx do it", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_command(body, expected):
    assert parse_command(body) == expected


def test_forbidden_paths_and_cli_scratch_files():
    config = RepoConfig(forbidden_paths=["secrets/**", "*.pem"])
    aider = RoundRunner._forbidden(SimpleNamespace(backend="aider"), config)
    command = RoundRunner._forbidden(SimpleNamespace(backend="command"), config)
    assert aider(".aider.tags.cache.v4/cache.db") and not command(".aider.tags.cache.v4/cache.db")
    for rule in (aider, command):
        assert rule("secrets/prod/key.txt") and rule("deploy/server.pem")
        assert not rule("src/app.py")


def test_identities():
    assert BotIdentity("compound").commit_identity.email == "compound[bot]@users.noreply.github.com"
    assert BotIdentity("compound", 41898282).commit_identity.email == "41898282+compound[bot]@users.noreply.github.com"
    assert co_author("alice", 7).email == "7+alice@users.noreply.github.com"
