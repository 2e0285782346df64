"""Table definitions (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    text,
)

from bot.store.payloads import pack, unpack


class Payload(TypeDecorator[bytes]):
    """A delivery's body as bytes in Python; stored per `bot.store.payloads`."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Any) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return pack(value)  # a BLOB in the TEXT column: SQLite keeps it as it is
        return value.decode()

    def process_result_value(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else unpack(value)


metadata = MetaData()

# One row per webhook delivery GitHub sent us, stored before we answer 202.
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", String(100), primary_key=True),
    Column("event", String(100), nullable=False),
    Column("action", String(100)),
    Column("installation_id", BigInteger),
    Column("repo", String(300)),
    # The raw JSON body exactly as signed, so a replay verifies byte for byte
    # (lz4-compressed on SQLite: see bot/store/payloads.py). SQLite rows
    # written since migration 0004 keep it in `delivery_payloads` instead
    # (`payload_id`; `payload` is empty): see bot/store/deliveries.py.
    Column("payload", Payload, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # pending -> processed | failed | skipped (skip_reason says why)
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    # The process that currently owns the delivery, and until when.
    Column("claimed_by", String(100)),
    Column("claimed_until", DateTime(timezone=True)),
    # JSON list of handler names that still have to succeed (NULL = all).
    Column("pending_handlers", Text),
    Column("last_error", Text),
    Column("processed_at", DateTime(timezone=True)),
    Column("payload_id", BigInteger),
    Column("skip_reason", Text),
)
Index("ix_deliveries_status_next", deliveries.c.status, deliveries.c.next_attempt_at)
# Retention walks old deliveries by this key (migration 0013, bot/store/retention.py).
Index("ix_deliveries_received", deliveries.c.received_at, deliveries.c.delivery_id)

# SQLite: the bodies, apart from the rows that change after the insert, so the
# processed mark rewrites a 200-byte row instead of one carrying a 2.7 KB body.
# Keyed by an integer that only grows (SQLite's rowid), so it is appended to,
# never searched when written. Unused on PostgreSQL, whose TOAST already keeps
# large values out of the row.
delivery_payloads = Table(
    "delivery_payloads",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False),
    Column("payload", Payload, nullable=False),
)

