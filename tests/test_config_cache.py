"""Labels that are no trigger cost no API call while the repo's config is kept; a push to it drops it."""

from __future__ import annotations

import pytest

from bot.service import Service
from tests.conftest import FAST, WEBHOOK_SECRET, serving, twin_settings
from tests.twin_events import issue_labeled, push_event

REPO = "octo-org/app"


def config_reads(twin) -> int:
    return sum(1 for r in twin.requests if r.path.endswith("/contents/.github/compound.yml"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_repos_config_is_read_once_per_interval_and_again_after_a_push_that_changes_it(
    tmp_path,
    twin,
    database_url,
):
    iid = twin.add_installation(account="octo-org")
    twin.add_repo(REPO, installation_id=iid, files={"README.md": "# app\n"})
    numbers = [twin.add_issue(REPO, title=f"issue {n}", body="", user="alice") for n in range(4)]
    settings = twin_settings(
        tmp_path,
        twin,
        DATABASE_URL=database_url,
        AGENT_BACKEND="command",
        AGENT_COMMAND="true",
        AGENT_SANDBOX="none",
    )
    service = Service(settings, policy=FAST)
    await service.start()
    try:
        async with serving(service) as listener:
            url = f"http://127.0.0.1:{listener.port}{settings.webhook_path}"

            async def deliver(event: str, payload: dict) -> None:
                status, _ = await twin.deliver(url, event, payload, secret=WEBHOOK_SECRET)
                assert status == 202
                await service.dispatcher.drain()

            for n in numbers[:2]:
                await deliver("issues", issue_labeled(twin, REPO, n, "bug", "alice", iid))
            assert config_reads(twin) == 1  # the second label needed no call at all
            calls = len(twin.requests)
            await deliver("issues", issue_labeled(twin, REPO, numbers[2], "needs-triage", "alice", iid))
            assert len(twin.requests) == calls

            # The maintainers make `bug` their trigger label: the push drops the kept config.
            after = twin.commit(REPO, "main", {".github/compound.yml": "trigger_label: bug\n"}, "trigger on bug")
            await deliver("push", push_event(twin, REPO, "refs/heads/main", None, after, "alice", iid))
            await deliver("issues", issue_labeled(twin, REPO, numbers[3], "bug", "bob", iid))
            assert config_reads(twin) == 2
            # bob has no write access: the label was read as a trigger and refused, not skipped as `bug`.
            assert any(r.path.endswith("/collaborators/bob/permission") for r in twin.requests)
        assert await service.store.deliveries.count("failed") == 0
    finally:
        await service.stop()
    assert twin.violations == []
