"""What the renders keep, for the sweep that bounds it.

Revision ID: a3c5e9f1d2b4
Revises: e7a90c2d4f18
Create Date: 2026-12-07

apercu_kept: one row per thumbnail variant or rendition a worker rendered and stored, with its size and when it
was last asked for (touched at most every few minutes), so that the sweep removes the least recently used first
once they hold more than APERCU_RENDITIONS_MAX_MB. Files rendered before this revision have no row: they stay
until their image is deleted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a3c5e9f1d2b4"
down_revision: str | Sequence[str] | None = "e7a90c2d4f18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apercu_kept",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("image_id", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.DateTime, nullable=False),
    )
    op.create_index("apercu_kept_used_at", "apercu_kept", ["used_at"])
    op.create_index("apercu_kept_image_id", "apercu_kept", ["image_id"])


def downgrade() -> None:
    op.drop_table("apercu_kept")
