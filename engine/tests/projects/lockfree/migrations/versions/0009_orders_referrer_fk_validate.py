"""the foreign key, VALIDATE

In a transaction of its own: VALIDATE takes SHARE UPDATE EXCLUSIVE on orders and ROW SHARE on
customers, so reads and writes go on while it scans.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_referrer_id_customers")


def downgrade() -> None:  # back to NOT VALID: the constraint as 0008 left it
    op.drop_constraint(op.f("fk_orders_referrer_id_customers"), "orders", type_="foreignkey")
    op.execute(
        "ALTER TABLE orders ADD CONSTRAINT fk_orders_referrer_id_customers "
        "FOREIGN KEY (referrer_id) REFERENCES customers (id) NOT VALID"
    )
