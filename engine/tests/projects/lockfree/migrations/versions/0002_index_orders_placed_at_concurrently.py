"""an index on a busy table, built concurrently

CREATE INDEX CONCURRENTLY cannot run inside a transaction: the autocommit block commits what came
before and runs it on the same session (lock_timeout and statement_timeout still set). A build that
failed or was killed leaves an INVALID index; dropping it first makes the revision safe to run again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_orders_placed_at", table_name="orders", postgresql_concurrently=True, if_exists=True)
        op.create_index("ix_orders_placed_at", "orders", ["placed_at"], postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_orders_placed_at", table_name="orders", postgresql_concurrently=True, if_exists=True)
