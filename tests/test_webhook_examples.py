"""The committed webhook examples conform to the official schemas; the loader copies."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.webhook_examples import (
    DELETE,
    FIXTURES,
    WebhookSchemaError,
    all_examples,
    example,
    examples,
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
        ("check_run", "completed"),
        ("check_suite", "completed"),
        ("workflow_run", "completed"),
        ("workflow_job", "completed"),
        ("ping", None),
    ],
)
def test_examples_used_by_the_tests_exist(event, action):
    found = examples(event, action)
    assert found
    assert all(p.get("action") == action for p in found)


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
