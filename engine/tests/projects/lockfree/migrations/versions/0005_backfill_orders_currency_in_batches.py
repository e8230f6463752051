"""backfill orders.currency in batches, each committed on its own

One UPDATE over a large table holds every row's lock until it ends and bloats the table at once;
batches outside a transaction keep each lock short, and a backfill killed half-way keeps its
progress (running it again picks up the rows still NULL). Offline (--sql, squawk) it is the one
UPDATE a reviewer reads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
STEP = (
    "UPDATE orders SET currency = 'EUR' WHERE id IN "
    "(SELECT id FROM orders WHERE currency IS NULL ORDER BY id LIMIT {batch} FOR UPDATE SKIP LOCKED)"
)


def upgrade() -> None:
    context = op.get_context()
    if context.as_sql:
        op.execute("UPDATE orders SET currency = 'EUR' WHERE currency IS NULL")
        return
    with context.autocommit_block():
        while op.get_bind().exec_driver_sql(STEP.format(batch=BATCH)).rowcount:
            pass


def downgrade() -> None:
    op.execute("UPDATE orders SET currency = NULL WHERE currency IS NOT NULL")
