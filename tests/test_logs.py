"""Structured logs carry delivery context and never a secret or a token."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bot.logs import log_context, redactor, setup_logging
from bot.service import Service
from tests.conftest import WEBHOOK_SECRET, make_settings
from tests.service_process import ServiceProcess, base_env
from tests.webhook_examples import example


@pytest.fixture
def captured():
    stream = io.StringIO()
    setup_logging("debug", "json", secrets=[WEBHOOK_SECRET], stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_compound", False):
            root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_the_delivery_context(captured):
    log = logging.getLogger("compound.test")
    with log_context(delivery="d-1", installation=7, repo="o/r"):
        log.info("handled %s", "it", extra={"handler": "h"})
    log.info("outside")
    inside, outside = lines(captured)
    assert inside["msg"] == "handled it"
    assert (inside["delivery"], inside["installation"], inside["repo"], inside["handler"]) == ("d-1", 7, "o/r", "h")
    assert inside["level"] == "info" and inside["logger"] == "compound.test" and "ts" in inside
    assert "delivery" not in outside


SECRET_SHAPES = [
    "ghs_" + "a1B2" * 9,
    "ghp_" + "Z9y8" * 9,
    "github_pat_" + "11ABCDEFG0" * 4,
    "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMiLCJpYXQiOjF9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "sk-ant-api03-" + "x" * 30,
    WEBHOOK_SECRET,
]


@pytest.mark.parametrize("secret", SECRET_SHAPES)
def test_secrets_are_redacted_from_messages_extras_and_tracebacks(secret, captured):
    log = logging.getLogger("compound.test")
    log.warning("calling with Authorization: token %s", secret, extra={"header": f"Bearer {secret}"})
    try:
        raise RuntimeError(f"https://x-access-token:{secret}@github.com/o/r.git failed")
    except RuntimeError:
        log.exception("push failed")
    text = captured.getvalue()
    assert secret not in text
    assert "[REDACTED]" in text


def test_the_private_key_is_redacted(captured, twin):
    redactor.add_secret(twin.private_key_pem)
    logging.getLogger("compound.test").error("key was %s", twin.private_key_pem)
    text = captured.getvalue()
    body = [line for line in twin.private_key_pem.splitlines() if "PRIVATE KEY" not in line]
    assert not any(line in text for line in body)


async def test_no_token_reaches_the_logs_while_talking_to_github(captured, tmp_path, twin):
    iid = twin.add_installation(account="octo-org")
    twin.add_repo("octo-org/hello", installation_id=iid)
    settings = make_settings(
        tmp_path, APP_ID=twin.app_id, PRIVATE_KEY=twin.private_key_pem, GHE_HOST=twin.host, GHE_PROTOCOL="http"
    )
    service = Service(settings)
    await service.start()
    try:
        gh = service.github.installation(iid)
        repos = await gh.getitem("/installation/repositories")
        assert repos["total_count"] == 1
    finally:
        await service.stop()
    text = captured.getvalue()
    minted = list(twin.tokens.tokens)
    assert minted, "the service did not get an installation token"
    for token in minted:
        assert token not in text
    assert "eyJ" not in text  # no JWT
    assert "authenticated as GitHub App" in text


async def test_service_logs_hold_no_secret_end_to_end(tmp_path, twin):
    env = base_env(
        APP_ID=twin.app_id,
        PRIVATE_KEY=twin.private_key_pem,
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        GHE_HOST=twin.host,
        GHE_PROTOCOL="http",
        DATA_DIR=tmp_path / "data",
        LOG_LEVEL="debug",
    )
    proc = ServiceProcess(tmp_path, env)
    await proc.start()
    try:
        status, _ = await twin.deliver(
            proc.url + "/api/github/webhooks", "installation", example("installation", "created"), secret=WEBHOOK_SECRET
        )
        assert status == 202
    finally:
        await proc.stop()
    text = proc.logs()
    assert "authenticated as GitHub App" in text
    assert WEBHOOK_SECRET not in text
    assert "eyJ" not in text
    for line in twin.private_key_pem.splitlines()[1:-1]:
        assert line not in text
