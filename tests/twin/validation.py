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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters

SPEC_PATH = Path(__file__).parent / "openapi" / "api.github.com.json"
SERVER = "https://api.github.com"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
# Parameters GitHub accepts with embedded slashes when they end the path.
GREEDY = {"path", "ref"}


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
        ops = []
        for template, item in self.document["paths"].items():
            pattern, literals = _compile(template)
            for method in METHODS:
                if method in item:
                    ops.append(
                        Operation(method, template, item[method]["operationId"], pattern, literals)
                    )
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

    def response_errors(
        self, match: Match, status: int, headers: Mapping[str, str], body: bytes, content_type: str
    ) -> list[str]:
        request = _Request(match, {}, {}, "", None)
        response = _Response(status, headers, body, content_type)
        return [_describe(err) for err in self.openapi.iter_response_errors(request, response)]


def _describe(err: Exception) -> str:
    """openapi-core's message plus the schema errors underneath it, briefly."""
    text = str(err)
    cause = err.__cause__
    while cause is not None:
        detail = getattr(cause, "schema_errors", None)
        if detail:
            where = ("/".join(map(str, e.absolute_path)) or "<root>" for e in detail)
            short = (m if len(m := e.message) < 300 else m[:300] + "…" for e in detail)
            details = "; ".join(f"{w}: {m}" for w, m in zip(where, short))
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


class _Response:
    def __init__(
        self, status: int, headers: Mapping[str, str], body: bytes, content_type: str
    ) -> None:
        self.status_code = status
        self.headers = headers
        self.data = body
        self.content_type = content_type


@functools.cache
def load_spec() -> Spec:
    """The spec, loaded once per process (openapi-core takes about a second)."""
    return Spec()
