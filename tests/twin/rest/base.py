"""What a REST handler receives and returns, and the operation registry."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiMapping

from ..auth import InstallationToken
from ..state import Repo

if TYPE_CHECKING:
    from ..server import GitHubTwin


class ApiError(Exception):
    """Answered with GitHub's error body: ``{"message": ..., ...}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.extra = extra


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def unprocessable(message: str, *errors: dict[str, Any]) -> ApiError:
    return ApiError(422, message, errors=list(errors)) if errors else ApiError(422, message)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    # A body that is not JSON (job logs): sent as is.
    text: str | None = None


@dataclass
class Call:
    """One API request, matched and authenticated."""

    twin: GitHubTwin
    request: web.Request
    operation_id: str
    params: dict[str, str]
    query: MultiMapping[str]
    raw_body: bytes
    token: InstallationToken | None = None
    link: str | None = None

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.raw_body) if self.raw_body else {}
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except (KeyError, ValueError):
            raise not_found() from None

    def repo(self) -> Repo:
        """The repository in the path, if the token may see it (404 otherwise, as GitHub)."""
        repo = self.twin.state.repo(self.params["owner"], self.params["repo"])
        if repo is None or self.token is None:
            raise not_found()
        if repo.installation_id != self.token.installation_id:
            raise not_found()
        if self.token.repositories is not None and repo.name not in self.token.repositories:
            raise not_found()
        return repo

    def page(self, items: list[Any]) -> list[Any]:
        """One page of ``items`` per ``page``/``per_page``; sets the Link header GitHub sends."""
        per_page = max(min(int(self.query.get("per_page", "30") or 30), 100), 1)
        page = max(int(self.query.get("page", "1") or 1), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        rels = {}
        if page > 1:
            rels.update(prev=min(page - 1, last), first=1)
        if page < last:
            rels.update(next=page + 1, last=last)
        links = [
            f'<{self.request.url.update_query(page=str(n), per_page=str(per_page))}>; rel="{rel}"'
            for rel, n in rels.items()
        ]
        if links:
            self.link = ", ".join(links)
        return items[(page - 1) * per_page : page * per_page]


Handler = Callable[[Call], Awaitable[Reply]]
HANDLERS: dict[str, Handler] = {}


def operation(operation_id: str) -> Callable[[Handler], Handler]:
    """Register the handler for an OpenAPI operation id."""

    def register(handler: Handler) -> Handler:
        if operation_id in HANDLERS:
            raise ValueError(f"{operation_id} is registered twice")
        HANDLERS[operation_id] = handler
        return handler

    return register
