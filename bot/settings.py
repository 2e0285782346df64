"""Service settings, read from the environment and a `.env` file.

The names are Probot's where Probot has one, so that operators of other GitHub
Apps recognise them (docs/design.md §3).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# One AGENT_NETWORK_ALLOW entry: a domain (`*.` allowed), an IPv4 address or a
# bare IPv6 one, optionally with `:port` or `:*` (IPv6 with a port in brackets).
ALLOW_ENTRY = re.compile(
    r"(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?(?::(?:\d{1,5}|\*))?"
    r"|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*"
    r"|\[[0-9A-Fa-f:.]+\](?::(?:\d{1,5}|\*))?"
)


def digest_interval(text: str) -> timedelta:
    """REPORT_DIGEST_INTERVAL: `daily`, `weekly`, or hours, days or weeks (`12h`, `1d`, `2w`), at least an hour."""
    value = text.strip().lower()
    named = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}
    if value in named:
        return named[value]
    m = re.fullmatch(r"(\d+)([hdw])", value)
    period = timedelta(**{{"h": "hours", "d": "days", "w": "weeks"}[m[2]]: int(m[1])}) if m else None
    if period is None or period < timedelta(hours=1):
        raise ValueError(f"{text!r}: use daily, weekly, or hours, days or weeks such as 12h, 1d, 2w (at least 1h)")
    return period


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    app_id: int | None = Field(default=None, alias="APP_ID")
    private_key: SecretStr | None = Field(default=None, alias="PRIVATE_KEY")
    private_key_path: Path | None = Field(default=None, alias="PRIVATE_KEY_PATH")
    webhook_secret: SecretStr | None = Field(default=None, alias="WEBHOOK_SECRET")
    webhook_path: str = Field(default="/api/github/webhooks", alias="WEBHOOK_PATH")
    webhook_max_connections: int = Field(default=1024, ge=1, alias="WEBHOOK_MAX_CONNECTIONS")
    webhook_head_timeout: float = Field(default=10.0, gt=0, alias="WEBHOOK_HEAD_TIMEOUT")
    webhook_body_timeout: float = Field(default=30.0, gt=0, alias="WEBHOOK_BODY_TIMEOUT")
    webhook_body_budget_mb: int = Field(default=64, ge=26, alias="WEBHOOK_BODY_BUDGET_MB")
    # Unset: all interfaces once the App is registered, loopback only before
    # (setup mode), so no stranger reaches the setup pages (`listen_host`).
    host: str | None = Field(default=None, alias="HOST")
    port: int = Field(default=3000, ge=0, le=65535, alias="PORT")
    ghe_host: str | None = Field(default=None, alias="GHE_HOST")
    ghe_protocol: Literal["https", "http"] = Field(default="https", alias="GHE_PROTOCOL")
    data_dir: Path = Field(default=Path("./data"), alias="DATA_DIR")
    # Where setup mode writes the App's credentials and start-up reads them
    # (default DATA_DIR/.env, see `credentials_file`).
    env_file: Path | None = Field(default=None, alias="ENV_FILE")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    agent_backend: Literal["claude-code", "codex", "aider", "command"] = Field(
        default="claude-code", alias="AGENT_BACKEND"
    )
    agent_command: str | None = Field(default=None, alias="AGENT_COMMAND")
    agent_model: str | None = Field(default=None, alias="AGENT_MODEL")
    agent_env_passthrough: str = Field(default="", alias="AGENT_ENV_PASSTHROUGH")
    # What isolates every agent process (docs/sandbox.md).
    agent_sandbox: Literal["auto", "bwrap", "user", "none"] = Field(default="auto", alias="AGENT_SANDBOX")
    agent_sandbox_paths: str = Field(default="", alias="AGENT_SANDBOX_PATHS")
    agent_network: Literal["on", "off"] = Field(default="on", alias="AGENT_NETWORK")
    agent_network_allow: str = Field(default="", alias="AGENT_NETWORK_ALLOW")
    # Not in docs/design.md §3: the account agents run as when the service runs as root.
    agent_user: str = Field(default="compound-agent", alias="AGENT_USER")
    max_concurrent_sessions: int = Field(default=4, ge=1, alias="MAX_CONCURRENT_SESSIONS")
    # Not in docs/design.md §3 (docs/operations.md#quotas): what one installation
    # may take of a shared deployment. Rounds running at once across every
    # worker process, and rounds started per UTC day before the rest are held
    # (a maintainer's `/agent retry` goes past); 0: no daily cap.
    max_sessions_per_installation: int = Field(default=2, ge=1, alias="MAX_SESSIONS_PER_INSTALLATION")
    max_rounds_per_installation_per_day: int = Field(default=200, ge=0, alias="MAX_ROUNDS_PER_INSTALLATION_PER_DAY")
    # Seconds between two refusals on one thread to people without write access;
    # the others are logged only (docs/operations.md#quotas).
    refusal_interval: float = Field(default=3600, ge=0, alias="REFUSAL_INTERVAL")
    agent_timeout: float = Field(default=3600, gt=0, alias="AGENT_TIMEOUT")
    max_ci_rounds: int = Field(default=3, ge=0, alias="MAX_CI_ROUNDS")
    max_review_rounds: int = Field(default=3, ge=0, alias="MAX_REVIEW_ROUNDS")
    # Not in docs/design.md §3 (docs/healing.md): tries of the agent within one round
    # before Compound gives up on the round and escalates.
    agent_attempts: int = Field(default=2, ge=1, le=10, alias="AGENT_ATTEMPTS")
    # The share of in-scope sessions run without a lesson, to measure it (docs/learning.md).
    lesson_holdout: float = Field(default=0.2, ge=0.0, le=0.9, alias="LESSON_HOLDOUT")
    # `off`: outcomes and lessons are still recorded, but prompts carry no lessons,
    # the first variant is always used and routing stays with labels (a baseline).
    learning: Literal["on", "off"] = Field(default="on", alias="LEARNING")
    # The periodic digest (docs/report.md): `compound report`'s figures for each
    # closed period, posted as an issue in this repository (owner/name); unset: none.
    report_digest_repo: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$", alias="REPORT_DIGEST_REPO")
    report_digest_interval: str = Field(default="weekly", alias="REPORT_DIGEST_INTERVAL")
    # How long a CI round waits after a failing check for the rest of the
    # suite, and at most for checks still running before it works with what failed.
    ci_quiet_seconds: float = Field(default=5, ge=0, alias="CI_QUIET_SECONDS")
    ci_settle_timeout: float = Field(default=1800, ge=0, alias="CI_SETTLE_TIMEOUT")
    # A review's comments arrive one event each: the round waits this long for them.
    review_quiet_seconds: float = Field(default=3, ge=0, alias="REVIEW_QUIET_SECONDS")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", alias="LOG_LEVEL")
    log_format: Literal["json", "text"] = Field(default="json", alias="LOG_FORMAT")
    sentry_dsn: SecretStr | None = Field(default=None, alias="SENTRY_DSN")
    # Not in docs/design.md §3: how often a failing handler is retried before the
    # delivery is parked as failed (documented in docs/operations.md).
    delivery_max_attempts: int = Field(default=5, ge=1, alias="DELIVERY_MAX_ATTEMPTS")
    # How long a process's claim on a delivery lasts without its heartbeat: the
    # deliveries of a process that died are taken over after at most this long.
    delivery_lease_seconds: float = Field(default=30, gt=0, alias="DELIVERY_LEASE_SECONDS")
    # Local webhooks (as Probot's): a smee.io-style channel Compound reads
    # deliveries from, for a machine GitHub cannot reach (bot/proxy.py).
    webhook_proxy_url: str | None = Field(default=None, alias="WEBHOOK_PROXY_URL")
    # Catch-up redelivery (bot/redeliver.py): on start, deliveries of the last
    # REDELIVER_WINDOW_HOURS that failed or never reached the store are asked
    # for again, then every REDELIVER_INTERVAL seconds; at most REDELIVER_MAX a pass.
    redeliver: Literal["on", "off"] = Field(default="on", alias="REDELIVER")
    redeliver_window_hours: float = Field(default=72, gt=0, le=72, alias="REDELIVER_WINDOW_HOURS")
    redeliver_interval: float = Field(default=900, gt=0, alias="REDELIVER_INTERVAL")
    redeliver_max: int = Field(default=50, ge=1, le=1000, alias="REDELIVER_MAX")
    # When GitHub is down (bot/github/breaker.py): after this many failed requests
    # within 60 s, stop calling it for GITHUB_BREAKER_COOLDOWN seconds (doubling
    # up to 2 min while it stays down); deliveries wait meanwhile. 0: never open.
    github_breaker_threshold: int = Field(default=5, ge=0, alias="GITHUB_BREAKER_THRESHOLD")
    github_breaker_cooldown: float = Field(default=15, gt=0, le=120, alias="GITHUB_BREAKER_COOLDOWN")
    # A repo's `.github/compound.yml` is read again after this many seconds (a
    # push that changes it drops it at once); 0: read it for every label.
    config_cache_seconds: float = Field(default=600, ge=0, alias="CONFIG_CACHE_SECONDS")
    # Retention (bot/retention.py, docs/operations.md#retention). Deliveries are
    # kept at least 72 h whatever these say (GitHub redelivers for ~3 days and
    # the delivery id deduplicates); pending ones are never removed.
    delivery_retention_days: float = Field(default=30, gt=0, alias="DELIVERY_RETENTION_DAYS")
    failed_delivery_retention_days: float = Field(default=90, gt=0, alias="FAILED_DELIVERY_RETENTION_DAYS")
    # Events of sessions ended this long ago lose their bulky fields; 0: never.
    events_compact_days: float = Field(default=30, ge=0, alias="EVENTS_COMPACT_DAYS")
    # Seconds between two retention passes of a worker process; 0: no pass (`compound db prune` still works).
    retention_interval: float = Field(default=3600, ge=0, alias="RETENTION_INTERVAL")
    # DATA_DIR/events.jsonl is rotated past this size (0: never), keeping EVENTS_KEEP rotated files.
    events_max_mb: float = Field(default=100, ge=0, alias="EVENTS_MAX_MB")
    events_keep: int = Field(default=5, ge=1, le=100, alias="EVENTS_KEEP")

    @field_validator("log_level", "log_format", "agent_sandbox", "agent_network", "redeliver", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("webhook_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator(
        "app_id",
        "private_key_path",
        "host",
        "ghe_host",
        "agent_command",
        "agent_model",
        "database_url",
        "env_file",
        "report_digest_repo",
        "webhook_proxy_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("agent_network_allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        for entry in filter(None, (e.strip() for e in value.split(","))):
            if not ALLOW_ENTRY.fullmatch(entry):
                raise ValueError(
                    f"{entry!r} is not a domain (e.g. api.anthropic.com, *.npmjs.org),"
                    " an address, or one of those with :port (1-65535) or :*"
                )
            from bot.agents.netproxy import allow_entry  # here: importing bot.agents costs every command ~7 ms

            ports = allow_entry(entry)[1]  # what the egress proxy will read it as
            if ports is not None and not all(1 <= port <= 65535 for port in ports):
                raise ValueError(f"{entry!r}: the port must be 1-65535")
        return value

    @field_validator("report_digest_interval")
    @classmethod
    def _digest_interval(cls, value: str) -> str:
        digest_interval(value)  # raises ValueError with what it accepts
        return value.strip().lower()

    @model_validator(mode="after")
    def _agent_command_needed(self) -> Settings:
        if self.agent_backend == "command" and not self.agent_command:
            raise ValueError("AGENT_COMMAND is required when AGENT_BACKEND=command")
        return self

    # -- derived values ---------------------------------------------------

    @property
    def listen_host(self) -> str:
        if self.host:
            return self.host
        return "0.0.0.0" if self.app_id is not None else "127.0.0.1"

    @property
    def credentials_file(self) -> Path:
        """The dotenv file the manifest flow writes: ENV_FILE, else DATA_DIR/.env."""
        return self.env_file if self.env_file is not None else self.data_dir / ".env"

    @property
    def api_base_url(self) -> str:
        if self.ghe_host:
            return f"{self.ghe_protocol}://{self.ghe_host}/api/v3"
        return "https://api.github.com"

    @property
    def git_base_url(self) -> str:
        if self.ghe_host:
            return f"{self.ghe_protocol}://{self.ghe_host}"
        return "https://github.com"

    @property
    def web_base_url(self) -> str:
        return self.git_base_url

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL for the store."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'compound.db').resolve()}"
        return async_database_url(url)

    @property
    def digest_period(self) -> timedelta:
        return digest_interval(self.report_digest_interval)

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.jsonl"

    def private_key_pem(self) -> str | None:
        """The App's PEM key, from PRIVATE_KEY or the file PRIVATE_KEY_PATH names."""
        if self.private_key is not None:
            # Operators often paste the key with literal "\n" into one line.
            return self.private_key.get_secret_value().replace("\\n", "\n")
        if self.private_key_path is not None:
            try:
                return self.private_key_path.read_text()
            except OSError as exc:
                raise SettingsError(f"PRIVATE_KEY_PATH: cannot read {self.private_key_path}: {exc.strerror}") from exc
        return None

    def agent_passthrough_names(self) -> list[str]:
        return [n.strip() for n in self.agent_env_passthrough.split(",") if n.strip()]

    @property
    def github_configured(self) -> bool:
        return self.app_id is not None and (self.private_key is not None or self.private_key_path is not None)


