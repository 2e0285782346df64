#!/usr/bin/env python3
"""Fetch GitHub's published webhook examples and schemas into tests/fixtures/webhooks/.

Sources (npm, fetched with ``npm pack`` into a temporary directory):

* ``@octokit/webhooks-examples`` -- example payloads, ``api.github.com/index.json``.
* ``@octokit/openapi-webhooks`` -- GitHub's official webhook OpenAPI 3.1 description,
  ``generated/api.github.com.json``: one schema per event+action under ``webhooks``
  (plus a few request-body examples, which are used as examples too).

Writes:

* ``examples/<event>.json``  -- list of example payloads for the event (all actions),
  only those that conform to the official schema (see EXCLUDED below);
* ``schemas.json``            -- the official schemas for the events used, with every
  component they reference (transitively), compact;
* ``LICENSE``, ``README.md``  -- provenance.

Usage::

    .venv/bin/python scripts/fetch_webhook_examples.py            # pinned versions
    .venv/bin/python scripts/fetch_webhook_examples.py --examples-version latest \\
        --schemas-version latest                                  # bump (review EXCLUDED)

The script refuses to write anything if an example fails validation and is not listed in
EXCLUDED, or if an EXCLUDED example now validates: the list has to be reviewed by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "webhooks"

EXAMPLES_PACKAGE = "@octokit/webhooks-examples"
EXAMPLES_VERSION = "7.6.1"
EXAMPLES_FILE = "api.github.com/index.json"

SCHEMAS_PACKAGE = "@octokit/openapi-webhooks"
SCHEMAS_VERSION = "12.1.0"
SCHEMAS_FILE = "generated/api.github.com.json"

EVENTS = (
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "check_run",
    "check_suite",
    "workflow_run",
    "workflow_job",
    "installation",
    "installation_repositories",
    "push",
    "ping",
)

# Upstream examples that do not conform to the upstream schema. They are left out of the
# committed set rather than edited. Keys: (source, event, index of the example among that
# event's examples in the source). Values: why (the schema errors, summarised).
#
# Most are older captures that predate fields the schema now requires -- above all the
# repository field `has_discussions`, required on every repository object since 2022.
_NO_HAS_DISCUSSIONS = "repository objects lack `has_discussions` (required by the schema)"
_OLD_INSTALLATION = (
    "installation.created_at/updated_at are Unix timestamps (schema: string) and "
    "`app_slug` is missing"
)
EXCLUDED: dict[tuple[str, str, int], str] = {
    # check_run: the app object lacks `permissions`/`events`; check_run lacks `node_id`,
    # `details_url`; repository lacks `disabled`.
    ("webhooks-examples", "check_run", 7): (
        "rerequested: check_run.app lacks `permissions`/`events`; check_run lacks "
        "`node_id`/`details_url`; repository lacks `disabled`"
    ),
    ("webhooks-examples", "check_run", 8): (
        "rerequested: check_run.app lacks `permissions`/`events`; check_run lacks "
        "`node_id`/`details_url`; repository lacks `disabled`"
    ),
    # installation: old payload shape (epoch timestamps, no app_slug).
    ("webhooks-examples", "installation", 0): (
        "deleted: " + _OLD_INSTALLATION + "; `suspended_by`/`suspended_at` missing"
    ),
    ("webhooks-examples", "installation", 1): "created: " + _OLD_INSTALLATION,
    ("webhooks-examples", "installation", 2): "created: " + _OLD_INSTALLATION,
    ("webhooks-examples", "installation", 3): "deleted: " + _OLD_INSTALLATION,
    ("webhooks-examples", "installation", 4): (
        "new_permissions_accepted: installation.created_at/updated_at are Unix "
        "timestamps (schema: string)"
    ),
    ("webhooks-examples", "installation_repositories", 0): (
        "added: " + _OLD_INSTALLATION + "; `suspended_by`/`suspended_at` and top-level "
        "`requester` missing"
    ),
    ("webhooks-examples", "installation_repositories", 1): "added: " + _OLD_INSTALLATION,
    ("webhooks-examples", "installation_repositories", 2): "removed: " + _OLD_INSTALLATION,
    # issue_comment / issues: older issue shape.
    ("webhooks-examples", "issue_comment", 0): (
        "created: comment lacks `performed_via_github_app`/`reactions`; issue lacks "
        "`active_lock_reason`/`reactions`; label lacks `description`"
    ),
    ("webhooks-examples", "issues", 0): (
        "edited: issue lacks `active_lock_reason`/`reactions`; label lacks `description`"
    ),
    ("webhooks-examples", "issues", 21): "transferred: changes.new_repository lacks `has_discussions`",
    # pull_request
    ("webhooks-examples", "pull_request", 0): "opened: pull_request lacks `auto_merge`",
    **{
        ("webhooks-examples", "pull_request", i): _NO_HAS_DISCUSSIONS
        for i in (1, 2, 8, 9, 10, 11, 20, 21, 22, 23, 24, 25, 26, 27, 28)
    },
    # pull_request_review
    ("webhooks-examples", "pull_request_review", 0): (
        "submitted: repository objects lack `has_discussions`/`topics`/`visibility`; "
        "pull_request lacks `draft`/`auto_merge`/`active_lock_reason`"
    ),
    **{
        ("webhooks-examples", "pull_request_review", i): _NO_HAS_DISCUSSIONS
        for i in (1, 2, 3)
    },
    # pull_request_review_comment
    ("webhooks-examples", "pull_request_review_comment", 0): (
        "created: comment lacks line fields (`line`, `side`, `start_line`, ...) and "
        "`reactions`; repository objects lack `has_discussions`/`topics`/`visibility`; "
        "pull_request lacks `active_lock_reason`"
    ),
    **{
        ("webhooks-examples", "pull_request_review_comment", i): _NO_HAS_DISCUSSIONS
        for i in (1, 2, 3, 4)
    },
    # pull_request_review_thread
    **{
        ("webhooks-examples", "pull_request_review_thread", i): _NO_HAS_DISCUSSIONS
        for i in (0, 1, 2)
    },
    # push
    ("webhooks-examples", "push", 0): (
        "repository lacks `has_discussions`/`topics`/`visibility`"
    ),
    **{("webhooks-examples", "push", i): _NO_HAS_DISCUSSIONS for i in range(1, 7)},
    # workflow_job / workflow_run: older shapes.
    ("webhooks-examples", "workflow_job", 0): (
        "in_progress: workflow_job lacks `run_attempt`/`workflow_name`/`head_branch`/"
        "`created_at`"
    ),
    ("webhooks-examples", "workflow_run", 0): (
        "completed: workflow_run lacks `actor`/`path`/`triggering_actor`"
    ),
}

BASE_URI = "urn:compound:webhook-schemas"


def npm_pack(package: str, version: str, dest: Path) -> tuple[Path, dict[str, Any]]:
    """``npm pack`` package@version into dest and unpack it; return (package dir, info)."""
    out = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(dest)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)[0]
    unpacked = dest / info["name"].replace("/", "__")
    with tarfile.open(dest / info["filename"]) as tar:
        if sys.version_info >= (3, 12):
            tar.extractall(unpacked, filter="data")
        else:  # pragma: no cover - the tarball comes from the npm registry
            tar.extractall(unpacked)
    return unpacked / "package", info


def load_schema_index(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map "event.action" (or "event") to its request-body media object, for EVENTS."""
    index: dict[str, dict[str, Any]] = {}
    for name, item in doc["webhooks"].items():
        post = item["post"]
        event = post["x-github"]["subcategory"]
        if event not in EVENTS:
            continue
        # operationId is "<event>/<action>" with dashes, e.g. "check-run/requested-action".
        _, _, action = post["operationId"].partition("/")
        key = f"{event}.{action.replace('-', '_')}" if action else event
        if key in index:
            raise SystemExit(f"two webhook schemas for {key} ({name})")
        index[key] = post["requestBody"]["content"]["application/json"]
    return index


