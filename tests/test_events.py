"""Session events: versioned lines in events.jsonl and rows in the store; a file that is
rotated or broken never breaks a session; listeners hear every event."""

from __future__ import annotations

import json

from bot.events import SCHEMA_VERSION, EventLog


async def _session(store):
    session, round_ = await store.sessions.create(
        repo="octo/app",
        installation_id=1,
        issue_number=3,
        issue_title="Add x",
        branch="compound/issue-3",
        backend="command",
        model="m",
        triggered_by="alice",
        config={},
        context={},
    )
    return session, round_


async def test_events_are_versioned_lines_and_rows_and_survive_rotation(store, tmp_path):
    path = tmp_path / "data" / "events.jsonl"
    events = EventLog(path, store.sessions)
    session, round_ = await _session(store)
    heard = []

    async def listener(s, type_, data):
        heard.append((s.id, type_, data["repo"]))

    events.listeners.append(listener)
    await events.record(session, "session.created", round_, trigger="alice")
    path.rename(tmp_path / "data" / "events.jsonl.1")  # logrotate's default: rename, then the writer carries on
    await events.record(session, "round.started", round_, attempt=1)
    (old,) = [json.loads(x) for x in (tmp_path / "data" / "events.jsonl.1").read_text().splitlines()]
    (new,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert old["v"] == new["v"] == SCHEMA_VERSION
    assert (old["type"], new["type"]) == ("session.created", "round.started")
    assert new["session"] == session.id and new["round"] == 1 and new["kind"] == "task" and new["attempt"] == 1
    assert [t for t, _ in await store.sessions.events(session.id)] == ["session.created", "round.started"]
    assert heard == [(session.id, "session.created", "octo/app"), (session.id, "round.started", "octo/app")]


async def test_an_unwritable_file_or_a_failing_listener_never_breaks_the_session(store, tmp_path):
    path = tmp_path / "events.jsonl"
    path.mkdir()  # a directory where the file should be: every write fails
    events = EventLog(path, store.sessions)
    session, round_ = await _session(store)

    async def broken(*_):
        raise RuntimeError("listener bug")

    events.listeners.append(broken)
    await events.record(session, "session.created", round_)
    await events.record(session, "round.started", round_)
    # The store still has them; the file could not.
    assert [t for t, _ in await store.sessions.events(session.id)] == ["session.created", "round.started"]
