"""a foreign key, NOT VALID

A foreign key added as it stands reads the whole table under a lock on both tables; NOT VALID
checks only new rows. 0009 validates the old ones without blocking writes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("referrer_id", sa.BigInteger(), nullable=True))
    op.execute(
        "ALTER TABLE orders ADD CONSTRAINT fk_orders_referrer_id_customers "
        "FOREIGN KEY (referrer_id) REFERENCES customers (id) NOT VALID"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_orders_referrer_id_customers"), "orders", type_="foreignkey")
    op.drop_column("orders", "referrer_id")
