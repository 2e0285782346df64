"""All webhook handlers, composed into one router (bedevere's layout)."""

from __future__ import annotations

from gidgethub import routing

from handlers import checks, comments, installations, issues, pulls, reviews, workflows

MODULES = (installations, issues, comments, pulls, reviews, checks, workflows)

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
    }
)
