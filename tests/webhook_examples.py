"""GitHub's published webhook payloads and official schemas, for tests.

The data lives in ``tests/fixtures/webhooks`` (see its README) and is produced by
``scripts/fetch_webhook_examples.py``. Every function returns fresh deep copies, so tests
may edit what they get.

    payload = example("issues", "labeled", label={"name": "compound"})
    validate("issues", payload)   # AssertionError listing schema errors, if any
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Iterable
from functools import lru_cache
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


@lru_cache(maxsize=None)
def _payloads(event: str) -> tuple[dict[str, Any], ...]:
    path = FIXTURES / "examples" / f"{event}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (FIXTURES / "examples").glob("*.json")))
        raise LookupError(
            f"no webhook examples for event {event!r}; have: {known} (upstream examples "
            f"that do not conform to the official schema are left out: see "
            f"tests/fixtures/webhooks/README.md)"
        )
    return tuple(json.loads(path.read_text()))


def examples(event: str, action: str | None = None) -> list[dict[str, Any]]:
    """The published examples for event (only those for action, if given), copied."""
    return [
        copy.deepcopy(payload)
        for payload in _payloads(event)
        if action is None or payload.get("action") == action
    ]


def example(event: str, action: str | None = None, **edits: Any) -> dict[str, Any]:
    """The first published example for event (and action), copied, with edits applied.

    Each edit sets a top-level key. A dict value is merged into the dict already there,
    recursively (so ``issue={"number": 7}`` keeps the rest of the issue); any other value
    replaces it; ``DELETE`` removes the key. (``action`` names the example to start from;
    to change the action, set ``payload["action"]`` on the result.)
    """
    found = examples(event, action)
    if not found:
        actions = sorted({str(p.get("action")) for p in _payloads(event)})
        raise LookupError(
            f"no {event} example with action {action!r}; actions with examples: "
            f"{', '.join(actions)} (see tests/fixtures/webhooks/README.md for the "
            f"upstream examples left out)"
        )
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
    return [
        (event, payload.get("action"), payload)
        for event in events
        for payload in examples(event)
    ]


@lru_cache(maxsize=None)
def _schemas() -> tuple[Registry, frozenset[str]]:
    document = json.loads((FIXTURES / "schemas.json").read_text())
    registry = Registry().with_resource(_BASE_URI, DRAFT202012.create_resource(document))
    return registry.crawl(), frozenset(document["webhooks"])


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_formats = FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@lru_cache(maxsize=None)
def _validator(key: str) -> Draft202012Validator:
    registry, _ = _schemas()
    return Draft202012Validator(
        {"$ref": f"{_BASE_URI}#/webhooks/{key}"}, registry=registry, format_checker=_formats
    )


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
        raise ValueError(
            f"no official schema for {event} with action {action!r}; "
            f"actions: {', '.join(actions)}"
        )
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
