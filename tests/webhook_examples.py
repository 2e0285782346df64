"""GitHub's published webhook payloads and official schemas, for tests.

The data lives in ``tests/fixtures/webhooks`` (see its README) and is produced by
``scripts/fetch_webhook_examples.py``: every published example, unedited. Many were
captured before fields the schemas now require existed, so ``examples``, ``example`` and
``all_examples`` apply ``DRIFT_FIXES`` (small mechanical edits, each documented below) and
conform to the official schemas; ``published`` and ``all_published`` return the payloads
exactly as published. Every function returns fresh deep copies, so tests may edit them.

    payload = example("issues", "labeled", label={"name": "compound"})
    validate("issues", payload)   # AssertionError listing schema errors, if any
    for event, action, raw in all_published(["push"]): ...   # what GitHub really sent
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
_BASE_URI = "urn:compound:webhook-schemas"


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Delete()
"""Pass as an edit value to remove the key: ``example("issues", issue={"body": DELETE})``."""


class WebhookSchemaError(AssertionError):
    """A payload does not conform to the official schema for its event and action."""


@cache
def _published(event: str) -> tuple[dict[str, Any], ...]:
    path = FIXTURES / "examples" / f"{event}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (FIXTURES / "examples").glob("*.json")))
        raise LookupError(
            f"no webhook examples for event {event!r}; have: {known} (see tests/fixtures/webhooks/README.md)"
        )
    return tuple(json.loads(path.read_text()))


@cache
def _fixed(event: str) -> tuple[dict[str, Any], ...]:
    return tuple(apply_drift_fixes(event, payload)[0] for payload in _published(event))


def published(event: str, action: str | None = None) -> list[dict[str, Any]]:
    """The examples for event (and action) exactly as published upstream, copied.

    No drift fixes: some of these do not conform to today's schema (see DRIFT_FIXES).
    Use them to prove the service accepts what GitHub actually sent.
    """
    return _select(_published(event), action)


def all_published(events: Iterable[str]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event, action, payload) for every published example of the events, unedited."""
    return [(e, p.get("action"), p) for e in events for p in published(e)]


def examples(event: str, action: str | None = None) -> list[dict[str, Any]]:
    """The examples for event (only those for action, if given), drift-fixed, copied."""
    return _select(_fixed(event), action)


def _select(payloads: Iterable[dict[str, Any]], action: str | None) -> list[dict[str, Any]]:
    return [copy.deepcopy(payload) for payload in payloads if action is None or payload.get("action") == action]


def example(event: str, action: str | None = None, **edits: Any) -> dict[str, Any]:
    """The first example for event (and action), drift-fixed, copied, with edits applied.

    Each edit sets a top-level key. A dict value is merged into the dict already there,
    recursively (so ``issue={"number": 7}`` keeps the rest of the issue); any other value
    replaces it; ``DELETE`` removes the key. (``action`` names the example to start from;
    to change the action, set ``payload["action"]`` on the result.)
    """
    found = examples(event, action)
    if not found:
        actions = sorted({str(p.get("action")) for p in _published(event)})
        raise LookupError(f"no {event} example with action {action!r}; actions with examples: {', '.join(actions)}")
    payload = found[0]
    _merge(payload, edits)
    return payload


def _merge(target: dict[str, Any], edits: dict[str, Any]) -> None:
    for key, value in edits.items():
        if value is DELETE:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def all_examples(events: Iterable[str]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event, action, payload) for every example of the events, for parametrizing."""
    return [(event, payload.get("action"), payload) for event in events for payload in examples(event)]


# --- Schema drift fixes ---------------------------------------------------------------
#
# `@octokit/webhooks-examples` holds payloads captured over years; the official schemas
# (`@octokit/openapi-webhooks`) describe what GitHub sends today. Older captures lack
# fields that were added later, or use an older encoding. Each fix below makes one such
# mechanical change, only where the field is missing or in the old form, and never
# touches anything else; the first docstring line is its reason. `examples()` and
# friends apply them all, in order; `published()` does not. tests/test_webhook_examples.py
# fails if a fix no longer changes any example (then delete it).

_REACTION_COUNTS = ("+1", "-1", "confused", "eyes", "heart", "hooray", "laugh", "rocket")


def _dicts(node: Any, key: str | None = None) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Every dict in node (node itself included), with the key it is stored under."""
    if isinstance(node, dict):
        yield key, node
        for k, value in node.items():
            yield from _dicts(value, k)
    elif isinstance(node, list):
        for value in node:
            yield from _dicts(value, key)


