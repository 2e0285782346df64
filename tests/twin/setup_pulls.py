"""Set-up helpers for pull requests and reviews (mixed into GitHubTwin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import gitrepo
from .state import Issue, Pull, Repo, Review, ReviewComment

if TYPE_CHECKING:
    from .state import State


def follow_ref(repo: Repo, ref: str, sha: str) -> None:
    """Open pull requests follow their head and base branches at once, as on GitHub."""
    for issue in repo.issues.values():
        pull = issue.pull
        if pull is None or issue.state != "open":
            continue
        if ref == f"refs/heads/{pull.head_ref}":
            pull.head_sha = sha
        if ref == f"refs/heads/{pull.base_ref}":
            pull.base_sha = sha


class PullSetup:
    """``add_pull``, ``add_review``, ``add_review_comment``, ``mergeability_pending``."""

    if TYPE_CHECKING:
        state: State

        def _repo(self, full_name: str) -> Repo: ...

    def _pull(self, full_name: str, number: int) -> tuple[Repo, Issue, Pull]:
        repo = self._repo(full_name)
        issue = repo.issues[number]
        assert issue.pull is not None, f"#{number} is not a pull request"
        return repo, issue, issue.pull

    def add_pull(
        self,
        full_name: str,
        head: str,
        base: str | None = None,
        title: str = "Change",
        body: str | None = None,
        user: str = "octocat",
        draft: bool = False,
    ) -> int:
        """A pull request from existing branch ``head``; its number."""
        repo = self._repo(full_name)
        base = base or repo.default_branch
        head_sha = gitrepo.resolve_sync(repo.bare_path, f"refs/heads/{head}")
        base_sha = gitrepo.resolve_sync(repo.bare_path, f"refs/heads/{base}")
        if head_sha is None or base_sha is None:
            raise KeyError(f"{full_name} has no branch {head if head_sha is None else base}")
        number = repo.next_number()
        pull = Pull(number, self.state.next_id(), head, head_sha, base, base_sha, draft=draft)
        self.state.user_id(user)
        repo.issues[number] = Issue(number, self.state.next_id(), title, body, user, pull=pull)
        return number

    def add_review(
        self,
        full_name: str,
        pull_number: int,
        user: str,
        state: str = "COMMENTED",
        body: str = "",
        comments: list[dict[str, Any]] | None = None,
    ) -> int:
        """A submitted review (APPROVED, CHANGES_REQUESTED, COMMENTED) and its inline comments; its id.

        Each comment is ``{"path", "line", "body"}``, or ``{"in_reply_to": id, "body"}``
        (path and line then come from the comment answered). A review by a
        requested reviewer clears the request, as on GitHub.
        """
        repo, _, pull = self._pull(full_name, pull_number)
        review = Review(self.state.next_id(), pull_number, user, state, body, pull.head_sha)
        self.state.user_id(user)
        repo.reviews[review.id] = review
        for c in comments or []:
            parent = repo.review_comments.get(c["in_reply_to"]) if c.get("in_reply_to") else None
            path = c.get("path") or (parent.path if parent else None)
            if path is None:
                raise ValueError("a review comment needs a path (or in_reply_to)")
            line = c.get("line") or (parent.line if parent else 1)
            self.add_review_comment(
                full_name,
                pull_number,
                user,
                c["body"],
                path,
                line or 1,
                review_id=review.id,
                in_reply_to=c.get("in_reply_to"),
            )
        if user in pull.requested_reviewers:
            pull.requested_reviewers.remove(user)
        return review.id

    def add_review_comment(
        self,
        full_name: str,
        pull_number: int,
        user: str,
        body: str,
        path: str,
        line: int = 1,
        review_id: int | None = None,
        in_reply_to: int | None = None,
    ) -> int:
        """A review comment on a line of the pull's head; its id."""
        repo, _, pull = self._pull(full_name, pull_number)
        if in_reply_to is not None:
            parent = repo.review_comments[in_reply_to]
            in_reply_to = parent.in_reply_to_id or parent.id  # replies join the thread's first comment
        comment = ReviewComment(
            self.state.next_id(),
            pull_number,
            body,
            user,
            path,
            pull.head_sha,
            line,
            review_id=review_id,
            in_reply_to_id=in_reply_to,
            diff_hunk=f"@@ -{line},1 +{line},1 @@",
        )
        self.state.user_id(user)
        repo.review_comments[comment.id] = comment
        return comment.id

    def require_up_to_date(self, full_name: str, branch: str) -> None:
        """Branch protection on ``branch``: PRs must contain its head to merge ("behind" otherwise)."""
        self._repo(full_name).up_to_date_branches.add(branch)

    def mergeability_pending(self, full_name: str, number: int, times: int = 1) -> None:
        """The next ``times`` ``GET .../pulls/{number}`` answer ``mergeable: null``, state "unknown"."""
        _, _, pull = self._pull(full_name, number)
        pull.mergeability_pending = times
