"""Self-healing rounds: what started each round, when it may run, what it found.

- `rounds.trigger_key`: what GitHub identifies the round's cause by
  (`ci:<head sha>`, `review:<review id>`, `rebase:<base sha>:<head sha>`); unique per
  session, so redelivered or repeated events queue the round once. Rounds a
  person asked for (`/agent …`) have none.
- `rounds.trigger`: the cause as JSON (event, head, checks, reviewer, …).
- `rounds.not_before`: a round waits until then (a CI suite settling, a
  review's comments arriving one event at a time).
- `rounds.categories`: the failure categories a CI round saw (JSON list).
- `rounds.automatic`: started by an event rather than a person (counts
  against `MAX_CI_ROUNDS` / `MAX_REVIEW_ROUNDS`).
- `sessions.hold_head`: a head someone else pushed; Compound starts no
  automatic round on it.
- `sessions.escalated_at`: when Compound last called a human in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("trigger_key", sa.String(200)))
        batch.add_column(sa.Column("trigger", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("not_before", TS))
        batch.add_column(sa.Column("categories", sa.Text))
        batch.add_column(sa.Column("automatic", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ux_rounds_session_trigger", "rounds", ["session_id", "trigger_key"], unique=True)
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("hold_head", sa.String(64)))
        batch.add_column(sa.Column("escalated_at", TS))
    op.create_index("ix_sessions_repo_head", "sessions", ["repo", "head_sha"])
    op.create_index("ix_sessions_repo_base", "sessions", ["repo", "base_branch"])


def downgrade() -> None:
    op.drop_index("ix_sessions_repo_base", "sessions")
    op.drop_index("ix_sessions_repo_head", "sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("escalated_at")
        batch.drop_column("hold_head")
    op.drop_index("ux_rounds_session_trigger", "rounds")
    with op.batch_alter_table("rounds") as batch:
        for name in ("automatic", "categories", "not_before", "trigger", "trigger_key"):
            batch.drop_column(name)
