"""The committed webhook examples, drift-fixed, conform to the official schemas."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.webhook_examples import (
    DELETE,
    DRIFT_FIXES,
    FIXTURES,
    WebhookSchemaError,
    all_examples,
    all_published,
    apply_drift_fixes,
    drift_fix_usage,
    example,
    examples,
    published,
    schema_errors,
    validate,
)

EVENTS = sorted(p.stem for p in (FIXTURES / "examples").glob("*.json"))


def _ids(cases: list[tuple[str, str | None, dict]]) -> list[str]:
    seen: Counter[str] = Counter()
    ids = []
    for event, action, _ in cases:
        name = f"{event}.{action}" if action else event
        ids.append(f"{name}[{seen[name]}]")
        seen[name] += 1
    return ids


CASES = all_examples(EVENTS)


@pytest.mark.parametrize(("event", "action", "payload"), CASES, ids=_ids(CASES))
def test_example_conforms_to_official_schema(event, action, payload):
    validate(event, payload)


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("issues", "labeled"),
        ("issues", "opened"),
        ("issue_comment", "created"),
        ("pull_request", "opened"),
        ("pull_request", "closed"),
        ("pull_request", "synchronize"),
        ("pull_request", "review_requested"),
        ("pull_request_review", "submitted"),
        ("pull_request_review_comment", "created"),
        ("pull_request_review_thread", "resolved"),
        ("check_run", "completed"),
        ("check_run", "rerequested"),
        ("check_suite", "completed"),
        ("workflow_run", "completed"),
        ("workflow_job", "completed"),
        ("installation", "created"),
        ("installation", "deleted"),
        ("installation_repositories", "added"),
        ("installation_repositories", "removed"),
        ("push", None),
        ("ping", None),
    ],
)
def test_examples_used_by_the_tests_exist(event, action):
    found = examples(event, action)
    assert found
    assert all(p.get("action") == action for p in found)


def test_every_published_example_is_committed():
    # Nothing is left out: the fixture files hold every upstream example (exact
    # duplicates dropped), and the loader serves each one, drift-fixed.
    for event in EVENTS:
        raw = json.loads((FIXTURES / "examples" / f"{event}.json").read_text())
        assert published(event) == raw
        assert len(examples(event)) == len(raw)
        assert all(raw.count(p) == 1 for p in raw)
    assert len(all_published(EVENTS)) == len(CASES)


USAGE = drift_fix_usage(EVENTS)


@pytest.mark.parametrize("fix", DRIFT_FIXES, ids=[f.__name__ for f in DRIFT_FIXES])
def test_drift_fix_is_documented_and_changes_some_example(fix):
    reason = (fix.__doc__ or "").strip()
    assert reason and "\n" not in reason, f"{fix.__name__}: give a one-line reason"
    touched = USAGE[fix.__name__]
    print(f"{fix.__name__}: {len(touched)} examples: {', '.join(touched)}")
    assert touched, f"{fix.__name__} changes no example: remove it from DRIFT_FIXES"


def test_drift_fix_usage_summary(capsys):
    width = max(len(name) for name in USAGE)
    with capsys.disabled():
        print("\nschema drift fixes (examples changed):")
        for name, touched in USAGE.items():
            print(f"  {name:<{width}}  {len(touched):3}")
    assert list(USAGE) == [fix.__name__ for fix in DRIFT_FIXES]
    assert all(USAGE.values()), [name for name, touched in USAGE.items() if not touched]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


@pytest.mark.parametrize(
    ("event", "action", "payload"),
    all_published(EVENTS),
    ids=_ids(all_published(EVENTS)),
)
def test_drift_fixes_only_add_or_reencode(event, action, payload):
    fixed, applied = apply_drift_fixes(event, payload)
    assert set(_paths(payload)) <= set(_paths(fixed))  # nothing removed or moved
    assert apply_drift_fixes(event, fixed) == (fixed, [])  # idempotent
    assert (fixed == payload) == (not applied)
    assert apply_drift_fixes(event, payload)[0] == fixed  # input untouched


def test_published_examples_are_unedited():
    raw = published("installation", "created")[0]
    assert isinstance(raw["installation"]["created_at"], int)
    assert "app_slug" not in raw["installation"]
    with pytest.raises(WebhookSchemaError, match=r"/installation/created_at: \d+ is not"):
        validate("installation", raw)
    fixed = example("installation", "created")
    assert fixed["installation"]["created_at"] == "2019-05-15T15:19:51Z"
    assert fixed["installation"]["app_slug"] == ""
    validate("installation", fixed)

    raw_push = published("push")[1]
    assert "has_discussions" not in raw_push["repository"]
    assert examples("push")[1]["repository"]["has_discussions"] is False


def test_published_are_copies():
    first = published("push")[0]
    first["ref"] = "changed"
    assert published("push")[0]["ref"] != "changed"
    _, _, payload = all_published(["ping"])[0]
    payload["hook"]["id"] = -1
    assert all_published(["ping"])[0][2]["hook"]["id"] != -1


def test_schemas_cover_every_event_and_action_with_examples():
    schemas = json.loads((FIXTURES / "schemas.json").read_text())["webhooks"]
    for event, action, _ in CASES:
        assert (f"{event}.{action}" if action else event) in schemas


def test_missing_required_field_is_rejected():
    payload = example("issues", "labeled")
    del payload["issue"]
    with pytest.raises(WebhookSchemaError, match=r"'issue' is a required property"):
        validate("issues", payload)


def test_wrong_type_is_rejected_with_its_path():
    payload = example("issues", "labeled", issue={"number": "1"})
    with pytest.raises(AssertionError, match=r"/issue/number: '1' is not of type 'integer'"):
        validate("issues", payload)


def test_every_error_is_listed():
    payload = example("issues", "labeled", issue={"number": "1"}, sender=DELETE)
    errors = schema_errors("issues", payload)
    assert len(errors) == 2
    with pytest.raises(WebhookSchemaError) as raised:
        validate("issues", payload)
    for error in errors:
        assert error in str(raised.value)


def test_malformed_timestamp_is_rejected():
    payload = example("check_run", "completed", check_run={"completed_at": "yesterday"})
    with pytest.raises(WebhookSchemaError, match=r"/check_run/completed_at: .* 'date-time'"):
        validate("check_run", payload)


def test_oneof_failures_are_explained():
    # review_requested is oneOf(with requested_reviewer, with requested_team): a closed
    # pull request relabelled as review_requested matches neither branch.
    payload = example("pull_request", "closed")
    payload["action"] = "review_requested"
    errors = schema_errors("pull_request", payload)
    assert "/: 'requested_reviewer' is a required property (oneOf branch 0)" in errors
    assert "/: 'requested_team' is a required property (oneOf branch 1)" in errors


def test_payload_is_checked_against_the_schema_of_its_action():
    payload = example("issues", "labeled")
    payload["action"] = "unlabeled"
    validate("issues", payload)
    payload["action"] = "locked"
    with pytest.raises(WebhookSchemaError, match=r"/issue/locked: False is not one of \[True\]"):
        validate("issues", payload)
    payload["action"] = "milestoned"
    with pytest.raises(WebhookSchemaError, match=r"'milestone' is a required property"):
        validate("issues", payload)
    with pytest.raises(ValueError, match="no official schema for issues with action 'suspend'"):
        validate("issues", example("installation", "suspend"))


def test_unknown_event_or_action_is_a_value_error():
    with pytest.raises(ValueError, match="no official webhook schema for event 'nope'"):
        validate("nope", {})
    with pytest.raises(ValueError, match="actions: .*labeled"):
        validate("issues", {"action": "frobbed"})


def test_example_without_match_raises_clearly():
    with pytest.raises(LookupError, match="no issues example with action 'frobbed'"):
        example("issues", "frobbed")
    with pytest.raises(LookupError, match="no webhook examples for event 'nope'"):
        example("nope")


def test_examples_are_copies():
    first = example("issues", "labeled")
    first["issue"]["number"] = -1
    first["label"]["name"] = "changed"
    del first["repository"]
    again = example("issues", "labeled")
    assert again["issue"]["number"] != -1
    assert again["label"]["name"] != "changed"
    assert "repository" in again

    listed = examples("issues", "labeled")
    listed[0]["issue"]["title"] = "changed"
    assert examples("issues", "labeled")[0]["issue"]["title"] != "changed"

    _, _, payload = all_examples(["ping"])[0]
    payload["hook"]["id"] = -1
    assert all_examples(["ping"])[0][2]["hook"]["id"] != -1


def test_example_edits_merge_replace_and_delete():
    base = example("issues", "labeled")
    label = {"name": "compound", "id": 1}
    edited = example(
        "issues",
        "labeled",
        issue={"number": 42, "user": {"login": "someone"}},
        label=DELETE,
        installation={"id": 7, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNw=="},
        changes=label,
    )
    assert edited["issue"]["number"] == 42
    assert edited["issue"]["title"] == base["issue"]["title"]  # merged, not replaced
    assert edited["issue"]["user"]["login"] == "someone"
    assert edited["issue"]["user"]["id"] == base["issue"]["user"]["id"]
    assert "label" not in edited
    assert edited["installation"]["id"] == 7
    label["name"] = "mutated"  # edits are copied in too
    assert edited["changes"]["name"] == "compound"
    del edited["changes"]
    validate("issues", edited)
