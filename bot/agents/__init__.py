"""Agent backends (docs/design.md §5): one small interface over the coding-agent CLIs.

`get_backend(name)` gives a backend that builds the CLI's command line and
reads its output; `AgentRunner.run` runs it in the workspace with a scrubbed
environment and returns an `AgentResult`, whatever happens to the agent.
"""

from bot.agents.backends import BACKENDS, get_backend
from bot.agents.base import TASK_KINDS, AgentBackend, AgentRequest, AgentResult, AgentUsage
from bot.agents.environment import agent_environment
from bot.agents.runner import AgentRunner

__all__ = [
    "BACKENDS",
    "TASK_KINDS",
    "AgentBackend",
    "AgentRequest",
    "AgentResult",
    "AgentRunner",
    "AgentUsage",
    "agent_environment",
    "get_backend",
]
