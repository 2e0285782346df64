"""Agent sessions, their rounds, and the event log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("repo", sa.String(300), nullable=False),
        sa.Column("installation_id", sa.BigInteger, nullable=False),
        sa.Column("issue_number", sa.Integer, nullable=False),
        sa.Column("issue_title", sa.Text, nullable=False, server_default=""),
        sa.Column("pr_number", sa.Integer),
        sa.Column("branch", sa.String(300), nullable=False),
        sa.Column("base_branch", sa.String(300)),
        sa.Column("head_sha", sa.String(64)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("backend", sa.String(50), nullable=False),
        sa.Column("triggered_by", sa.String(200), nullable=False),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
        sa.Column("ci_rounds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("review_rounds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("outcome", sa.String(20)),
        sa.Column("error", sa.Text),
        # The process running one of its rounds, and until when (heartbeat lease):
        # at most one round per session (and so per branch) runs at a time.
        sa.Column("runner", sa.String(100)),
        sa.Column("runner_until", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_sessions_repo_issue", "sessions", ["repo", "issue_number"])
    op.create_index("ix_sessions_repo_pr", "sessions", ["repo", "pr_number"])
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(40), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("instructions", sa.Text, nullable=False, server_default=""),
        sa.Column("context", sa.Text, nullable=False, server_default="{}"),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("model", sa.String(200)),
        sa.Column("prompt_variant", sa.String(100)),
        sa.Column("stop_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("head_before", sa.String(64)),
        sa.Column("head_after", sa.String(64)),
        sa.Column("check_run_id", sa.BigInteger),
        sa.Column("exit_code", sa.Integer),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_usd", sa.Float),
        sa.Column("files_changed", sa.Integer),
        sa.Column("summary", sa.Text),
        sa.Column("log_tail", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_rounds_session_status", "rounds", ["session_id", "status"])
    op.create_index("ix_rounds_status", "rounds", ["status"])
    op.create_table(
        "session_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_session_events_session", "session_events", ["session_id"])


def downgrade() -> None:
    op.drop_table("session_events")
    op.drop_table("rounds")
    op.drop_table("sessions")
