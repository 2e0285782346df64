"""The REST pipeline: match, validate, inject faults, authenticate, answer.

Every request under /api/v3 goes through :func:`handle`, which records it in
``twin.requests`` and every departure from the OpenAPI subset in
``twin.violations``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import shapes
from .auth import BadCredentials, looks_like_jwt, parse_authorization, verify_app_jwt
from .permissions import NOT_ACCESSIBLE, refusal
from .rest import HANDLERS, ApiError, Call
from .validation import load_spec

if TYPE_CHECKING:
    from .server import GitHubTwin

API_PREFIX = "/api/v3"
# Operations authenticated as the App (JWT), or not at all; the rest need a token.
APP_JWT = {
    "apps/get-authenticated",
    "apps/create-installation-access-token",
    "apps/list-installations",
    "apps/get-installation",
    "apps/get-repo-installation",
    "apps/get-webhook-config-for-app",
    "apps/update-webhook-config-for-app",
    "apps/list-webhook-deliveries",
    "apps/redeliver-webhook-delivery",
}
NO_AUTH = {"apps/create-from-manifest"}
ANY_AUTH = {"rate-limit/get", "users/get-by-username"}
RATE_LIMIT = 5000
DEFAULT_FAULT_MESSAGES = {
    403: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    429: "API rate limit exceeded.",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    operation_id: str | None
    status: int
    installation_id: int | None
    # The installation token's repositories (None: all) and permissions, if one was used.
    repositories: frozenset[str] | None = None
    permissions: dict[str, str] | None = None


@dataclass
class Fault:
    method: str
    path_regex: Any  # re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    times: int


class RateLimits:
    """Core rate limit per installation (and one for the App's JWT calls)."""

    def __init__(self) -> None:
        self.used: dict[Any, int] = {}
        self.reset = int(time.time()) + 3600

    def headers(self, bucket: Any) -> dict[str, str]:
        used = self.used.get(bucket, 0)
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(max(RATE_LIMIT - used, 0)),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
        }

    def spend(self, bucket: Any) -> None:
        self.used[bucket] = self.used.get(bucket, 0) + 1


def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=status,
        body=b"" if body is None else json.dumps(body).encode(),
        headers=headers,
        content_type=None if body is None else "application/json",
        charset=None if body is None else "utf-8",
    )


