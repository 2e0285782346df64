"""What CI says about a session PR's head: settled or not, and every failure's details.

One look costs few REST calls: the head's check runs (one page of 100), its
combined commit status, its check suites (once it has settled: a suite that
could not start, `startup_failure`, says so only there, with no check run),
then per failing check (at most `MAX_FAILURES`) its annotations when it has
any and, for a GitHub Actions job, the job's log.
The log is streamed through `bot.ci.logs` (never held whole: job logs run to
tens of MB), which keeps the error lines and their surroundings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bot.checks import CHECK_NAME
from bot.ci.classify import classify
from bot.ci.logs import LogExcerpt
from bot.prompts import ANNOTATION_LIMIT, LOG_TAIL_LIMIT, MAX_ANNOTATIONS, MAX_FAILURES, CheckFailure

log = logging.getLogger("compound.sessions.ci")

# Conclusions that mean "this check failed" (`action_required`, `cancelled`,
# `neutral`, `skipped`, `stale` do not: nothing in the code to fix).
FAILING = frozenset({"failure", "timed_out", "startup_failure"})
FAILING_STATES = frozenset({"failure", "error"})  # commit statuses
ACTIONS_APP = "github-actions"


def is_failing(conclusion: str | None) -> bool:
    return conclusion in FAILING


@dataclass
class CiState:
    head: str
    pending: list[str] = field(default_factory=list)
    failures: list[CheckFailure] = field(default_factory=list)
    # failing checks beyond MAX_FAILURES, named but not fetched
    more: int = 0

    @property
    def settled(self) -> bool:
        return not self.pending

    @property
    def categories(self) -> list[str]:
        return sorted({f.category for f in self.failures})


def is_own_run(run: dict[str, Any], app_id: int | None) -> bool:
    """Compound's own check run: it never starts a round, whatever its conclusion."""
    app = run.get("app") or {}
    return run.get("name") == CHECK_NAME and (app_id is None or app.get("id") == app_id)


async def ci_state(
    gh: Any, repo: str, head: str, *, app_id: int | None, details: bool = True, settled_only: bool = True
) -> CiState:
    """The head's CI: which checks are still running, and (with `details`) what failed.

    With `settled_only` (the default) a head whose checks are still running
    gets no details: the round waits, and reads them once.
    """
    owner, name = repo.split("/", 1)
    where = {"owner": owner, "repo": name, "ref": head}
    state = CiState(head)
    failing_runs: list[dict[str, Any]] = []
    seen_suites: set[int] = set()  # suites with a check run: the runs say what failed
    async for run in gh.getiter(
        "/repos/{owner}/{repo}/commits/{ref}/check-runs?per_page=100", where, iterable_key="check_runs"
    ):
        if is_own_run(run, app_id):
            continue
        seen_suites.add((run.get("check_suite") or {}).get("id") or 0)
        if run.get("status") != "completed":
            state.pending.append(run.get("name") or "?")
        elif is_failing(run.get("conclusion")):
            failing_runs.append(run)
    combined = await gh.getitem("/repos/{owner}/{repo}/commits/{ref}/status", where)
    failing_statuses = []
    for status in combined.get("statuses") or []:
        if status.get("state") == "pending":
            state.pending.append(status.get("context") or "?")
        elif status.get("state") in FAILING_STATES:
            failing_statuses.append(status)
    if state.pending and settled_only:
        return state  # not settled: the details wait until it is
    failing_suites = await _suites_without_runs(gh, where, app_id, seen_suites)
    everything = len(failing_runs) + len(failing_suites) + len(failing_statuses)
    state.more = max(everything - MAX_FAILURES, 0)
    for run in failing_runs[:MAX_FAILURES]:
        state.failures.append(await _run_failure(gh, owner, name, run, details))
    for suite in failing_suites[: max(MAX_FAILURES - len(state.failures), 0)]:
        state.failures.append(_suite_failure(suite))
    for status in failing_statuses[: max(MAX_FAILURES - len(state.failures), 0)]:
        context = status.get("context") or "status"
        description = status.get("description") or ""
        state.failures.append(
            CheckFailure(
                name=context,
                conclusion=status.get("state") or "failure",
                summary=description,
                category=classify(context, "failure", [], description),
                url=status.get("target_url") or "",
            )
        )
    return state


