"""The check run presenter keeps within GitHub's limits and leaks nothing."""

from __future__ import annotations

from bot.checks import MAX_OUTPUT, RETRY, STOP, RoundFigures, clip, completed_fields
from bot.logs import REDACTED


def test_clip_keeps_the_tail_of_long_logs_and_redacts():
    token = "ghs_" + "Q" * 36
    text = "start\n" + "line of output\n" * 10_000 + f"pushing with {token}\nlast line"
    clipped = clip(text)
    assert len(clipped) <= MAX_OUTPUT
    assert clipped.endswith("last line") and "start" not in clipped
    assert token not in clipped and REDACTED in clipped
    assert clip("short") == "short"


def test_clip_head_for_summaries():
    clipped = clip("first\n" + "x" * 100_000, 1000, keep="head")
    assert clipped.startswith("first") and len(clipped) <= 1000


def test_actions_fit_githubs_limits():
    for action in (RETRY, STOP):
        assert len(action["label"]) <= 20
        assert len(action["description"]) <= 40
        assert len(action["identifier"]) <= 20
    fields = completed_fields("success", "t" * 500, "s" * 100_000, "x" * 100_000)
    assert len(fields["actions"]) <= 3
    assert len(fields["output"]["title"]) <= 255
    assert len(fields["output"]["summary"]) <= MAX_OUTPUT and len(fields["output"]["text"]) <= MAX_OUTPUT


def test_figures_table_names_model_tokens_cost_and_files():
    table = RoundFigures(
        model="m-1",
        backend="claude-code",
        session_id="s-1",
        round_number=2,
        kind="command",
        duration=12.34,
        input_tokens=1200,
        output_tokens=345,
        cost_usd=0.0123,
        files_changed=3,
        insertions=10,
        deletions=2,
    ).table()
    for expected in (
        "`m-1`",
        "claude-code",
        "2 (command)",
        "12.3 s",
        "1,200 in / 345 out",
        "$0.0123",
        "3 (+10 −2)",
        "`s-1`",
    ):
        assert expected in table
    empty = RoundFigures(model=None, backend="command", session_id="s", round_number=1, kind="task").table()
    assert "backend default" in empty and "—" in empty
