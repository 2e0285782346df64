"""All webhook handlers, composed into one router (bedevere's layout).

A handler gets `(event, gh, ctx)`. `event.data` is the payload as a dict,
parsed the first time it is read (bot/dispatch.py's StoredEvent): a handler
that can decide from `event.event`, the action it was routed on, or `gh` /
`ctx` alone should return before reading it.
"""

from __future__ import annotations

from gidgethub import routing

from handlers import checks, comments, installations, issues, pulls, push, reviews, statuses, workflows

MODULES = (installations, issues, comments, pulls, push, reviews, checks, workflows, statuses)

router = routing.Router(*(module.router for module in MODULES))

# The events the intake stores; anything else is answered 200 "ignored".
# tests/test_handlers.py checks this against the routers and app.yml.
EVENTS = frozenset(
    {
        "installation",
        "installation_repositories",
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "check_run",
        "check_suite",
        "workflow_run",
        "workflow_job",
        "push",
        "status",
    }
)