installations = Table(
    "installations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("account_login", String(200), nullable=False),
    Column("account_type", String(50)),
    Column("repository_selection", String(20)),
    Column("suspended", Boolean, nullable=False, server_default=false()),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

repositories = Table(
    "repositories",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("installation_id", BigInteger, nullable=False, index=True),
    Column("full_name", String(300), nullable=False, index=True),
    Column("private", Boolean, nullable=False, server_default=false()),
    Column("removed", Boolean, nullable=False, server_default=false()),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# An agent session: one issue, one branch, one PR, several rounds.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("repo", String(300), nullable=False),
    Column("installation_id", BigInteger, nullable=False),
    Column("issue_number", Integer, nullable=False),
    Column("issue_title", Text, nullable=False, server_default=""),
    Column("pr_number", Integer),
    Column("branch", String(300), nullable=False),
    Column("base_branch", String(300)),
    Column("head_sha", String(64)),
    Column("status", String(20), nullable=False),
    Column("model", String(200)),
    Column("backend", String(50), nullable=False),
    Column("triggered_by", String(200), nullable=False),
    Column("config", Text, nullable=False, server_default="{}"),
    Column("ci_rounds", Integer, nullable=False, server_default="0"),
    Column("review_rounds", Integer, nullable=False, server_default="0"),
    Column("outcome", String(20)),
    Column("error", Text),
    Column("runner", String(100)),
    Column("runner_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # A head someone other than Compound pushed: no automatic round on it.
    Column("hold_head", String(64)),
    Column("escalated_at", DateTime(timezone=True)),
    # The issue's description as the trigger saw it (migration 0006): every
    # round quotes this, not the issue as it reads now. NULL: from before 0006.
    Column("issue_body", Text),
    # When Compound said on the issue that it does not follow edits (once).
    Column("issue_edit_noticed_at", DateTime(timezone=True)),
)
# One active session per issue (migration 0012): the store refuses the second
# insert, whatever the deliveries racing to start one. The statuses are
# bot/store/sessions.py's TERMINAL.
_ACTIVE = text("status NOT IN ('done', 'escalated', 'failed', 'stopped')")
# What the claim counts per installation (migration 0012): its rounds running.
Index("ix_sessions_installation", sessions.c.installation_id, sessions.c.runner_until)
Index(
    "uq_sessions_active_issue",
    sessions.c.repo,
    sessions.c.issue_number,
    unique=True,
    sqlite_where=_ACTIVE,
    postgresql_where=_ACTIVE,
)

rounds = Table(
    "rounds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(40), ForeignKey("sessions.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("instructions", Text, nullable=False, server_default=""),
    Column("context", Text, nullable=False, server_default="{}"),
    Column("requested_by", String(200)),
    Column("model", String(200)),
    Column("prompt_variant", String(100)),
    Column("stop_requested", Boolean, nullable=False, server_default=false()),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("head_before", String(64)),
    Column("head_after", String(64)),
    Column("check_run_id", BigInteger),
    Column("exit_code", Integer),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cost_usd", Float),
    Column("files_changed", Integer),
    Column("summary", Text),
    Column("log_tail", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # What started the round (migration 0005): a key unique per session for
    # event-started rounds, so a redelivered or repeated event queues it once.
    Column("trigger_key", String(200)),
    Column("trigger", Text, nullable=False, server_default="{}"),
    Column("not_before", DateTime(timezone=True)),
    Column("categories", Text),
    Column("automatic", Boolean, nullable=False, server_default=false()),
    # The learning loop (migration 0007): the lessons the round's prompt carried
    # and held out (JSON {"carried": [ids], "held_out": [ids]}), and how its
    # prompt variant and model were chosen (JSON: the posteriors, the reason).
    Column("lessons", Text),
    Column("choice", Text),
    # Quotas (migration 0012, bot/sessions/quotas.py): NULL; `held` while the
    # installation is over its daily cap; `bypass` once a maintainer retried it.
    Column("quota", String(20)),
)
# The day's rounds (migration 0012): the daily quota and fairness look only at them.
Index("ix_rounds_started", rounds.c.started_at)

session_events = Table(
    "session_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("session_id", String(40), nullable=False),
    Column("type", String(50), nullable=False),
    Column("data", Text, nullable=False, server_default="{}"),
)

# Ended sessions whose events retention compacted, and when (migration 0013):
# a session changed since (resumed, ended again) is compacted again.
session_compactions = Table(
    "session_compactions",
    metadata,
    Column("session_id", String(40), primary_key=True),
    Column("compacted_at", DateTime(timezone=True), nullable=False),
)


# One row per ended session (docs/learning.md): written when it ends, rewritten
# if it ends again (an escalated session resumed and merged).
outcomes = Table(
    "outcomes",
    metadata,
    Column("session_id", String(40), primary_key=True),
    Column("repo", String(300), nullable=False),
    Column("installation_id", BigInteger, nullable=False),
    Column("issue_number", Integer, nullable=False),
    Column("pr_number", Integer),
    # merged | closed | escalated | failed | stopped
    Column("outcome", String(20), nullable=False),
    Column("first_try", Boolean, nullable=False),
    Column("ci_rounds", Integer, nullable=False),
    Column("review_rounds", Integer, nullable=False),
    Column("rebase_rounds", Integer, nullable=False),
    Column("categories", Text, nullable=False, server_default="[]"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("pr_opened_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("model", String(200)),
    Column("backend", String(50), nullable=False),
    Column("prompt_template", String(100)),
    Column("prompt_variant", String(100)),
    Column("task_kind", String(50), nullable=False),
    Column("labels", Text, nullable=False, server_default="[]"),
    Column("files", Text, nullable=False, server_default="[]"),
    Column("areas", Text, nullable=False, server_default="[]"),
    Column("lessons", Text, nullable=False, server_default="[]"),
    Column("held_out", Text, nullable=False, server_default="[]"),
)
Index("ix_outcomes_ended", outcomes.c.ended_at)
Index("ix_outcomes_repo_ended", outcomes.c.repo, outcomes.c.ended_at)

# Guidance drawn from sessions, put into the prompts of sessions in its scope.
lessons = Table(
    "lessons",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # What the miner found (e.g. `ci:octo/app:src:lint:ruff check .`): one lesson per pattern.
    Column("key", String(500), nullable=False, unique=True),
    Column("text", Text, nullable=False),
    Column("repo", String(300), nullable=False),
    Column("area", String(300)),
    Column("label", String(200)),
    Column("task_kind", String(50)),
    Column("source", String(20), nullable=False),  # mined | reflect | manual
    Column("status", String(20), nullable=False),  # active | retired
    Column("pinned", Boolean, nullable=False, server_default=false()),
    Column("evidence", Text, nullable=False, server_default="[]"),  # session ids
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True)),
)
Index("ix_lessons_repo_status", lessons.c.repo, lessons.c.status)

# Which ended sessions carried a lesson and which were held out of it: the
# evidence that keeps or retires it.
lesson_trials = Table(
    "lesson_trials",
    metadata,
    Column("lesson_id", Integer, primary_key=True, autoincrement=False),
    Column("session_id", String(40), primary_key=True),
    Column("carried", Boolean, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=False),
)

# Each prompt variant a session's rounds used, scored: first-try success for
# the task round's variant, merged for a follow-up round's (docs/learning.md).
variant_trials = Table(
    "variant_trials",
    metadata,
    Column("session_id", String(40), primary_key=True),
    Column("round_kind", String(20), primary_key=True),
    Column("variant", String(100), primary_key=True),
    Column("repo", String(300), nullable=False),
    Column("task_kind", String(50), nullable=False),
    Column("success", Boolean, nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=False),
)
Index("ix_variant_trials_kind", variant_trials.c.round_kind, variant_trials.c.task_kind)

# Catch-up redelivery (bot/redeliver.py): each delivery GitHub was asked to
# send again, by GUID (X-GitHub-Delivery), so no later pass or restart asks twice.
redelivery_requests = Table(
    "redelivery_requests",
    metadata,
    Column("guid", String(100), primary_key=True),
    Column("hook_delivery_id", BigInteger, nullable=False),
    Column("event", String(64)),
    Column("reason", String(20), nullable=False),
    Column("asked_at", DateTime(timezone=True), nullable=False),
)

# Triggers by what GitHub identifies them with (migration 0012): a comment's
# id, a label event's issue, label and time. Claimed with the work it starts,
# so one trigger delivered twice (under any delivery id) starts it once.
trigger_keys = Table(
    "trigger_keys",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_trigger_keys_created", trigger_keys.c.created_at)

# When a thread was last told its commenter may not trigger Compound
# (migration 0012): one refusal per REFUSAL_INTERVAL per thread.
refusal_notices = Table(
    "refusal_notices",
    metadata,
    Column("repo", String(300), primary_key=True),
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
)