async def handle(twin: GitHubTwin, request: web.Request) -> web.StreamResponse:
    path = request.path[len(API_PREFIX) :] or "/"
    spec = load_spec()
    match = spec.match(request.method, path)
    raw = await request.read()
    bucket: Any = None
    record = RecordedRequest(request.method, path, None, 0, None)
    twin.requests.append(record)

    def check(status: int, data: bytes, content_type: str | None) -> None:
        if twin.validate_responses:
            problems = spec.response_errors(match, status, data, content_type)
            where = f"{request.method} {path} ({match.operation.operation_id if match else 'no operation'})"
            twin.response_problems.extend(f"{where}: answered {status}: {p}" for p in problems)

    def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        record.status = status
        response = _json_response(status, body, {**twin.rate_limits.headers(bucket), **(headers or {})})
        check(status, response.body, response.content_type if body is not None else None)
        return response

    if match is None:
        twin.violations.append(f"{request.method} {path}: no such operation in the OpenAPI subset")
        return answer(404, shapes.error(404, "Not Found"))
    op_id = match.operation.operation_id
    record.operation_id = op_id
    errors = spec.request_errors(
        match, request.query, request.headers, request.headers.get("Content-Type", ""), raw or None
    )
    if errors:
        twin.violations.extend(f"{request.method} {path} ({op_id}): {e}" for e in errors)
        if any("Failed to deserialize" in e for e in errors):
            return answer(400, shapes.error(400, "Problems parsing JSON"))
        return answer(422, shapes.error(422, "Invalid request.\n\n" + "\n".join(errors)))

    record.installation_id = _installation_of(twin, request)
    fault = twin._take_fault(request.method, path)
    if fault is not None:
        body = fault.body
        if body is None:
            body = shapes.error(fault.status, DEFAULT_FAULT_MESSAGES.get(fault.status, "Error"))
        return answer(fault.status, body, fault.headers)

    call = Call(twin, request, op_id, match.params, request.query, raw)
    try:
        bucket = _authenticate(twin, call, request)
    except BadCredentials as exc:
        twin.auth_failures.append(f"{request.method} {path}: {exc}")
        return answer(401, shapes.error(401, "Bad credentials"))
    if call.token is not None:
        record.installation_id = call.token.installation_id
        record.repositories, record.permissions = call.token.repositories, dict(call.token.permissions)
        accepted = _refused(call)
        if accepted is not None:
            twin.permission_refusals.append(f"{request.method} {path} ({op_id}): needs {accepted}")
            twin.rate_limits.spend(bucket)
            return answer(403, shapes.error(403, NOT_ACCESSIBLE), {"x-accepted-github-permissions": accepted})

    handler = HANDLERS.get(op_id)
    if handler is None:
        twin.unimplemented.append(f"{request.method} {path} ({op_id})")
        return answer(501, shapes.error(501, f"{op_id} is not implemented by the twin"))
    try:
        reply = await handler(call)
    except ApiError as exc:
        if op_id != "rate-limit/get":
            twin.rate_limits.spend(bucket)
        return answer(exc.status, shapes.error(exc.status, exc.message, **exc.extra))

    content_type: str | None
    if reply.text is not None:
        data, content_type = reply.text.encode(), "text/plain; charset=utf-8"
    elif reply.body is None:  # 204, or a redirect (job logs): no body at all
        data, content_type = b"", None
    else:
        data, content_type = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
    headers = dict(reply.headers)
    if call.link:
        headers["Link"] = call.link
    if request.method == "GET" and reply.status == 200:
        etag = '"' + hashlib.sha256(data).hexdigest()[:40] + '"'
        headers["ETag"] = etag
        if _etag_matches(request.headers.get("If-None-Match"), etag):
            record.status = 304
            return web.Response(status=304, headers={**twin.rate_limits.headers(bucket), **headers})
    if op_id != "rate-limit/get":
        twin.rate_limits.spend(bucket)
    check(reply.status, data, content_type)
    record.status = reply.status
    headers = {**twin.rate_limits.headers(bucket), **headers}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return web.Response(status=reply.status, body=data, headers=headers)


def _installation_of(twin: GitHubTwin, request: web.Request) -> int | None:
    """The installation a request's token belongs to, if the token is known (for records)."""
    auth = parse_authorization(request.headers.get("Authorization"))
    token = twin.tokens.tokens.get(auth[1]) if auth else None
    return token.installation_id if token else None


def _refused(call: Call) -> str | None:
    """The permission sets the operation accepts, if the token holds none of them.

    A repository the token cannot see is left to the handler, which answers
    404 as GitHub does: GitHub does not say "forbidden" about what it hides.
    """
    assert call.token is not None
    if "owner" in call.params and "repo" in call.params:
        try:
            call.repo()
        except ApiError:
            return None
    return refusal(call.operation_id, call.token.permissions)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


def _authenticate(twin: GitHubTwin, call: Call, request: web.Request) -> Any:
    """Check the credentials the operation needs; the rate-limit bucket to charge."""
    if call.operation_id in NO_AUTH:
        return "anonymous"
    auth = parse_authorization(request.headers.get("Authorization"))
    if call.operation_id in ANY_AUTH and auth is None:
        return "anonymous"
    if auth is None:
        raise BadCredentials("no Authorization header")
    scheme, credential = auth
    wants_jwt = call.operation_id in APP_JWT or (call.operation_id in ANY_AUTH and looks_like_jwt(credential))
    if wants_jwt:
        if scheme != "bearer":
            raise BadCredentials("App endpoints need 'Authorization: Bearer <JWT>'")
        verify_app_jwt(credential, twin.app_id, twin.private_key_pem)
        return "app"
    call.token = twin.tokens.check(credential)
    return call.token.installation_id
