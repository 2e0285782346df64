"""The agent's environment: an allow-list, never a copy of the service's own.

The agent runs code from the repository and the issue author's words, so it
must never see what lets Compound act as the App: the App key, the webhook
secret, the database URL, any GitHub token. Those names are refused even when
an operator lists one in AGENT_ENV_PASSTHROUGH.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

from bot.agents.base import AgentRequest

log = logging.getLogger("compound.agents")

BASICS = frozenset({"PATH", "HOME", "LANG", "TERM", "TZ", "TMPDIR", "USER", "SHELL"})
_ALLOWED_RE = re.compile(r"^(?:LC_\w+|ANTHROPIC_\w+|OPENAI_\w+|CLAUDE_CODE_\w+)$")

# The service's own credentials and anything shaped like a GitHub credential.
# Checked after the allow-list too, so no prefix rule can let one in.
_REFUSED_NAMES = frozenset(
    {
        "APP_ID",
        "PRIVATE_KEY",
        "PRIVATE_KEY_PATH",
        "WEBHOOK_SECRET",
        "DATABASE_URL",
        "SENTRY_DSN",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN",
        "GITHUB_PAT",
        "AGENT_ENV_PASSTHROUGH",
    }
)
_REFUSED_RE = re.compile(r"(?:^GH_|^GITHUB_|PRIVATE_KEY|WEBHOOK_SECRET|^DATABASE_URL|^SENTRY_)")

# Set by Compound for each run; never taken from the operator's environment.
AGENT_VARIABLES = ("AGENT_MODEL", "AGENT_SESSION_ID", "AGENT_TASK_KIND", "AGENT_PROMPT_FILE")


def refused(name: str) -> bool:
    return name in _REFUSED_NAMES or bool(_REFUSED_RE.search(name))


def passthrough_names(value: str | None) -> list[str]:
    """Names from an AGENT_ENV_PASSTHROUGH value (comma- or space-separated)."""
    return [n for n in re.split(r"[,\s]+", value or "") if n]


def agent_environment(request: AgentRequest, source_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the agent runs with, built from `source_env` (default: ours)."""
    source = os.environ if source_env is None else source_env
    extra = _checked_passthrough([*passthrough_names(source.get("AGENT_ENV_PASSTHROUGH")), *request.env_passthrough])
    env = {
        name: value
        for name, value in source.items()
        if (name in BASICS or _ALLOWED_RE.match(name) or name in extra) and not refused(name)
    }
    env["AGENT_MODEL"] = request.model or ""
    env["AGENT_SESSION_ID"] = request.session_id
    env["AGENT_TASK_KIND"] = request.task_kind
    return env


def _checked_passthrough(names: Iterable[str]) -> set[str]:
    allowed = set()
    for name in names:
        if refused(name) or name in AGENT_VARIABLES:
            log.warning("AGENT_ENV_PASSTHROUGH names %s, which an agent may not see; ignored", name)
        else:
            allowed.add(name)
    return allowed
