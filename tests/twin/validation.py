"""Requests (and responses) checked against GitHub's OpenAPI subset.

The twin finds the operation itself (so it knows the operation id and path
parameters even when a request is invalid) and asks openapi-core whether the
request conforms.  Path parameters that GitHub lets contain slashes (a file
``path``, a git ``ref``) are percent-encoded before openapi-core sees them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator

SPEC_PATH = Path(__file__).parent / "openapi" / "api.github.com.json"
SERVER = "https://api.github.com"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
# Parameters GitHub accepts with embedded slashes when they end the path.
GREEDY = {"path", "ref"}
# Where GitHub's description contradicts GitHub's own responses, so response
# checks skip it: an installation account typed as allOf(user, enterprise),
# and a directory listing (an array) behind an object discriminator.
SPEC_QUIRKS = {
    "apps/list-installations": r"\d+/account",
    "repos/get-content": "<root>",
}
# Every error GitHub answers carries a message (and usually documentation_url);
# the description's basic-error leaves both optional.
BASIC_ERROR = {"allOf": [{"$ref": "#/components/schemas/basic-error"}, {"required": ["message"]}]}


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str]
    literals: int


@dataclass
class Match:
    operation: Operation
    params: dict[str, str]


def _compile(template: str) -> tuple[re.Pattern[str], int]:
    parts = template.strip("/").split("/")
    regex, literals = [], 0
    for i, part in enumerate(parts):
        name = re.fullmatch(r"\{(\w+)\}", part)
        if name is None:
            literals += 1
            regex.append(re.escape(part))
        elif name.group(1) in GREEDY and i == len(parts) - 1:
            regex.append(f"(?P<{name.group(1)}>.+)")
        else:
            regex.append(f"(?P<{name.group(1)}>[^/]+)")
    return re.compile("/" + "/".join(regex)), literals


class Spec:
    """The subset, its operation table, and openapi-core's validators."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.document: dict[str, Any] = json.loads(path.read_text())
        self.openapi = OpenAPI.from_dict(self.document)
        self.components = _nullable(self.document["components"])
        ops = []
        for template, item in self.document["paths"].items():
            pattern, literals = _compile(template)
            for method in METHODS:
                if method in item:
                    ops.append(Operation(method, template, item[method]["operationId"], pattern, literals))
        # Literal segments win over parameters: /issues/comments/{id} before /issues/{n}/…
        self.operations = sorted(ops, key=lambda op: -op.literals)

    def match(self, method: str, path: str) -> Match | None:
        """The operation serving ``method path`` (path below /api/v3), if any."""
        method = method.lower()
        for op in self.operations:
            if op.method != method:
                continue
            found = op.pattern.fullmatch(path)
            if found:
                return Match(op, found.groupdict())
        return None

    def path_exists(self, path: str) -> bool:
        return any(op.pattern.fullmatch(path) for op in self.operations)

    def request_errors(
        self,
        match: Match,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        content_type: str,
        body: bytes | None,
    ) -> list[str]:
        """Every way the request departs from the description (empty if none)."""
        request = _Request(match, query, headers, content_type, body)
        return [_describe(err) for err in self.openapi.iter_request_errors(request)]

    def response_errors(self, match: Match | None, status: int, body: bytes, content_type: str | None) -> list[str]:
        """Every way a response departs from the description (empty if none).

        A status the operation documents is checked against its schema (no
        content: no body). An error status it does not document, or documents
        without content (401 on most operations, a 5xx, the twin's 501, no
        operation at all, a 422 described only in words), is checked
        against ``basic-error``, the shape GitHub gives every error, with the
        ``message`` GitHub always sends: the description lists only some of
        the errors an operation can answer. A success status it does not
        document is a problem. Checked with openapi-schema-validator directly:
        openapi-core's own response unmarshalling reports false errors for
        ``nullable`` ``anyOf`` and ``enum`` schemas that GitHub's description
        is full of.
        """
        documented = None
        if match is not None:
            op = self.document["paths"][match.operation.template][match.operation.method]
            documented = op["responses"].get(str(status)) or op["responses"].get("default")
        if documented is None and status < 400:
            return [f"status {status} is not documented"]
        if documented is not None and "$ref" in documented:
            documented = self.document["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
        content = (documented or {}).get("content") or {}
        if not content and status >= 400:
            # Documented without a body (a 422 "if user is not a collaborator"),
            # or not at all: GitHub still answers its error JSON.
            content = {"application/json": {"schema": BASIC_ERROR}}
        if not content:
            return [] if not body else [f"status {status} is documented without a body, got {len(body)} bytes"]
        schema = content.get("application/json", {}).get("schema")
        if schema is None:
            return []  # documented as text (a diff, a log): not checked
        if not (content_type or "").startswith("application/json"):
            return [f"status {status} is documented as JSON, answered {content_type or 'no content type'}"]
        validator = OAS30Validator({"components": self.components, **_nullable(schema)})
        try:
            instance = json.loads(body)
        except ValueError:
            return ["response body is not JSON"]
        problems = []
        quirk = SPEC_QUIRKS.get(match.operation.operation_id, "(?!)") if match is not None else "(?!)"
        for e in validator.iter_errors(instance):
            where = "/".join(map(str, e.absolute_path)) or "<root>"
            if re.fullmatch(quirk, where):
                continue
            problems.append(f"{where}: {e.message[:200]}")
        return problems


def _nullable(node: Any) -> Any:
    """Let ``nullable`` schemas with ``enum``/``anyOf``/``oneOf``/``allOf`` accept null.

    GitHub's description relies on this reading (its responses carry null
    there); OpenAPI 3.0 validators, strictly, do not apply it.
    """
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable(value) for key, value in node.items()}
    if out.get("nullable") is True:
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if any(key in out for key in ("anyOf", "oneOf", "allOf")):
            out = {"anyOf": [{"enum": [None]}, {k: v for k, v in out.items() if k != "nullable"}]}
    return out


def _describe(err: Exception) -> str:
    """openapi-core's message plus the schema errors underneath it, briefly."""
    text = str(err)
    cause = err.__cause__
    while cause is not None:
        detail = getattr(cause, "schema_errors", None)
        if detail:
            where = ("/".join(map(str, e.absolute_path)) or "<root>" for e in detail)
            short = (m if len(m := e.message) < 300 else m[:300] + "…" for e in detail)
            details = "; ".join(f"{w}: {m}" for w, m in zip(where, short, strict=True))
            return f"{text.split(': Value ', 1)[0][:200]}: {details}"
        if str(cause) not in text:
            text += f": {cause}"
        cause = cause.__cause__
    return text


class _Request:
    """The openapi-core request protocol, over an already-matched request."""

    def __init__(
        self,
        match: Match,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        content_type: str,
        body: bytes | None,
    ) -> None:
        path = match.operation.template
        for name, value in match.params.items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
        self.host_url = SERVER
        self.path = path
        self.method = match.operation.method
        self.parameters = RequestParameters(query=query, header=headers)
        self.content_type = content_type
        self.body = body


@functools.cache
def load_spec() -> Spec:
    """The spec, loaded once per process (openapi-core takes about a second)."""
    return Spec()
