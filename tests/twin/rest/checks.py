"""Check runs and check suites, Compound's and other Apps' (Actions: ``actions.py``)."""

from __future__ import annotations

from typing import Any

from .. import gitrepo, shapes
from ..checkstate import refresh_suite, set_state, suite_for
from ..shapes_checks import simple_commit
from ..state import CheckRun, Repo
from .base import ApiError, Call, Reply, not_found, operation, unprocessable

# GitHub's documented limits, answered with 422 when exceeded.
MAX_TEXT = 65535
MAX_ACTIONS = 3
ACTION_LIMITS = {"label": 20, "description": 40, "identifier": 20}


def check_limits(body: dict[str, Any]) -> None:
    output = body.get("output") or {}
    for key in ("summary", "text"):
        value = output.get(key)
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise unprocessable(
                f"Invalid request.\n\nOnly 65535 characters are allowed; {len(value)} were supplied.",
                {"resource": "CheckRun", "field": f"output.{key}", "code": "too_long"},
            )
    actions = body.get("actions") or []
    if len(actions) > MAX_ACTIONS:
        raise unprocessable(
            f"Invalid request.\n\nOnly {MAX_ACTIONS} actions are allowed; {len(actions)} were supplied."
        )
    for action in actions:
        for key, limit in ACTION_LIMITS.items():
            value = action.get(key)
            if not isinstance(value, str) or not value:
                raise unprocessable(f'Invalid request.\n\n"{key}" wasn\'t supplied.')
            if len(value) > limit:
                raise unprocessable(f"Invalid request.\n\n{key} is too long (maximum is {limit} characters).")


def _apply(run: CheckRun, body: dict[str, Any]) -> None:
    for key in ("name", "details_url", "external_id", "started_at", "completed_at"):
        if key in body:
            setattr(run, key, body[key])
    if body.get("status") == "completed" and not body.get("conclusion") and run.conclusion is None:
        raise unprocessable('Invalid request.\n\n"conclusion" wasn\'t supplied.')
    set_state(run, body.get("status"), body.get("conclusion"))
    if "output" in body:
        output = dict(body["output"] or {})
        run.annotations.extend(output.pop("annotations", []) or [])
        output.pop("images", None)
        run.output.update(output)
    if "actions" in body:
        run.actions = list(body["actions"] or [])


def run_of(call: Call, repo: Repo) -> CheckRun:
    run = repo.check_runs.get(call.int_param("check_run_id"))
    if run is None:
        raise not_found()
    return run


@operation("checks/create")
async def create_run(call: Call) -> Reply:
    repo = call.repo()
    body = call.json
    check_limits(body)
    head_sha = body.get("head_sha", "")
    sha = await gitrepo.resolve(repo.bare_path, head_sha) if head_sha else None
    if sha is None or not sha.startswith(head_sha.lower()):
        raise unprocessable("No commit found for SHA: " + str(head_sha))
    suite = suite_for(call.twin, repo, call.twin.app_slug, sha)
    run = CheckRun(call.twin.state.next_id(), body["name"], sha, suite.id, app=call.twin.app_slug)
    _apply(run, body)
    repo.check_runs[run.id] = run
    refresh_suite(repo, suite)
    return Reply(201, shapes.check_run(call.twin, repo, run))


@operation("checks/update")
async def update_run(call: Call) -> Reply:
    repo = call.repo()
    run = run_of(call, repo)
    body = call.json
    check_limits(body)
    if run.app != call.twin.app_slug:
        raise ApiError(
            403,
            f"Invalid app_id `{call.twin.app_id}` - check run can only be modified by the GitHub App that created it.",
        )
    _apply(run, body)
    refresh_suite(repo, repo.check_suites[run.suite_id])
    return Reply(200, shapes.check_run(call.twin, repo, run))


@operation("checks/get")
async def get_run(call: Call) -> Reply:
    repo = call.repo()
    return Reply(200, shapes.check_run(call.twin, repo, run_of(call, repo)))


