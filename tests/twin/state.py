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
# GitHub Actions, as GitHub knows it; other Apps get ids from OTHER_APP_IDS up.
ACTIONS_SLUG = "github-actions"
ACTIONS_APP_ID = 15368
OTHER_APP_IDS = 90001


def now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class App:
    """A GitHub App that owns check suites and runs (the twin's App, GitHub Actions, a CI)."""

    id: int
    slug: str
    name: str
    owner: str = "octo-org"


@dataclass
class Installation:
    id: int
    account: str
    account_id: int
    account_type: str
    created_at: str = field(default_factory=now_iso)
    suspended_at: str | None = None


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
    requested_reviewers: list[str] = field(default_factory=list)
    # GETs still to answer `mergeable: null` (GitHub computes it in the background).
    mergeability_pending: int = 0


@dataclass
class CheckSuite:
    id: int
    head_sha: str
    head_branch: str | None
    app: str = APP_SLUG
    before: str | None = None
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
    app: str = APP_SLUG
    status: str = "queued"
    conclusion: str | None = None
    details_url: str | None = None
    html_url: str | None = None
    external_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class WorkflowRun:
    """A GitHub Actions workflow run: one per check suite of the github-actions App."""

    id: int
    name: str
    head_sha: str
    head_branch: str | None
    suite_id: int
    run_number: int
    workflow_id: int
    path: str = ".github/workflows/ci.yml"
    event: str = "push"
    actor: str = "octocat"
    status: str = "queued"
    conclusion: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    run_started_at: str = field(default_factory=now_iso)


@dataclass
class Job:
    """A workflow job; its id is its check run's id, as on GitHub."""

    id: int
    run_id: int
    name: str
    head_sha: str
    head_branch: str | None
    status: str = "queued"
    conclusion: str | None = None
    created_at: str = field(default_factory=now_iso)
    started_at: str = field(default_factory=now_iso)
    completed_at: str | None = None
    log_path: Path | None = None  # the job's log, on disk (logs run to tens of MB)


@dataclass
class CommitStatus:
    id: int
    sha: str
    context: str
    state: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


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
    # Branch protection "require branches to be up to date before merging":
    # a PR into one of these whose head lacks the base's head is "behind".
    up_to_date_branches: set[str] = field(default_factory=set)
    workflow_runs: dict[int, WorkflowRun] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)
    statuses: list[CommitStatus] = field(default_factory=list)

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
        self.apps: dict[str, App] = {}  # other Apps, by slug

    def next_id(self) -> int:
        return next(self._ids)

    def user_id(self, login: str) -> int:
        if login not in self.users:
            self.users[login] = self.next_id()
        return self.users[login]

    def repo(self, owner: str, name: str) -> Repo | None:
        return self.repos.get(f"{owner}/{name}".lower())

    def app(self, slug: str) -> App:
        """Another App by slug, made up on first use (GitHub Actions has its real id)."""
        if slug not in self.apps:
            if slug == ACTIONS_SLUG:
                self.apps[slug] = App(ACTIONS_APP_ID, slug, "GitHub Actions", "github")
            else:
                name = slug.replace("-", " ").title()
                self.apps[slug] = App(OTHER_APP_IDS + len(self.apps), slug, name)
            self.user_id(self.apps[slug].owner)
        return self.apps[slug]

    def repos_of(self, installation_id: int) -> list[Repo]:
        return [r for r in self.repos.values() if r.installation_id == installation_id]
