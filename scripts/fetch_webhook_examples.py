#!/usr/bin/env python3
"""Fetch GitHub's published webhook examples and schemas into tests/fixtures/webhooks/.

Sources (npm, fetched with ``npm pack`` into a temporary directory):

* ``@octokit/webhooks-examples`` -- example payloads, ``api.github.com/index.json``.
* ``@octokit/openapi-webhooks`` -- GitHub's official webhook OpenAPI 3.1 description,
  ``generated/api.github.com.json``: one schema per event+action under ``webhooks``
  (plus a few request-body examples, which are used as examples too).

Writes:

* ``examples/<event>.json``  -- every published example payload for the event (all
  actions), unedited (exact duplicates dropped);
* ``schemas.json``            -- the official schemas for the events used, with every
  component they reference (transitively), compact;
* ``LICENSE``, ``README.md``  -- provenance.

Usage::

    .venv/bin/python scripts/fetch_webhook_examples.py            # pinned versions
    .venv/bin/python scripts/fetch_webhook_examples.py --examples-version latest \\
        --schemas-version latest                                  # bump

Older examples predate fields the schemas now require. ``tests/webhook_examples.py``
applies a list of mechanical "schema drift" fixes (``DRIFT_FIXES``) when tests load them.
The script refuses to write anything if an example, after those fixes, does not conform
to its official schema, or if a fix no longer changes any example: review DRIFT_FIXES.
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
    "status",
    "ping",
)

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

    sys.path.insert(0, str(ROOT))
    from tests.webhook_examples import DRIFT_FIXES, apply_drift_fixes

    kept: dict[str, list[dict[str, Any]]] = {event: [] for event in EVENTS}
    provenance: dict[str, list[str]] = {event: [] for event in EVENTS}
    fixed_by: dict[str, list[list[str]]] = {event: [] for event in EVENTS}
    problems: list[str] = []
    for source, event, i, payload in collect_examples(examples_doc, schema_doc, index):
        if payload in kept[event]:  # the same payload published by both packages
            continue
        ident = (source, event, i)
        key = schema_key(event, payload, index)
        fixed, applied = apply_drift_fixes(event, payload)
        if key is None:
            problems.append(f"{ident}: no official schema for action {payload.get('action')!r}")
        elif errors := list(validators[key].iter_errors(fixed)):
            text = "; ".join(
                f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:120]}" for e in errors
            )
            problems.append(f"{ident} ({payload.get('action')}), drift-fixed: {text}")
        kept[event].append(payload)
        provenance[event].append(f"{source}[{i}]")
        fixed_by[event].append(applied)
    used = {name for lists in fixed_by.values() for applied in lists for name in applied}
    for fix in DRIFT_FIXES:
        if fix.__name__ not in used:
            problems.append(f"{fix.__name__} changes no example: remove it")
    if problems:
        print("Review DRIFT_FIXES in tests/webhook_examples.py", file=sys.stderr)
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
    (out / "README.md").write_text(
        readme(ex_info, sc_info, kept, provenance, fixed_by, DRIFT_FIXES)
    )
    for event in EVENTS:
        actions = Counter(str(p.get("action", "-")) for p in kept[event])
        print(f"{event}: {len(kept[event])} {dict(sorted(actions.items()))}")
    print(f"wrote {out}")
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
    fixed_by: dict[str, list[list[str]]],
    fixes: tuple[Any, ...],
) -> str:
    total = sum(len(payloads) for payloads in kept.values())
    changed = sum(1 for lists in fixed_by.values() for applied in lists if applied)
    lines = [
        "# Webhook payload fixtures",
        "",
        "Generated by `scripts/fetch_webhook_examples.py`; do not edit by hand.",
        "Loaded through `tests/webhook_examples.py`.",
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
        "- `examples/<event>.json`: every published example payload for the event, all",
        "  actions, unedited, in upstream order: first `@octokit/webhooks-examples`, then",
        "  the request-body examples of `@octokit/openapi-webhooks` (exact duplicates",
        f"  dropped). {total} examples; nothing else is left out.",
        "- `schemas.json`: from `@octokit/openapi-webhooks` (GitHub's official webhook",
        "  OpenAPI 3.1 description, i.e. JSON Schema 2020-12): `webhooks` maps",
        "  `event.action` (or `event` for events without actions) to the request-body",
        "  schema, and `components` holds every component those reference, transitively.",
        "",
        "## Loading",
        "",
        "- `examples(event, action=None)`, `example(event, action=None, **edits)`,",
        "  `all_examples(events)`: deep copies with the schema drift fixes below applied;",
        "  every one conforms to the official schema. Use these by default.",
        "- `published(event, action=None)`, `all_published(events)`: deep copies of the",
        "  payloads exactly as published (some do not conform to today's schema). Use these",
        "  to prove the service accepts what GitHub really sent.",
        "- `validate(event, payload)`: AssertionError listing every schema error.",
        "",
        "## Schema drift fixes",
        "",
        "The examples were captured over several years; the schemas describe today's",
        "payloads, which have fields the older captures lack (above all the repository",
        "field `has_discussions`, required since 2022) or encode differently (Unix-time",
        "installation timestamps). Rather than leave those examples out, the loader applies",
        "`DRIFT_FIXES` (in `tests/webhook_examples.py`): small mechanical edits, each adding",
        "a missing field with a neutral value or re-encoding an old value, and only where",
        "needed. The committed files stay unedited.",
        "",
        f"{changed} of {total} examples are changed by at least one fix.",
        "",
        "| fix | reason | examples changed |",
        "| --- | --- | --- |",
    ]
    for fix in fixes:
        reason = (fix.__doc__ or "").strip().splitlines()[0]
        count = sum(
            fix.__name__ in applied for lists in fixed_by.values() for applied in lists
        )
        lines.append(f"| `{fix.__name__}` | {reason} | {count} |")
    lines += [
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
        "an example, after the drift fixes, does not conform to its official schema, or if",
        "a fix no longer changes any example. Then add a fix (mechanical, with its reason)",
        "or remove the dead one in `tests/webhook_examples.py`, and rerun. If an example",
        "cannot be fixed mechanically, exclude it there by name with the reason.",
        "",
        "## Examples",
        "",
        "Index: position in `examples/<event>.json`. Source: index in the package.",
        "",
        "| event | action | count | index | source | drift-fixed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for event in EVENTS:
        if not kept[event]:
            lines.append(f"| {event} | - | 0 | | | |")
            continue
        groups: dict[str, list[tuple[int, str, list[str]]]] = {}
        rows = zip(kept[event], provenance[event], fixed_by[event])
        for n, (payload, source, applied) in enumerate(rows):
            groups.setdefault(str(payload.get("action", "-")), []).append(
                (n, source, applied)
            )
        for action, members in groups.items():
            indexes = ", ".join(str(n) for n, _, _ in members)
            sources = ", ".join(source for _, source, _ in members)
            n_fixed = sum(1 for _, _, applied in members if applied)
            lines.append(
                f"| {event} | {action} | {len(members)} | {indexes} | {sources} "
                f"| {n_fixed} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
