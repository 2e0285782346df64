"""pytest plugin: the ``twin`` fixture, and a run that fails on spec violations.

Load it from the root conftest with ``pytest_plugins = ["tests.twin.fixtures"]``.
A test whose twin saw a request that does not conform to GitHub's OpenAPI
description fails at teardown, and the session's exit status is 1 whatever
else happened.  Tests that send invalid requests on purpose wrap them in
``with twin.expect_violations():``. The same goes for a call refused because
the token lacks a permission (``with twin.expect_refusals():``), and for any
answer of the twin's, errors included, that departs from the description
(``twin.response_problems``): that is a bug of the twin, to fix in the twin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .server import GitHubTwin

_VIOLATIONS: list[str] = []


@pytest.fixture
async def twin(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[GitHubTwin]:
    """A started GitHub twin, stopped after the test."""
    server = GitHubTwin(tmp_path / "twin")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    found = [f"{request.node.nodeid}: {v}" for v in server.violations]
    found += [f"{request.node.nodeid}: on_push callback failed: {e}" for e in server.push_errors]
    # A 403 for a missing permission means a token was scoped too narrowly:
    # Compound may swallow the error, the test must not.
    found += [f"{request.node.nodeid}: refused, token lacks a permission: {e}" for e in server.permission_refusals]
    # An answer outside the description means the twin is not GitHub: a test
    # passing against it proves nothing about GitHub.
    found += [f"{request.node.nodeid}: twin answered outside the description: {p}" for p in server.response_problems]
    _VIOLATIONS.extend(found)
    if found:
        pytest.fail(
            "GitHub twin saw requests GitHub would refuse (outside its OpenAPI description, or beyond the token):\n"
            + "\n".join(found)
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _VIOLATIONS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _VIOLATIONS:
        terminalreporter.section("GitHub twin: OpenAPI violations", sep="=", red=True)
        for line in _VIOLATIONS:
            terminalreporter.write_line(line)