def _is_repository(obj: dict[str, Any]) -> bool:
    """A full repository object (not the short form in installation_repositories)."""
    return {"full_name", "owner", "private", "default_branch"} <= obj.keys()


def _set_missing(obj: dict[str, Any], values: dict[str, Any]) -> bool:
    missing = {k: copy.deepcopy(v) for k, v in values.items() if k not in obj}
    obj.update(missing)
    return bool(missing)


def _each(objects: Iterable[dict[str, Any]], values: dict[str, Any]) -> bool:
    return [_set_missing(obj, values) for obj in objects].count(True) > 0


def _iso8601(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fix_repository_has_discussions(event: str, payload: dict[str, Any]) -> bool:
    """Repositories captured before Discussions (2022) lack `has_discussions`: add false."""
    repos = (obj for _, obj in _dicts(payload) if _is_repository(obj))
    return _each(repos, {"has_discussions": False})


def fix_repository_topics_visibility(event: str, payload: dict[str, Any]) -> bool:
    """Old repositories lack `topics`/`visibility`: add [] and public/private per `private`."""
    changed = False
    for _, repo in _dicts(payload):
        if _is_repository(repo):
            visibility = "private" if repo["private"] else "public"
            changed |= _set_missing(repo, {"topics": [], "visibility": visibility})
    return changed


def fix_repository_disabled(event: str, payload: dict[str, Any]) -> bool:
    """Old repositories lack `disabled`: add false."""
    repos = (obj for _, obj in _dicts(payload) if _is_repository(obj))
    return _each(repos, {"disabled": False})


def fix_installation_timestamps(event: str, payload: dict[str, Any]) -> bool:
    """Old installation objects have Unix-time `created_at`/`updated_at`: ISO 8601 (UTC)."""
    installation = payload.get("installation")
    changed = False
    if isinstance(installation, dict) and "app_id" in installation:
        for field in ("created_at", "updated_at"):
            if isinstance(installation.get(field), int):
                installation[field] = _iso8601(installation[field])
                changed = True
    return changed


def fix_installation_app_slug(event: str, payload: dict[str, Any]) -> bool:
    """Old installation objects lack `app_slug`: add "" (as upstream's newer examples do)."""
    installation = payload.get("installation")
    if isinstance(installation, dict) and "app_id" in installation:
        return _set_missing(installation, {"app_slug": ""})
    return False


def fix_installation_suspension(event: str, payload: dict[str, Any]) -> bool:
    """Old installation objects lack `suspended_by`/`suspended_at`: add null (not suspended)."""
    installation = payload.get("installation")
    if isinstance(installation, dict) and "app_id" in installation:
        return _set_missing(installation, {"suspended_by": None, "suspended_at": None})
    return False


def fix_installation_repositories_requester(event: str, payload: dict[str, Any]) -> bool:
    """Old installation_repositories payloads lack `requester`: add null (no request)."""
    if event != "installation_repositories":
        return False
    return _set_missing(payload, {"requester": None})


def fix_label_description(event: str, payload: dict[str, Any]) -> bool:
    """Labels captured before label descriptions (2018) lack `description`: add null."""
    labels = (obj for key, obj in _dicts(payload) if key in ("label", "labels") and {"name", "color"} <= obj.keys())
    return _each(labels, {"description": None})


def fix_active_lock_reason(event: str, payload: dict[str, Any]) -> bool:
    """Old issues/pull requests lack `active_lock_reason`: add null (not locked for a reason)."""
    targets = (payload.get(k) for k in ("issue", "pull_request"))
    return _each((t for t in targets if isinstance(t, dict)), {"active_lock_reason": None})


def fix_reactions(event: str, payload: dict[str, Any]) -> bool:
    """Old issues/comments lack the `reactions` rollup: add one with zero counts."""
    changed = False
    for key in ("issue", "comment"):
        obj = payload.get(key)
        if isinstance(obj, dict) and "reactions" not in obj:
            obj["reactions"] = {
                "url": f"{obj['url']}/reactions",
                "total_count": 0,
                **{name: 0 for name in _REACTION_COUNTS},
            }
            changed = True
    return changed


def fix_comment_performed_via_github_app(event: str, payload: dict[str, Any]) -> bool:
    """Old issue comments lack `performed_via_github_app`: add null (posted by a user)."""
    comment = payload.get("comment")
    if event == "issue_comment" and isinstance(comment, dict):
        return _set_missing(comment, {"performed_via_github_app": None})
    return False


def fix_pull_request_auto_merge(event: str, payload: dict[str, Any]) -> bool:
    """Pull requests captured before auto-merge (2020) lack `auto_merge`: add null."""
    pull = payload.get("pull_request")
    return isinstance(pull, dict) and _set_missing(pull, {"auto_merge": None})


def fix_pull_request_draft(event: str, payload: dict[str, Any]) -> bool:
    """Pull requests captured before draft PRs (2019) lack `draft`: add false."""
    pull = payload.get("pull_request")
    return isinstance(pull, dict) and _set_missing(pull, {"draft": False})


def fix_review_comment_lines(event: str, payload: dict[str, Any]) -> bool:
    """Review comments from before multi-line comments lack line fields: null, side RIGHT."""
    comment = payload.get("comment")
    if event != "pull_request_review_comment" or not isinstance(comment, dict):
        return False
    return _set_missing(
        comment,
        {
            "line": None,
            "original_line": None,
            "start_line": None,
            "original_start_line": None,
            "side": "RIGHT",
            "start_side": None,
        },
    )


def fix_app_fields(event: str, payload: dict[str, Any]) -> bool:
    """Old GitHub App objects lack `permissions`/`events` and use "YYYY-MM-DD hh:mm:ss"."""
    changed = False
    for key, app in _dicts(payload):
        if key != "app" or ("slug" not in app and "external_url" not in app):
            continue
        changed |= _set_missing(app, {"permissions": {}, "events": []})
        for field in ("created_at", "updated_at"):
            value = app.get(field)
            if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", value):
                app[field] = value.replace(" ", "T") + "Z"
                changed = True
    return changed


def fix_check_run_ids(event: str, payload: dict[str, Any]) -> bool:
    """Old check runs lack `node_id`/`details_url`: legacy node id; details_url = html_url."""
    run = payload.get("check_run")
    if event != "check_run" or not isinstance(run, dict):
        return False
    node_id = base64.b64encode(f"08:CheckRun{run['id']}".encode()).decode()
    return _set_missing(run, {"node_id": node_id, "details_url": run["html_url"]})


def fix_workflow_run_actor_path(event: str, payload: dict[str, Any]) -> bool:
    """Old workflow runs lack `actor`/`triggering_actor`/`path`: the sender; workflow.path."""
    run = payload.get("workflow_run")
    if event != "workflow_run" or not isinstance(run, dict):
        return False
    return _set_missing(
        run,
        {
            "actor": payload["sender"],
            "triggering_actor": payload["sender"],
            "path": payload["workflow"]["path"],
        },
    )


def fix_workflow_job_fields(event: str, payload: dict[str, Any]) -> bool:
    """Old workflow jobs lack `run_attempt`/`created_at`/`head_branch`/`workflow_name`."""
    job = payload.get("workflow_job")
    if event != "workflow_job" or not isinstance(job, dict):
        return False
    return _set_missing(
        job,
        {
            "run_attempt": 1,
            "created_at": job["started_at"],
            "head_branch": None,
            "workflow_name": None,
        },
    )


def fix_commit_verified_at(event: str, payload: dict[str, Any]) -> bool:
    """Commit verifications captured before `verified_at` existed lack it: add null."""
    commit = payload.get("commit")
    if event != "status" or not isinstance(commit, dict):
        return False
    verification = (commit.get("commit") or {}).get("verification")
    return isinstance(verification, dict) and _set_missing(verification, {"verified_at": None})


DRIFT_FIXES: tuple[Callable[[str, dict[str, Any]], bool], ...] = (
    fix_repository_has_discussions,
    fix_repository_topics_visibility,
    fix_repository_disabled,
    fix_installation_timestamps,
    fix_installation_app_slug,
    fix_installation_suspension,
    fix_installation_repositories_requester,
    fix_label_description,
    fix_active_lock_reason,
    fix_reactions,
    fix_comment_performed_via_github_app,
    fix_pull_request_auto_merge,
    fix_pull_request_draft,
    fix_review_comment_lines,
    fix_app_fields,
    fix_check_run_ids,
    fix_workflow_run_actor_path,
    fix_workflow_job_fields,
    fix_commit_verified_at,
)
"""The schema drift fixes, in the order applied. Each edits in place; True if it changed."""


def apply_drift_fixes(event: str, payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A drift-fixed copy of payload, and the names of the fixes that changed it."""
    fixed = copy.deepcopy(payload)
    applied = [fix.__name__ for fix in DRIFT_FIXES if fix(event, fixed)]
    return fixed, applied


def drift_fix_usage(events: Iterable[str]) -> dict[str, list[str]]:
    """For each fix, the examples it changes ("event.action[i]", i counting per action)."""
    usage: dict[str, list[str]] = {fix.__name__: [] for fix in DRIFT_FIXES}
    for event in events:
        seen: dict[str, int] = {}
        for payload in _published(event):
            name = f"{event}.{payload['action']}" if "action" in payload else event
            ident = f"{name}[{seen.setdefault(name, 0)}]"
            seen[name] += 1
            for fix_name in apply_drift_fixes(event, payload)[1]:
                usage[fix_name].append(ident)
    return usage


@cache
def _schemas() -> tuple[Registry, frozenset[str]]:
    document = json.loads((FIXTURES / "schemas.json").read_text())
    registry = Registry().with_resource(_BASE_URI, DRAFT202012.create_resource(document))
    return registry.crawl(), frozenset(document["webhooks"])


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_formats = FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@cache
def _validator(key: str) -> Draft202012Validator:
    registry, _ = _schemas()
    return Draft202012Validator({"$ref": f"{_BASE_URI}#/webhooks/{key}"}, registry=registry, format_checker=_formats)


def schema_key(event: str, payload: dict[str, Any]) -> str:
    """The key of the official schema for this payload: "event.action" or "event"."""
    _, keys = _schemas()
    action = payload.get("action") if isinstance(payload, dict) else None
    if event in keys:
        return event
    key = f"{event}.{action}"
    if key not in keys:
        actions = sorted(k.partition(".")[2] for k in keys if k.startswith(f"{event}."))
        if not actions:
            raise ValueError(f"no official webhook schema for event {event!r}")
        raise ValueError(f"no official schema for {event} with action {action!r}; actions: {', '.join(actions)}")
    return key


def schema_errors(event: str, payload: dict[str, Any]) -> list[str]:
    """Readable schema errors for payload (empty if it conforms)."""
    key = schema_key(event, payload)
    found: list[str] = []
    for error in _validator(key).iter_errors(payload):
        leaves = _leaves(error)
        for path, message in leaves:
            found.append(f"{path or '/'}: {message}")
    return sorted(set(found))


def _leaves(error: Any, branch: str = "") -> list[tuple[str, str]]:
    """The innermost errors; oneOf/anyOf failures are reported per branch."""
    if not error.context:
        path = "/" + "/".join(str(p) for p in error.absolute_path)
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        return [(path if path != "/" else "", message + branch)]
    result = []
    for sub in error.context:
        index = sub.relative_schema_path[0] if sub.relative_schema_path else "?"
        result.extend(_leaves(sub, f"{branch} ({error.validator} branch {index})"))
    return result


def validate(event: str, payload: dict[str, Any]) -> None:
    """Raise WebhookSchemaError (an AssertionError) listing every schema error, if any.

    The schema is the official one for the event and the payload's action; an event or
    action with no official schema raises ValueError.
    """
    errors = schema_errors(event, payload)
    if errors:
        key = schema_key(event, payload)
        listing = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise WebhookSchemaError(
            f"payload does not conform to the {key} webhook schema "
            f"({len(errors)} error{'s' if len(errors) > 1 else ''}):\n  {listing}{more}"
        )
