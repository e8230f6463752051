"""NOT NULL in steps (2 of 2): VALIDATE, then SET NOT NULL

VALIDATE CONSTRAINT reads the table under SHARE UPDATE EXCLUSIVE (writes go on). SET NOT NULL then
finds the valid CHECK and skips its own scan (PostgreSQL 12 and later), so its ACCESS EXCLUSIVE
lock is brief. The CHECK stays: redundant, and dropping it is a change of its own.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders VALIDATE CONSTRAINT ck_orders_currency_not_null")
    op.alter_column("orders", "currency", existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    op.alter_column("orders", "currency", existing_type=sa.Text(), nullable=True)
