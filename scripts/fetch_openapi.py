"""Extract the GitHub twin's OpenAPI subset from ``@octokit/openapi``.

The npm package carries GitHub's official OpenAPI descriptions for every
product (about 400 MB unpacked).  The twin needs only the operations Compound
calls, so this script downloads the package with ``npm pack``, keeps those
operations of ``generated/api.github.com.json`` plus every component they
reference (transitively), and writes the result to ``tests/twin/openapi/``.

    python scripts/fetch_openapi.py            # the latest version
    python scripts/fetch_openapi.py 23.0.2     # a given version
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterator

PACKAGE = "@octokit/openapi"
SOURCE = "package/generated/api.github.com.json"
LICENCE = "package/LICENSE"
OUT = Path(__file__).resolve().parent.parent / "tests" / "twin" / "openapi"

# (methods, path) of every operation the twin serves.
OPERATIONS: list[tuple[str, str]] = [
    ("get", "/app"),
    ("get,patch", "/app/hook/config"),
    ("get", "/app/hook/deliveries"),
    ("post", "/app/installations/{installation_id}/access_tokens"),
    ("get", "/app/installations"),
    ("get", "/app/installations/{installation_id}"),
    ("get", "/app/hook/deliveries"),
    ("post", "/app/hook/deliveries/{delivery_id}/attempts"),
    ("get", "/repos/{owner}/{repo}/installation"),
    ("post", "/app-manifests/{code}/conversions"),
    ("get", "/installation/repositories"),
    ("get", "/rate_limit"),
    ("get", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
    ("get", "/repos/{owner}/{repo}/contents/{path}"),
    ("get", "/repos/{owner}/{repo}/branches/{branch}"),
    ("get", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}"),
    ("post", "/repos/{owner}/{repo}/statuses/{sha}"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/status"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/statuses"),
    ("get,post", "/repos/{owner}/{repo}/issues"),
    ("get,patch", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("get,post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("get,patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("delete", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}"),
    ("get,post", "/repos/{owner}/{repo}/labels"),
    ("post", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/reactions"),
    ("get,post", "/repos/{owner}/{repo}/pulls"),
    ("get,patch", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}"),
    ("get,post", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    ("get", "/repos/{owner}/{repo}/pulls/comments/{comment_id}"),
    ("post", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies"),
    ("post", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions"),
    ("post", "/repos/{owner}/{repo}/check-runs"),
    ("get,patch", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("get", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/check-suites"),
    ("get", "/repos/{owner}/{repo}/check-suites/{check_suite_id}"),
    ("get", "/repos/{owner}/{repo}/check-suites/{check_suite_id}/check-runs"),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"),
    ("get", "/repos/{owner}/{repo}/actions/jobs/{job_id}"),
    ("get", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs"),
    ("get", "/users/{username}"),
]

# Path-item keys that apply to every operation under the path.
SHARED_KEYS = ("parameters", "summary", "description", "servers")


def npm_pack(version: str, into: Path) -> Path:
    """Download the package tarball with the ordinary npm client."""
    out = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--pack-destination", str(into), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return into / json.loads(out)[0]["filename"]


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` string anywhere inside ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def subset(spec: dict[str, Any]) -> dict[str, Any]:
    """Keep OPERATIONS and the components they reach; fail on a missing one."""
    paths: dict[str, Any] = {}
    for methods, path in OPERATIONS:
        item = spec["paths"].get(path)
        if item is None:
            raise SystemExit(f"{path} is not in the description")
        kept = paths.setdefault(path, {k: item[k] for k in SHARED_KEYS if k in item})
        for method in methods.split(","):
            if method not in item:
                raise SystemExit(f"{method.upper()} {path} is not in the description")
            kept[method] = item[method]

    components: dict[str, dict[str, Any]] = {}
    pending = list(refs(paths))
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        prefix, _, name = ref.rpartition("/")
        if not prefix.startswith("#/components/"):
            raise SystemExit(f"unexpected $ref {ref}")
        section = prefix.removeprefix("#/components/")
        target = spec["components"][section][name]
        components.setdefault(section, {})[name] = target
        pending.extend(refs(target))

    out = {k: spec[k] for k in ("openapi", "info", "servers", "externalDocs") if k in spec}
    out["paths"] = paths
    out["components"] = {
        section: dict(sorted(items.items())) for section, items in sorted(components.items())
    }
    return out


README = """\
# GitHub's OpenAPI description (subset)

`api.github.com.json` is a subset of `generated/api.github.com.json` from the
npm package [`{package}`](https://www.npmjs.com/package/{package}) version
**{version}** (GitHub's official REST API description, published by Octokit),
extracted on {date}.  It keeps only the operations the GitHub twin serves
(see `OPERATIONS` in `scripts/fetch_openapi.py`) and every component they
reference, transitively; nothing else is changed.

Licence: the package's licence, MIT — see `LICENSE` (copied from the package).

Regenerate (needs `npm` and network access to the npm registry):

    .venv/bin/python scripts/fetch_openapi.py [VERSION]

To serve a new operation, add it to `OPERATIONS` and regenerate.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", nargs="?", default="latest")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = npm_pack(args.version, Path(tmp))
        with tarfile.open(tarball) as tar:
            meta = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
            spec = json.load(tar.extractfile(SOURCE))  # type: ignore[arg-type]
            licence = tar.extractfile(LICENCE).read().decode()  # type: ignore[union-attr]
    small = subset(spec)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "api.github.com.json").write_text(
        json.dumps(small, separators=(",", ":"), sort_keys=False) + "\n"
    )
    (OUT / "LICENSE").write_text(licence)
    (OUT / "README.md").write_text(
        README.format(
            package=PACKAGE,
            version=meta["version"],
            date=datetime.date.today().isoformat(),
        )
    )
    count = sum(len([m for m in item if m not in SHARED_KEYS]) for item in small["paths"].values())
    print(f"{PACKAGE}@{meta['version']}: {count} operations -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
