"""The App itself: installations, tokens, manifests, rate limit."""

from __future__ import annotations

import secrets

from .. import shapes
from ..auth import TokenRequest, app_private_key_pem
from ..permissions import beyond
from ..state import now_iso
from .base import ApiError, Call, Reply, not_found, operation


@operation("apps/get-authenticated")
async def get_app(call: Call) -> Reply:
    return Reply(200, shapes.app(call.twin))


@operation("apps/list-installations")
async def list_installations(call: Call) -> Reply:
    items = [shapes.installation(call.twin, i) for i in call.twin.state.installations.values()]
    return Reply(200, call.page(items))


@operation("apps/get-installation")
async def get_installation(call: Call) -> Reply:
    inst = call.twin.state.installations.get(call.int_param("installation_id"))
    if inst is None:
        raise not_found()
    return Reply(200, shapes.installation(call.twin, inst))


@operation("apps/get-repo-installation")
async def get_repo_installation(call: Call) -> Reply:
    repo = call.twin.state.repo(call.params["owner"], call.params["repo"])
    if repo is None:
        raise not_found()
    return Reply(200, shapes.installation(call.twin, call.twin.state.installations[repo.installation_id]))


@operation("apps/create-installation-access-token")
async def create_access_token(call: Call) -> Reply:
    """A token for the installation, narrowed to `repositories` / `repository_ids` and
    `permissions` when the body names them (the body's shape is checked by the spec)."""
    twin = call.twin
    inst = twin.state.installations.get(call.int_param("installation_id"))
    if inst is None:
        raise not_found()
    twin.token_requests[inst.id] = twin.token_requests.get(inst.id, 0) + 1
    body = call.json or {}
    names = body.get("repositories")
    ids = body.get("repository_ids")
    repos = None
    if names is not None or ids is not None:
        mine = twin.state.repos_of(inst.id)
        wanted = {r.name for r in mine if r.name in (names or []) or r.id in (ids or [])}
        if len(wanted) < len(set(names or [])) + len(set(ids or [])):
            raise ApiError(
                422,
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
            )
        repos = frozenset(wanted)
    asked = body.get("permissions")
    if asked is not None:
        if beyond(asked, twin.app_permissions):
            raise ApiError(422, "The permissions requested are not granted to this installation.")
        # GitHub adds metadata:read to every token that reaches repositories.
        permissions = {"metadata": "read", **asked}
    else:
        permissions = dict(twin.app_permissions)
    token = twin.tokens.mint(inst.id, twin.token_ttl, permissions, repos)
    twin.token_log.append(TokenRequest(inst.id, names, ids, asked, token))
    reply = {
        "token": token.token,
        "expires_at": now_iso(token.expires_at),
        "permissions": permissions,
        "repository_selection": "all" if repos is None else "selected",
    }
    if repos is not None:
        reply["repositories"] = [shapes.repository(twin, r) for r in twin.state.repos_of(inst.id) if r.name in repos]
    return Reply(201, reply)


@operation("apps/create-from-manifest")
async def create_from_manifest(call: Call) -> Reply:
    twin = call.twin
    code = call.params["code"]
    if code not in twin.state.manifest_codes:
        raise not_found()
    twin.state.manifest_codes.discard(code)  # a code converts once, as on GitHub
    body = shapes.app(twin)
    body.update(
        {
            "client_id": body["client_id"],
            "client_secret": secrets.token_hex(20),
            "webhook_secret": twin.webhook_secret,
            "pem": app_private_key_pem(),
        }
    )
    return Reply(201, body)


@operation("apps/list-repos-accessible-to-installation")
async def list_installation_repos(call: Call) -> Reply:
    assert call.token is not None
    repos = [
        r
        for r in call.twin.state.repos_of(call.token.installation_id)
        if call.token.repositories is None or r.name in call.token.repositories
    ]
    items = [shapes.repository(call.twin, r) for r in call.page(repos)]
    return Reply(
        200,
        {"total_count": len(repos), "repository_selection": "all", "repositories": items},
    )


@operation("rate-limit/get")
async def rate_limit(call: Call) -> Reply:
    bucket = call.token.installation_id if call.token else "anonymous"
    headers = call.twin.rate_limits.headers(bucket)
    core = {
        "limit": int(headers["x-ratelimit-limit"]),
        "remaining": int(headers["x-ratelimit-remaining"]),
        "reset": int(headers["x-ratelimit-reset"]),
        "used": int(headers["x-ratelimit-used"]),
    }
    other = {"limit": 5000, "remaining": 5000, "reset": core["reset"], "used": 0}
    resources = {"core": core, "search": dict(other), "graphql": dict(other)}
    return Reply(200, {"resources": resources, "rate": core})