async def _suites_without_runs(
    gh: Any, where: dict[str, str], app_id: int | None, seen: set[int]
) -> list[dict[str, Any]]:
    """The head's completed, failing check suites that hold no check run.

    A workflow that could not start (an invalid workflow file) ends its suite
    and workflow run `startup_failure` and creates no job, so no check run
    says so. A suite still queued or running is not waited for: every App
    subscribed to `check_suite` gets one on each push, and many never run.
    """
    found: list[dict[str, Any]] = []
    async for suite in gh.getiter(
        "/repos/{owner}/{repo}/commits/{ref}/check-suites?per_page=100", where, iterable_key="check_suites"
    ):
        app = suite.get("app") or {}
        if app_id is not None and app.get("id") == app_id:
            continue  # Compound's own
        if suite.get("id") in seen or suite.get("status") != "completed" or not is_failing(suite.get("conclusion")):
            continue
        found.append(suite)
    return found


def _suite_failure(suite: dict[str, Any]) -> CheckFailure:
    app = (suite.get("app") or {}).get("name") or "CI"
    conclusion = suite.get("conclusion") or "failure"
    summary = f"The check suite of {app} ended `{conclusion}` without running any check"
    if conclusion == "startup_failure":
        summary += ": its workflow could not start, most often because the workflow file is invalid"
    failure = CheckFailure(name=f"{app} (check suite)", conclusion=conclusion, summary=summary + ".")
    failure.category = classify(failure.name, conclusion, [], summary)
    return failure


async def _run_failure(gh: Any, owner: str, name: str, run: dict[str, Any], details: bool) -> CheckFailure:
    output = run.get("output") or {}
    failure = CheckFailure(
        name=run.get("name") or "check",
        conclusion=run.get("conclusion") or "failure",
        summary="\n\n".join(p for p in (output.get("title"), output.get("summary")) if p),
        text=output.get("text") or "",
        url=run.get("html_url") or run.get("details_url") or "",
    )
    if details and output.get("annotations_count"):
        failure.annotations = await _annotations(gh, owner, name, run["id"])
    if details and (run.get("app") or {}).get("slug") == ACTIONS_APP:
        failure.log_tail, failure.command = await _job_log(gh, owner, name, run["id"])
    failure.category = classify(
        failure.name,
        failure.conclusion,
        failure.annotations,
        "\n".join(p for p in (failure.summary, failure.text, failure.log_tail) if p),
    )
    return failure


async def _annotations(gh: Any, owner: str, name: str, run_id: int) -> list[str]:
    found: list[str] = []
    async for a in gh.getiter(
        "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations?per_page=50",
        {"owner": owner, "repo": name, "check_run_id": run_id},
    ):
        where = f"{a.get('path')}:{a.get('start_line')}"
        level = a.get("annotation_level") or "failure"
        text = " ".join(p for p in (a.get("title"), a.get("message")) if p)
        found.append(f"{where}: {level}: {text}"[:ANNOTATION_LIMIT])
        if len(found) >= MAX_ANNOTATIONS:
            break
    return found


async def _job_log(gh: Any, owner: str, name: str, job_id: int) -> tuple[str, str | None]:
    """The error lines of an Actions job's log (the check run's id is the job's),
    and the command of the step that failed."""
    excerpt = LogExcerpt(LOG_TAIL_LIMIT)
    try:
        async for chunk in gh.download(
            "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
            {"owner": owner, "repo": name, "job_id": job_id},
        ):
            excerpt.feed(chunk)
        return excerpt.result(), excerpt.failing_command()
    except Exception as exc:  # a log is a help, not a requirement: the round goes on
        log.warning("could not read the log of job %s in %s/%s: %s", job_id, owner, name, exc)
        return "", None
