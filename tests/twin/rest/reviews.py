"""Reviews, review comments (replies included) and requested reviewers."""

from __future__ import annotations

from .. import shapes
from ..state import Review, ReviewComment
from .base import ApiError, Call, Reply, not_found, operation, unprocessable
from .issues import bot_login, react
from .pulls import pull_body, pull_of


@operation("pulls/list-reviews")
async def list_reviews(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    reviews = [r for r in repo.reviews.values() if r.pull_number == number]
    return Reply(200, [shapes.review(call.twin, repo, r) for r in call.page(reviews)])


@operation("pulls/get-review")
async def get_review(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    review = repo.reviews.get(call.int_param("review_id"))
    if review is None or review.pull_number != number:
        raise not_found()
    return Reply(200, shapes.review(call.twin, repo, review))


@operation("pulls/list-comments-for-review")
async def list_review_comments_of_review(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    review_id = call.int_param("review_id")
    if review_id not in repo.reviews:
        raise not_found()
    found = [c for c in repo.review_comments.values() if c.pull_number == number and c.review_id == review_id]
    return Reply(200, [shapes.review_comment(call.twin, repo, c) for c in call.page(found)])


@operation("pulls/list-review-comments")
async def list_review_comments(call: Call) -> Reply:
    repo = call.repo()
    number = pull_of(call, repo).number
    found = [c for c in repo.review_comments.values() if c.pull_number == number]
    return Reply(200, [shapes.review_comment(call.twin, repo, c) for c in call.page(found)])


@operation("pulls/get-review-comment")
async def get_review_comment(call: Call) -> Reply:
    repo = call.repo()
    comment = repo.review_comments.get(call.int_param("comment_id"))
    if comment is None:
        raise not_found()
    return Reply(200, shapes.review_comment(call.twin, repo, comment))


@operation("pulls/create-reply-for-review-comment")
async def reply_to_review_comment(call: Call) -> Reply:
    """A reply joins the thread and, as on GitHub, comes with its own COMMENTED review.

    As on GitHub, `comment_id` must be the thread's top-level comment: "Replies
    to replies are not supported" (the operation's description), answered 422.
    """
    repo = call.repo()
    pull = pull_of(call, repo)
    number = pull.number
    parent = repo.review_comments.get(call.int_param("comment_id"))
    if parent is None or parent.pull_number != number:
        raise not_found()
    if parent.in_reply_to_id is not None:
        raise unprocessable(
            "Validation Failed",
            {
                "resource": "PullRequestReviewComment",
                "code": "invalid",
                "field": "in_reply_to",
                "message": "Replies to replies are not supported; reply to the thread's top-level comment.",
            },
        )
    assert pull.pull is not None
    state = call.twin.state
    review = Review(state.next_id(), number, bot_login(call), "COMMENTED", "", pull.pull.head_sha)
    repo.reviews[review.id] = review
    comment = ReviewComment(
        state.next_id(),
        number,
        call.json["body"],
        bot_login(call),
        parent.path,
        parent.commit_id,
        parent.line,
        parent.side,
        review_id=review.id,
        in_reply_to_id=parent.id,
        diff_hunk=parent.diff_hunk,
    )
    repo.review_comments[comment.id] = comment
    return Reply(201, shapes.review_comment(call.twin, repo, comment))


@operation("reactions/create-for-pull-request-review-comment")
async def react_to_review_comment(call: Call) -> Reply:
    comment = call.repo().review_comments.get(call.int_param("comment_id"))
    if comment is None:
        raise ApiError(404, "Not Found")
    return react(call, comment.reactions)


@operation("pulls/list-requested-reviewers")
async def list_requested_reviewers(call: Call) -> Reply:
    repo = call.repo()
    pull = pull_of(call, repo).pull
    assert pull is not None
    return Reply(200, {"users": [shapes.user(call.twin, u) for u in pull.requested_reviewers], "teams": []})


@operation("pulls/request-reviewers")
async def request_reviewers(call: Call) -> Reply:
    repo = call.repo()
    issue = pull_of(call, repo)
    assert issue.pull is not None
    wanted = [str(login) for login in call.json.get("reviewers") or []]
    if call.json.get("team_reviewers"):
        raise unprocessable(
            "Validation Failed",
            {
                "resource": "PullRequest",
                "code": "custom",
                "field": "team_reviewers",
                "message": "The twin has no teams.",
            },
        )
    if issue.user in wanted:
        raise unprocessable("Review cannot be requested from pull request author.")
    outsiders = [u for u in wanted if u != repo.owner and repo.permissions.get(u, "none") == "none"]
    if outsiders:
        raise unprocessable(
            "Reviews may only be requested from collaborators. One or more of the users or teams you "
            f"specified is not a collaborator of the {repo.full_name} repository."
        )
    for login in wanted:
        if login not in issue.pull.requested_reviewers:
            issue.pull.requested_reviewers.append(login)
    return Reply(201, await pull_body(call, repo, issue, full=False))
