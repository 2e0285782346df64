"""The issue as it was when the session was triggered, and one notice when it is edited since.

- `sessions.issue_body`: the issue's description as the trigger's payload (the
  label, or the `/agent` comment) carried it. Every round's prompt quotes this
  text, whatever edits come later: the maintainer started the agent on what
  they read then, not on what anyone writes afterwards. Sessions from before
  are filled in from their first round's context, where Compound kept it so
  far; NULL means there was none there either.
- `sessions.issue_edit_noticed_at`: when Compound told the issue that the
  session keeps working from that text. Set once, atomically, so the notice is
  posted once per session however many edits (or redeliveries) arrive.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-11
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("issue_body", sa.Text))
        batch.add_column(sa.Column("issue_edit_noticed_at", TS))
    _backfill()


def _backfill() -> None:
    bind = op.get_bind()
    sessions = sa.table("sessions", sa.column("id", sa.String), sa.column("issue_body", sa.Text))
    rounds = sa.table(
        "rounds", sa.column("session_id", sa.String), sa.column("number", sa.Integer), sa.column("context", sa.Text)
    )
    first = bind.execute(sa.select(rounds.c.session_id, rounds.c.context).where(rounds.c.number == 1)).all()
    for session_id, context in first:
        try:
            body = json.loads(context or "{}").get("issue_body")
        except (ValueError, AttributeError):
            continue
        if isinstance(body, str):
            bind.execute(sa.update(sessions).where(sessions.c.id == session_id).values(issue_body=body))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("issue_edit_noticed_at")
        batch.drop_column("issue_body")
