"""GitHubTwin: a small aiohttp server that plays GitHub (as GitHub Enterprise)."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web

from . import api, git_http, gitrepo, webhooks
from .api import Fault, RateLimits, RecordedRequest
from .auth import TokenRequest, TokenStore, app_private_key_pem
from .blobs import PREFIX as BLOB_PREFIX
from .blobs import Blobs
from .ci import SimulatedCI
from .rest.hook_deliveries import HookDeliveries
from .setup_checks import CheckSetup
from .setup_pulls import PullSetup, follow_ref
from .state import APP_SLUG, PERMISSIONS, Comment, Installation, Issue, Label, Repo, State
from .validation import load_spec

log = logging.getLogger(__name__)
PushCallback = Callable[[str, str, str], Awaitable[None]]
DEFAULT_PERMISSIONS = {
    "actions": "read",
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "read",
}


class GitHubTwin(PullSetup, CheckSetup):
    """GitHub for tests: REST under /api/v3, git at /<owner>/<repo>.git, blobs at localhost."""

    def __init__(self, root: Path, *, validate_responses: bool = True) -> None:
        self.root = Path(root)
        self.state = State()
        self.app_id = 4200 + secrets.randbelow(1000)
        self.app_slug = APP_SLUG
        self.private_key_pem = app_private_key_pem()
        self.webhook_secret = secrets.token_hex(16)
        self.app_permissions = dict(DEFAULT_PERMISSIONS)
        self.token_ttl: float = 3600
        self.tokens = TokenStore()
        self.token_requests: dict[int, int] = {}
        # Every token request with the scope it asked for, oldest first.
        self.token_log: list[TokenRequest] = []
        # (full_name, service, status) of every git request refused after
        # authentication: a repository outside the token's scope, or a push
        # without contents:write.
        self.git_refusals: list[tuple[str, str, int]] = []
        # (full_name, repositories, permissions) of the token of every push received.
        self.push_scopes: list[tuple[str, frozenset[str] | None, dict[str, str]]] = []
        # REST calls answered 403 because the token lacks the permission.
        self.permission_refusals: list[str] = []
        self.rate_limits = RateLimits()
        self.validate_responses = validate_responses
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.response_problems: list[str] = []
        self.unimplemented: list[str] = []
        self.auth_failures: list[str] = []
        self.push_errors: list[str] = []
        # (full_name, ref, before, after) of every ref a push created or updated
        self.pushes: list[tuple[str, str, str, str]] = []
        self._faults: list[Fault] = []
        self._push_callbacks: list[PushCallback] = []
        self._expecting_violations = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.blobs = Blobs(self)
        # The App's webhook deliveries as GitHub lists them (rest/hook_deliveries.py).
        self.hook_deliveries = HookDeliveries(self)
        self.ci = SimulatedCI(self)

    # --- lifecycle -------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Listen on loopback: `port`, or any free one (0)."""
        load_spec()  # pay the one-off cost before the first request
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/v3{tail:(/.*)?}", self._api)
        app.router.add_route("*", "/{owner}/{name}.git/{service:.+}", self._git)
        app.router.add_get(BLOB_PREFIX + "{key}", self.blobs.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        await self.ci.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_downloads(self) -> list[dict[str, object]]:
        """Every request to the blob host: path, authorization (present?), status."""
        return self.blobs.downloads

    @property
    def api_url(self) -> str:
        return f"http://{self.host}/api/v3"

    @property
    def git_url(self) -> str:
        return f"http://{self.host}"

    async def _api(self, request: web.Request) -> web.StreamResponse:
        return await api.handle(self, request)

    async def _git(self, request: web.Request) -> web.StreamResponse:
        return await git_http.handle(self, request)

    # --- state set-up ----------------------------------------------------

    def add_installation(self, account: str = "octo-org", account_type: str = "Organization") -> int:
        inst = Installation(self.state.next_id(), account, self.state.user_id(account), account_type)
        self.state.installations[inst.id] = inst
        return inst.id

    def add_repo(
        self,
        full_name: str,
        installation_id: int,
        default_branch: str = "main",
        files: dict[str, str | bytes] | None = None,
        private: bool = True,
    ) -> Repo:
        """A repository backed by a real bare git repo with one commit of ``files``."""
        if installation_id not in self.state.installations:
            raise KeyError(f"no installation {installation_id}")
        owner, name = full_name.split("/")
        bare = self.root / "git" / owner / f"{name}.git"
        gitrepo.create_bare(bare, default_branch, files if files is not None else {"README.md": f"# {name}\n"})
        repo = Repo(self.state.next_id(), owner, name, installation_id, default_branch, bare, private)
        self.state.user_id(owner)
        self.state.repos[full_name.lower()] = repo
        return repo

    def _repo(self, full_name: str) -> Repo:
        owner, name = full_name.split("/")
        repo = self.state.repo(owner, name)
        if repo is None:
            raise KeyError(f"no repo {full_name}")
        return repo

    def set_permission(self, full_name: str, user: str, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"permission must be one of {PERMISSIONS}")
        self.state.user_id(user)
        self._repo(full_name).permissions[user] = permission

    def add_issue(
        self,
        full_name: str,
        title: str,
        body: str | None = None,
        user: str = "octocat",
        labels: list[str] | None = None,
    ) -> int:
        repo = self._repo(full_name)
        self.state.user_id(user)
        for name in labels or []:
            if repo.label(name) is None:
                repo.labels[name] = Label(self.state.next_id(), name)
        issue = Issue(repo.next_number(), self.state.next_id(), title, body, user, list(labels or []))
        repo.issues[issue.number] = issue
        return issue.number

    def commit(
        self,
        full_name: str,
        branch: str,
        files: dict[str, str | bytes | None],
        message: str = "Update files",
        start: str | None = None,
    ) -> str:
        """Commit straight into the bare repo (None deletes a file); the new sha.

        A new branch starts from ``start`` (default: the default branch). This
        is set-up, not a push: ``on_push`` callbacks do not fire.
        """
        repo = self._repo(full_name)
        sha = gitrepo.commit_files(repo.bare_path, branch, files, message, start or repo.default_branch)
        follow_ref(repo, f"refs/heads/{branch}", sha)
        return sha

    def add_label(self, full_name: str, name: str, color: str = "ededed", description: str | None = None) -> None:
        repo = self._repo(full_name)
        repo.labels[name] = Label(self.state.next_id(), name, color, description)

    def add_comment(self, full_name: str, number: int, body: str, user: str = "octocat") -> Comment:
        """A comment by `user` on an issue or pull request (as if made on the website)."""
        repo = self._repo(full_name)
        self.state.user_id(user)
        comment = Comment(self.state.next_id(), number, body, user)
        repo.comments[comment.id] = comment
        return comment

    def comments(self, full_name: str, number: int) -> list[Comment]:
        repo = self._repo(full_name)
        return [c for c in repo.comments.values() if c.issue_number == number]

    def add_manifest_code(self, code: str) -> None:
        """Make ``POST /app-manifests/{code}/conversions`` succeed (once) for ``code``."""
        self.state.manifest_codes.add(code)

    # --- auth, faults, hooks ---------------------------------------------

    def revoke_tokens(self) -> None:
        self.tokens.revoke_all()

    def mint_token(
        self,
        installation_id: int,
        repositories: list[str] | None = None,
        permissions: dict[str, str] | None = None,
    ) -> str:
        """An installation token without an API call (not counted in token_requests).

        ``repositories`` (names, without the owner) and ``permissions`` narrow
        it as the same fields of a token request do (unchecked: set-up).
        """
        granted = dict(permissions) if permissions is not None else dict(self.app_permissions)
        repos = frozenset(repositories) if repositories is not None else None
        return self.tokens.mint(installation_id, self.token_ttl, granted, repos).token

    def scope_of(self, token: str) -> tuple[frozenset[str] | None, dict[str, str]]:
        """(repository names or None for all, permissions) of a token the twin minted."""
        record = self.tokens.tokens[token]
        return record.repositories, dict(record.permissions)

    def app_jwt(self, lifetime: int = 540) -> str:
        """A valid App JWT, signed with the App's key (for tests calling /app*)."""
        now = int(time.time())
        return jwt.encode(
            {"iat": now - 30, "exp": now + lifetime - 30, "iss": str(self.app_id)},
            self.private_key_pem,
            algorithm="RS256",
        )

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 502,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` API requests matching with ``status`` instead.

        ``path_regex`` is searched in the path below /api/v3 (``/repos/o/r/issues/1``);
        ``method`` is an HTTP method or ``"*"``.
        """
        self._faults.append(Fault(method.upper(), re.compile(path_regex), status, dict(headers or {}), body, times))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method in ("*", method.upper()) and fault.path_regex.search(path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def on_push(self, callback: PushCallback) -> None:
        """Call ``await callback(repo_full_name, ref, new_sha)`` for each ref a push updates."""
        self._push_callbacks.append(callback)

    async def _fire_push(self, full_name: str, ref: str, sha: str, before: str | None = None) -> None:
        self.pushes.append((full_name, ref, before or "0" * 40, sha))
        owner, _, name = full_name.partition("/")
        repo = self.state.repo(owner, name)
        if repo is not None:
            follow_ref(repo, ref, sha)
        for callback in self._push_callbacks:
            try:
                await callback(full_name, ref, sha)
            except Exception as exc:  # noqa: BLE001 - reported through push_errors
                log.exception("on_push callback failed for %s %s", full_name, ref)
                self.push_errors.append(f"{full_name} {ref} {sha}: {exc!r}")

    async def deliver(
        self,
        url: str,
        event: str,
        payload: dict[str, Any],
        delivery_id: str | None = None,
        secret: str | None = None,
    ) -> tuple[int, str]:
        """POST a webhook delivery to ``url`` as GitHub does; (status, body text).

        Listed afterwards by ``GET /app/hook/deliveries`` with the status it got."""
        delivery_id = delivery_id or str(uuid.uuid4())
        try:
            status, text = await webhooks.deliver(
                url,
                event,
                payload,
                secret if secret is not None else self.webhook_secret,
                self.app_id,
                delivery_id,
            )
        except aiohttp.ClientError:
            self.hook_deliveries.record(event, payload, guid=delivery_id, status_code=0)
            raise
        self.hook_deliveries.record(event, payload, guid=delivery_id, status_code=status)
        return status, text

    # --- spec violations ---------------------------------------------------

    @contextlib.contextmanager
    def expect_violations(self) -> Iterator[list[str]]:
        """Collect the violations raised inside the block instead of failing the test.

        Yields a list that holds them when the block ends; the block must cause
        at least one, else AssertionError.
        """
        start = len(self.violations)
        caught: list[str] = []
        try:
            yield caught
        finally:
            caught.extend(self.violations[start:])
            del self.violations[start:]
        if not caught:
            raise AssertionError("expected a spec violation, got none")

    @contextlib.contextmanager
    def expect_refusals(self) -> Iterator[list[str]]:
        """Collect the 403s for missing permissions made inside the block instead of
        failing the test; the block must cause at least one, else AssertionError."""
        start = len(self.permission_refusals)
        caught: list[str] = []
        try:
            yield caught
        finally:
            caught.extend(self.permission_refusals[start:])
            del self.permission_refusals[start:]
        if not caught:
            raise AssertionError("expected a permission refusal, got none")

    def calls(self, operation_id: str) -> list[RecordedRequest]:
        """Recorded requests for one operation id."""
        return [r for r in self.requests if r.operation_id == operation_id]
