"""Rate-limit counters kept in the catalog.

Revision ID: c8b1f4e2a7d6
Revises: c9d14e2a7b63
Create Date: 2026-12-07

apercu_rate_counts: one row per limit and caller, the count of its requests in the current fixed window, for the
rate limits of a deployment without Redis (`storage.rate_counts.CatalogCounts`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8b1f4e2a7d6"
down_revision: str | Sequence[str] | None = "c9d14e2a7b63"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apercu_rate_counts",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
    )
    op.create_index("ix_apercu_rate_counts_window", "apercu_rate_counts", ["window_start"])


def downgrade() -> None:
    op.drop_table("apercu_rate_counts")
