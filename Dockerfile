# syntax=docker/dockerfile:1
# Build stage: install Compound and its dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/compound
WORKDIR /src
COPY pyproject.toml README.md LICENSE requirements.lock ./
COPY bot ./bot
COPY handlers ./handlers
COPY prompts ./prompts
# The runtime dependencies at the versions `make` installs: the lock is a
# constraint here, so its test and lint tools stay out of the image.
RUN /opt/compound/bin/pip install --constraint requirements.lock .

# Runtime stage: the virtualenv, git for workspaces, bubblewrap for the agent
# sandbox (docs/sandbox.md), the default agent CLI (Claude Code, from npm; the
# version the tests run), an unprivileged user for the service and another
# for agents when the container runs as root (AGENT_SANDBOX=user).
# Other agents: build FROM this image and install codex or aider the same way.
FROM python:3.11-slim
ARG CLAUDE_CODE_VERSION=2.1.197
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates nodejs npm bubblewrap \
 && npm install -g --no-audit --no-fund "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
 && npm cache clean --force \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 compound \
 && useradd --no-create-home --uid 10002 --shell /usr/sbin/nologin compound-agent \
 && mkdir -p /data && chown compound:compound /data
COPY --from=build /opt/compound /opt/compound
WORKDIR /app
COPY app.yml ./
COPY prompts ./prompts
ENV PATH=/opt/compound/bin:$PATH \
    DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER compound
VOLUME ["/data"]
EXPOSE 3000
# Liveness only: `compound doctor` calls GitHub and fails while GitHub is down,
# which no restart cures (docs/operations.md, Containers); run it with docker exec.
HEALTHCHECK --interval=30s --timeout=5s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"
CMD ["compound", "serve"]