@operation("checks/list-annotations")
async def list_annotations(call: Call) -> Reply:
    repo = call.repo()
    run = run_of(call, repo)
    items = [
        {
            "path": a["path"],
            "blob_href": f"{call.twin.git_url}/{repo.full_name}/blob/{run.head_sha}/{a['path']}",
            "start_line": a["start_line"],
            "end_line": a["end_line"],
            "start_column": a.get("start_column"),
            "end_column": a.get("end_column"),
            "annotation_level": a.get("annotation_level"),
            "title": a.get("title"),
            "message": a.get("message"),
            "raw_details": a.get("raw_details"),
        }
        for a in run.annotations
    ]
    return Reply(200, call.page(items))


def _app_slug(call: Call) -> str | None:
    """The App the ``app_id`` query names (None: every App); 'none' when no App has it."""
    wanted = call.query.get("app_id")
    if wanted is None:
        return None
    twin = call.twin
    if wanted == str(twin.app_id):
        return twin.app_slug
    return next((a.slug for a in twin.state.apps.values() if str(a.id) == wanted), "none")


def _filter_runs(call: Call, runs: list[CheckRun]) -> list[CheckRun]:
    name = call.query.get("check_name")
    status = call.query.get("status")
    app = _app_slug(call)
    runs = [
        r
        for r in runs
        if (name is None or r.name == name) and (status is None or r.status == status) and (app is None or r.app == app)
    ]
    if call.query.get("filter", "latest") == "latest":
        latest: dict[tuple[str, str], CheckRun] = {}
        for run in sorted(runs, key=lambda r: r.id):
            latest[(run.app, run.name)] = run  # ids grow, so the last one wins
        runs = list(latest.values())
    return sorted(runs, key=lambda r: -r.id)


async def _sha(call: Call, repo: Repo) -> str:
    sha = await gitrepo.resolve(repo.bare_path, call.params["ref"])
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {call.params['ref']}")
    return sha


@operation("checks/list-for-ref")
async def list_for_ref(call: Call) -> Reply:
    repo = call.repo()
    sha = await _sha(call, repo)
    runs = _filter_runs(call, [r for r in repo.check_runs.values() if r.head_sha == sha])
    items = [shapes.check_run(call.twin, repo, r) for r in call.page(runs)]
    return Reply(200, {"total_count": len(runs), "check_runs": items})


@operation("checks/list-for-suite")
async def list_for_suite(call: Call) -> Reply:
    repo = call.repo()
    suite_id = call.int_param("check_suite_id")
    if suite_id not in repo.check_suites:
        raise not_found()
    runs = _filter_runs(call, [r for r in repo.check_runs.values() if r.suite_id == suite_id])
    items = [shapes.check_run(call.twin, repo, r) for r in call.page(runs)]
    return Reply(200, {"total_count": len(runs), "check_runs": items})


async def head_commit(repo: Repo, sha: str) -> dict[str, Any]:
    return simple_commit(await gitrepo.commit(repo.bare_path, sha))


@operation("checks/list-suites-for-ref")
async def list_suites_for_ref(call: Call) -> Reply:
    repo = call.repo()
    sha = await _sha(call, repo)
    app = _app_slug(call)
    suites = [s for s in repo.check_suites.values() if s.head_sha == sha and (app is None or s.app == app)]
    name = call.query.get("check_name")
    if name is not None:
        suites = [s for s in suites if any(r.name == name and r.suite_id == s.id for r in repo.check_runs.values())]
    head = await head_commit(repo, sha)
    items = [shapes.check_suite(call.twin, repo, s, head) for s in call.page(suites)]
    return Reply(200, {"total_count": len(suites), "check_suites": items})


@operation("checks/get-suite")
async def get_suite(call: Call) -> Reply:
    repo = call.repo()
    suite = repo.check_suites.get(call.int_param("check_suite_id"))
    if suite is None:
        raise not_found()
    return Reply(200, shapes.check_suite(call.twin, repo, suite, await head_commit(repo, suite.head_sha)))
