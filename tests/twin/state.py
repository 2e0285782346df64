"""What the twin remembers: installations, repositories and their objects."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
# The App's bot user, as GitHub names it.
APP_SLUG = "compound-twin"


def now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Installation:
    id: int
    account: str
    account_id: int
    account_type: str
    created_at: str = field(default_factory=now_iso)


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class Reaction:
    id: int
    user: str
    content: str
    created_at: str = field(default_factory=now_iso)


@dataclass
class Comment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class ReviewComment:
    id: int
    pull_number: int
    body: str
    user: str
    path: str
    commit_id: str
    line: int | None = None
    side: str = "RIGHT"
    review_id: int | None = None
    in_reply_to_id: int | None = None
    diff_hunk: str = ""
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class Review:
    id: int
    pull_number: int
    user: str
    state: str
    body: str
    commit_id: str
    submitted_at: str = field(default_factory=now_iso)


@dataclass
class Issue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    state: str = "open"
    state_reason: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    closed_at: str | None = None
    reactions: list[Reaction] = field(default_factory=list)
    # Set when the issue is a pull request (GitHub numbers both alike).
    pull: Pull | None = None


@dataclass
class Pull:
    number: int
    id: int
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    draft: bool = False
    merged: bool = False
    maintainer_can_modify: bool = False


@dataclass
class CheckSuite:
    id: int
    head_sha: str
    head_branch: str | None
    status: str = "queued"
    conclusion: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    suite_id: int
    status: str = "queued"
    conclusion: str | None = None
    details_url: str | None = None
    external_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    installation_id: int
    default_branch: str
    bare_path: Path
    private: bool = True
    created_at: str = field(default_factory=now_iso)
    permissions: dict[str, str] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    review_comments: dict[int, ReviewComment] = field(default_factory=dict)
    reviews: dict[int, Review] = field(default_factory=dict)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    check_suites: dict[int, CheckSuite] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def next_number(self) -> int:
        return max(self.issues, default=0) + 1

    def label(self, name: str) -> Label | None:
        return next((lb for lb in self.labels.values() if lb.name.lower() == name.lower()), None)


class State:
    """Everything the twin knows; ids come from one counter, like GitHub's."""

    def __init__(self) -> None:
        self._ids = itertools.count(1001)
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}  # by lower-cased full name
        self.users: dict[str, int] = {}
        self.manifest_codes: set[str] = set()

    def next_id(self) -> int:
        return next(self._ids)

    def user_id(self, login: str) -> int:
        if login not in self.users:
            self.users[login] = self.next_id()
        return self.users[login]

    def repo(self, owner: str, name: str) -> Repo | None:
        return self.repos.get(f"{owner}/{name}".lower())

    def repos_of(self, installation_id: int) -> list[Repo]:
        return [r for r in self.repos.values() if r.installation_id == installation_id]
