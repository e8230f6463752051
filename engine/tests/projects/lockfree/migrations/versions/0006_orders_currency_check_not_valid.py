"""NOT NULL in steps (1 of 2): a CHECK constraint, NOT VALID

NOT VALID adds the constraint for new rows without reading the table (a brief lock only).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders ADD CONSTRAINT ck_orders_currency_not_null CHECK (currency IS NOT NULL) NOT VALID")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_orders_currency_not_null"), "orders", type_="check")