def resolve_local(doc: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise SystemExit(f"unsupported $ref {ref!r}")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def referenced_components(doc: dict[str, Any], roots: list[Any]) -> dict[str, dict[str, Any]]:
    """All components reachable through $ref from roots: {"schemas": {name: schema}}."""
    wanted: dict[str, dict[str, Any]] = {}
    todo = list(roots)
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                parts = ref.split("/")
                if parts[:2] != ["#", "components"] or len(parts) < 4:
                    raise SystemExit(f"unsupported $ref {ref!r}")
                kind, name = parts[2], parts[3]
                if name not in wanted.setdefault(kind, {}):
                    wanted[kind][name] = doc["components"][kind][name]
                    todo.append(wanted[kind][name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return {kind: dict(sorted(items.items())) for kind, items in sorted(wanted.items())}


def collect_examples(
    examples_doc: list[dict[str, Any]], schema_doc: dict[str, Any], index: dict[str, Any]
) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(source, event, index in source, payload) for EVENTS, in source order."""
    found: list[tuple[str, str, int, dict[str, Any]]] = []
    by_name = {entry["name"]: entry for entry in examples_doc}
    for event in EVENTS:
        for i, payload in enumerate(by_name.get(event, {}).get("examples", [])):
            found.append(("webhooks-examples", event, i, payload))
    # Request-body examples in the OpenAPI document (check_run and ping at present).
    counters: Counter[str] = Counter()
    for key, media in index.items():
        event = key.partition(".")[0]
        for example in media.get("examples", {}).values():
            if "$ref" in example:
                example = resolve_local(schema_doc, example["$ref"])
            found.append(("openapi-webhooks", event, counters[event], example["value"]))
            counters[event] += 1
    return found


def schema_key(event: str, payload: dict[str, Any], index: dict[str, Any]) -> str | None:
    action = payload.get("action")
    key = f"{event}.{action}" if isinstance(action, str) else event
    return key if key in index else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples-version", default=EXAMPLES_VERSION)
    parser.add_argument("--schemas-version", default=SCHEMAS_VERSION)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    # Imported here so that --help works without the test dependencies.
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    with tempfile.TemporaryDirectory(prefix="webhook-examples-") as tmp:
        tmpdir = Path(tmp)
        ex_dir, ex_info = npm_pack(EXAMPLES_PACKAGE, args.examples_version, tmpdir)
        sc_dir, sc_info = npm_pack(SCHEMAS_PACKAGE, args.schemas_version, tmpdir)
        examples_doc = json.loads((ex_dir / EXAMPLES_FILE).read_text())
        schema_doc = json.loads((sc_dir / SCHEMAS_FILE).read_text())
        licences = {
            pkg: sorted(
                (p.name, p.read_text())
                for p in pkg_dir.iterdir()
                if re.match(r"(?i)licen[cs]e", p.name)
            )
            for pkg, pkg_dir in ((SCHEMAS_PACKAGE, sc_dir), (EXAMPLES_PACKAGE, ex_dir))
        }
        declared = {
            EXAMPLES_PACKAGE: json.loads((ex_dir / "package.json").read_text()).get("license"),
            SCHEMAS_PACKAGE: json.loads((sc_dir / "package.json").read_text()).get("license"),
        }

    index = load_schema_index(schema_doc)
    webhooks = {key: media["schema"] for key, media in sorted(index.items())}
    subset = {
        "info": {
            "source": f"{SCHEMAS_PACKAGE}@{sc_info['version']} {SCHEMAS_FILE}",
            "openapi": schema_doc["openapi"],
            "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
            "note": "webhooks: 'event.action' (or 'event') -> request-body schema",
        },
        "webhooks": webhooks,
        "components": referenced_components(schema_doc, list(webhooks.values())),
    }

    for schema in [*webhooks.values(), *subset["components"].get("schemas", {}).values()]:
        Draft202012Validator.check_schema(schema)
    registry = Registry().with_resource(BASE_URI, DRAFT202012.create_resource(subset))
    validators = {
        key: Draft202012Validator({"$ref": f"{BASE_URI}#/webhooks/{key}"}, registry=registry)
        for key in webhooks
    }

    kept: dict[str, list[dict[str, Any]]] = {event: [] for event in EVENTS}
    provenance: dict[str, list[str]] = {event: [] for event in EVENTS}
    excluded: list[tuple[str, str, int, str | None, str]] = []
    problems: list[str] = []
    seen_excluded: set[tuple[str, str, int]] = set()
    for source, event, i, payload in collect_examples(examples_doc, schema_doc, index):
        ident = (source, event, i)
        key = schema_key(event, payload, index)
        errors = [] if key is None else list(validators[key].iter_errors(payload))
        if key is None:
            errors_text = f"no official schema for action {payload.get('action')!r}"
        else:
            errors_text = "; ".join(
                f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:120]}" for e in errors
            )
        if ident in EXCLUDED:
            seen_excluded.add(ident)
            if key is not None and not errors:
                problems.append(f"{ident} is in EXCLUDED but validates: drop it from EXCLUDED")
            excluded.append((source, event, i, payload.get("action"), EXCLUDED[ident]))
            continue
        if key is None or errors:
            problems.append(f"{ident} ({payload.get('action')}) does not validate: {errors_text}")
            continue
        if payload in kept[event]:  # the same payload published by both packages
            continue
        kept[event].append(payload)
        provenance[event].append(f"{source}[{i}]")
    for ident in sorted(set(EXCLUDED) - seen_excluded):
        problems.append(f"{ident} is in EXCLUDED but no such example exists")
    if problems:
        print("Review EXCLUDED in", __file__, file=sys.stderr)
        for problem in problems:
            print("  -", problem, file=sys.stderr)
        return 1

    out: Path = args.out
    (out / "examples").mkdir(parents=True, exist_ok=True)
    for stale in (out / "examples").glob("*.json"):
        stale.unlink()
    for event, payloads in kept.items():
        if payloads:
            text = json.dumps(payloads, indent=2, ensure_ascii=False) + "\n"
            (out / "examples" / f"{event}.json").write_text(text)
    (out / "schemas.json").write_text(
        json.dumps(subset, separators=(",", ":"), ensure_ascii=False) + "\n"
    )
    (out / "LICENSE").write_text(licence_text(licences, declared, ex_info, sc_info))
    (out / "README.md").write_text(readme(ex_info, sc_info, kept, provenance, excluded))
    for event in EVENTS:
        actions = Counter(str(p.get("action", "-")) for p in kept[event])
        print(f"{event}: {len(kept[event])} {dict(sorted(actions.items()))}")
    print(f"excluded {len(excluded)} non-conforming examples; wrote {out}")
    return 0


def licence_text(
    licences: dict[str, list[tuple[str, str]]],
    declared: dict[str, str | None],
    ex_info: dict[str, Any],
    sc_info: dict[str, Any],
) -> str:
    versions = {EXAMPLES_PACKAGE: ex_info["version"], SCHEMAS_PACKAGE: sc_info["version"]}
    parts = [
        "Licence texts of the npm packages the files in this directory are taken from.\n"
    ]
    for package, files in licences.items():
        header = f"{package}@{versions[package]} (package.json: license {declared[package]!r})"
        parts.append("=" * 78 + "\n" + header + "\n" + "=" * 78 + "\n")
        if files:
            for name, text in files:
                parts.append(f"[{name}]\n\n{text.strip()}\n")
        else:
            parts.append(
                "The package ships no licence file. Its package.json declares the MIT\n"
                "licence and its README links to LICENSE.md in github.com/octokit/webhooks\n"
                "(the repository the package is published from).\n"
            )
    return "\n".join(parts)


def readme(
    ex_info: dict[str, Any],
    sc_info: dict[str, Any],
    kept: dict[str, list[dict[str, Any]]],
    provenance: dict[str, list[str]],
    excluded: list[tuple[str, str, int, str | None, str]],
) -> str:
    lines = [
        "# Webhook payload fixtures",
        "",
        "Generated by `scripts/fetch_webhook_examples.py`; do not edit by hand.",
        "Loaded through `tests/webhook_examples.py` (`examples`, `example`, `all_examples`,",
        "`validate`).",
        "",
        "| package | version | file used | npm integrity |",
        "| --- | --- | --- | --- |",
        f"| `{EXAMPLES_PACKAGE}` | {ex_info['version']} | `{EXAMPLES_FILE}` "
        f"| `{ex_info['integrity']}` |",
        f"| `{SCHEMAS_PACKAGE}` | {sc_info['version']} | `{SCHEMAS_FILE}` "
        f"| `{sc_info['integrity']}` |",
        "",
        f"Generated on {dt.date.today().isoformat()}. Both packages declare the MIT licence",
        "(package.json); `LICENSE` holds the licence files shipped in them and notes any",
        "package that ships none.",
        "",
        "- `examples/<event>.json`: the published example payloads for the event, all",
        "  actions, in upstream order: first `@octokit/webhooks-examples`, then the",
        "  request-body examples of `@octokit/openapi-webhooks` (exact duplicates dropped).",
        "  Only examples that validate against the official schema are kept.",
        "- `schemas.json`: from `@octokit/openapi-webhooks` (GitHub's official webhook",
        "  OpenAPI 3.1 description, i.e. JSON Schema 2020-12): `webhooks` maps",
        "  `event.action` (or `event` for events without actions) to the request-body",
        "  schema, and `components` holds every component those reference, transitively.",
        "",
        "## Regenerating",
        "",
        "```sh",
        ".venv/bin/python scripts/fetch_webhook_examples.py",
        "# to move to newer packages:",
        ".venv/bin/python scripts/fetch_webhook_examples.py --examples-version latest "
        "--schemas-version latest",
        "```",
        "",
        "Needs `npm` (for `npm pack`) and `jsonschema`. The script stops without writing if",
        "an example fails validation and is not in its `EXCLUDED` table, or if an excluded",
        "example now validates; update the table (with the reason) and rerun.",
        "",
        "## Edits to upstream examples",
        "",
        "None. Payloads are committed exactly as published; tests make their own edits",
        "(`example(event, action, **edits)`).",
        "",
        "## Examples kept",
        "",
        "| event | action | count | source (index in the package) |",
        "| --- | --- | --- | --- |",
    ]
    for event in EVENTS:
        if not kept[event]:
            lines.append(f"| {event} | - | 0 | |")
            continue
        groups: dict[str, list[str]] = {}
        for payload, source in zip(kept[event], provenance[event]):
            groups.setdefault(str(payload.get("action", "-")), []).append(source)
        for action, sources in groups.items():
            lines.append(f"| {event} | {action} | {len(sources)} | {', '.join(sources)} |")
    lines += [
        "",
        "## Upstream examples left out (do not conform to the upstream schema)",
        "",
        "| source | event | index | action | why |",
        "| --- | --- | --- | --- | --- |",
    ]
    for source, event, i, action, why in excluded:
        lines.append(f"| {source} | {event} | {i} | {action or '-'} | {why} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
