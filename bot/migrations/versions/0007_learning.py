"""The learning loop: outcomes, lessons and their trials, what each round carried.

- `outcomes`: one row per ended session (merged, closed, escalated, failed,
  stopped) with its figures: first-try success, rounds by kind, failure
  categories, times, tokens and cost, model, prompt variant, task kind,
  labels, files and areas touched, lessons carried and held out.
- `lessons`: guidance mined from sessions (or written by a maintainer),
  scoped to a repo and optionally a path area, a label or a task kind.
- `lesson_trials`: per lesson, each ended session in its scope, with or
  without it (the holdout), and whether it succeeded first try.
- `variant_trials`: each prompt variant a session used, scored.
- `rounds.lessons`, `rounds.choice`: what a round's prompt carried and held
  out, and how its variant (and model) were picked.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("lessons", sa.Text))
        batch.add_column(sa.Column("choice", sa.Text))
    op.create_table(
        "outcomes",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("repo", sa.String(300), nullable=False),
        sa.Column("installation_id", sa.BigInteger, nullable=False),
        sa.Column("issue_number", sa.Integer, nullable=False),
        sa.Column("pr_number", sa.Integer),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("first_try", sa.Boolean, nullable=False),
        sa.Column("ci_rounds", sa.Integer, nullable=False),
        sa.Column("review_rounds", sa.Integer, nullable=False),
        sa.Column("rebase_rounds", sa.Integer, nullable=False),
        sa.Column("categories", sa.Text, nullable=False, server_default="[]"),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("pr_opened_at", TS),
        sa.Column("ended_at", TS, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("model", sa.String(200)),
        sa.Column("backend", sa.String(50), nullable=False),
        sa.Column("prompt_template", sa.String(100)),
        sa.Column("prompt_variant", sa.String(100)),
        sa.Column("task_kind", sa.String(50), nullable=False),
        sa.Column("labels", sa.Text, nullable=False, server_default="[]"),
        sa.Column("files", sa.Text, nullable=False, server_default="[]"),
        sa.Column("areas", sa.Text, nullable=False, server_default="[]"),
        sa.Column("lessons", sa.Text, nullable=False, server_default="[]"),
        sa.Column("held_out", sa.Text, nullable=False, server_default="[]"),
    )
    op.create_index("ix_outcomes_ended", "outcomes", ["ended_at"])
    op.create_index("ix_outcomes_repo_ended", "outcomes", ["repo", "ended_at"])
    op.create_table(
        "lessons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(500), nullable=False, unique=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("repo", sa.String(300), nullable=False),
        sa.Column("area", sa.String(300)),
        sa.Column("label", sa.String(200)),
        sa.Column("task_kind", sa.String(50)),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("evidence", sa.Text, nullable=False, server_default="[]"),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("retired_at", TS),
    )
    op.create_index("ix_lessons_repo_status", "lessons", ["repo", "status"])
    op.create_table(
        "lesson_trials",
        sa.Column("lesson_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("carried", sa.Boolean, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("ended_at", TS, nullable=False),
    )
    op.create_table(
        "variant_trials",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("round_kind", sa.String(20), primary_key=True),
        sa.Column("variant", sa.String(100), primary_key=True),
        sa.Column("repo", sa.String(300), nullable=False),
        sa.Column("task_kind", sa.String(50), nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("ended_at", TS, nullable=False),
    )
    op.create_index("ix_variant_trials_kind", "variant_trials", ["round_kind", "task_kind"])


def downgrade() -> None:
    op.drop_index("ix_variant_trials_kind", "variant_trials")
    op.drop_table("variant_trials")
    op.drop_table("lesson_trials")
    op.drop_index("ix_lessons_repo_status", "lessons")
    op.drop_table("lessons")
    op.drop_index("ix_outcomes_repo_ended", "outcomes")
    op.drop_index("ix_outcomes_ended", "outcomes")
    op.drop_table("outcomes")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("choice")
        batch.drop_column("lessons")
