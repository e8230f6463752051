"""a nullable column, under a short lock_timeout

Adding a nullable column without a default is a catalog change, but it needs a brief ACCESS
EXCLUSIVE lock: behind a long query it would queue, and every query after it would queue behind
it. A short lock_timeout for this revision makes it give up instead; db.migrate tries again
(MIGRATION_LOCK_RETRIES).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '2s'")
    op.add_column("orders", sa.Column("currency", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "currency")
