"""Sessions under load (issue #11): one active session per issue, idempotent triggers, quotas.

- `uq_sessions_active_issue`: a partial unique index on `sessions (repo,
  issue_number)` over the active sessions (status not terminal), so two
  deliveries starting a session for one issue at once (`agent` and
  `agent:opus` in one burst) cannot both insert: the store, not a read
  before the insert, decides. A database that already holds two active
  sessions of one issue keeps the newest; the older ones are stopped, with
  an error that says why, before the index is made.
- `trigger_keys`: what GitHub identifies a trigger by (a comment's id, a
  label event's issue, label and time), claimed with the work it starts, so
  the same trigger under another delivery id starts nothing twice.
- `refusal_notices`: when a thread was last told its commenter may not
  trigger Compound, so a refusal is posted at most once per interval.
- `ix_rounds_started` on `rounds (started_at)` and `ix_sessions_installation`
  on `sessions (installation_id, runner_until)`: what the claim counts per
  installation (rounds started today, rounds running) it finds by index.
- `rounds.quota`: NULL, or `held` (over the installation's daily cap, waiting
  for the day to roll), or `bypass` (released by a maintainer's `/agent retry`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
# The terminal statuses (bot/store/sessions.py TERMINAL); literal SQL both stores accept.
ACTIVE = sa.text("status NOT IN ('done', 'escalated', 'failed', 'stopped')")


def upgrade() -> None:
    _stop_duplicates()
    op.create_index(
        "uq_sessions_active_issue",
        "sessions",
        ["repo", "issue_number"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_table(
        "trigger_keys",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_trigger_keys_created", "trigger_keys", ["created_at"])
    op.create_table(
        "refusal_notices",
        sa.Column("repo", sa.String(300), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_at", TS, nullable=False),
    )
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("quota", sa.String(20)))
    op.create_index("ix_rounds_started", "rounds", ["started_at"])
    op.create_index("ix_sessions_installation", "sessions", ["installation_id", "runner_until"])


def _stop_duplicates() -> None:
    """Of several active sessions of one issue, keep the newest; stop the others."""
    bind = op.get_bind()
    s = sa.table(
        "sessions",
        sa.column("id", sa.String),
        sa.column("repo", sa.String),
        sa.column("issue_number", sa.Integer),
        sa.column("status", sa.String),
        sa.column("error", sa.Text),
        sa.column("created_at", TS),
        sa.column("updated_at", TS),
        sa.column("runner", sa.String),
        sa.column("runner_until", TS),
    )
    active = s.c.status.not_in(("done", "escalated", "failed", "stopped"))
    rows = bind.execute(
        sa.select(s.c.id, s.c.repo, s.c.issue_number).where(active).order_by(s.c.created_at.desc(), s.c.id.desc())
    ).all()
    kept: set[tuple[str, int]] = set()
    stale: list[str] = []
    for session_id, repo, number in rows:
        if (repo, number) in kept:
            stale.append(session_id)
        else:
            kept.add((repo, number))
    if not stale:
        return
    now = datetime.now(UTC)
    bind.execute(
        sa.update(s)
        .where(s.c.id.in_(stale))
        .values(
            status="stopped",
            runner=None,
            runner_until=None,
            updated_at=now,
            error="stopped by migration 0012: a newer session of this issue was active too",
        )
    )
    r = sa.table("rounds", sa.column("session_id", sa.String), sa.column("status", sa.String))
    bind.execute(
        sa.update(r).where(r.c.session_id.in_(stale), r.c.status.in_(("queued", "running"))).values(status="cancelled")
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_installation", table_name="sessions")
    op.drop_index("ix_rounds_started", table_name="rounds")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("quota")
    op.drop_table("refusal_notices")
    op.drop_index("ix_trigger_keys_created", table_name="trigger_keys")
    op.drop_table("trigger_keys")
    op.drop_index("uq_sessions_active_issue", table_name="sessions")
