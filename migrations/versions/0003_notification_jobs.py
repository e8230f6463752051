"""notification_jobs: the worker's queue (the worker component alone reads and writes it)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A new table: no lock on the existing ones beyond the foreign keys' brief SHARE ROW EXCLUSIVE.
    op.create_table(
        "notification_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("assignee_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), server_default="queued", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('queued', 'done')", name=op.f("ck_notification_jobs_state")),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["users.id"], name=op.f("fk_notification_jobs_assignee_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_notification_jobs_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_jobs")),
        sa.UniqueConstraint("task_id", "assignee_id", name=op.f("uq_notification_jobs_task_id_assignee_id")),
    )
    op.create_index(op.f("ix_notification_jobs_assignee_id"), "notification_jobs", ["assignee_id"])
    op.create_index(op.f("ix_notification_jobs_state_id"), "notification_jobs", ["state", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_notification_jobs_state_id"), table_name="notification_jobs")
    op.drop_index(op.f("ix_notification_jobs_assignee_id"), table_name="notification_jobs")
    op.drop_table("notification_jobs")