def async_database_url(url: str) -> str:
    """Map a plain database URL onto the async driver SQLAlchemy needs."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning a validation error into one clear line.

    Read in this order, each over the one before: `./.env`, the credentials
    file the manifest flow wrote (`credentials_file`, found with the first
    two), the environment. An explicit `_env_file` (tests) replaces the files.
    """
    try:
        # The overrides are validated by pydantic at runtime, not typed per field here.
        settings = Settings(**overrides)  # type: ignore[arg-type]
        if "_env_file" in overrides:
            return settings
        written = settings.credentials_file
        try:
            if not written.is_file():
                return settings
            written.open("rb").close()  # unreadable: say so here, not deep in pydantic
        except OSError as exc:
            name = "ENV_FILE" if settings.env_file is not None else "DATA_DIR"
            raise SettingsError(f"{name}: cannot read {written}: {exc.strerror}") from None
        files = (Path(".env"), written)
        # `_env_file` is a parameter of BaseSettings.__init__, not a field: mypy's
        # dataclass_transform view of Settings knows only the fields.
        return Settings(_env_file=files, **overrides)  # type: ignore[call-arg, arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        name = str(loc[0]).upper() if loc else "settings"
        message = err.get("msg", "invalid")
        value = err.get("input")
        shown = (
            ""
            if name in {"PRIVATE_KEY", "WEBHOOK_SECRET", "SENTRY_DSN"} or isinstance(value, dict)
            else f" (got {value!r})"
        )
        raise SettingsError(f"{name}: {message}{shown}") from None
