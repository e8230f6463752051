"""a new enum value, committed at once

ALTER TYPE ... ADD VALUE: a value added inside a transaction cannot be used until it commits, so it
runs in an autocommit block (later revisions of the same run can use it). BEFORE/AFTER keeps the
order explicit. PostgreSQL cannot drop an enum value: the downgrade moves the rows off it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'cancelled' AFTER 'shipped'")


def downgrade() -> None:
    op.execute("UPDATE orders SET status = 'placed' WHERE status = 'cancelled'")
