"""Deduplication: one image kept per content.

Revision ID: b41d7e93c5a0
Revises: 8d2f6a4c1b37
Create Date: 2026-11-29

apercu_contents: the SHA-256 of an original uploaded with APERCU_DEDUP=reuse and the image kept for it, claimed
in the upload's transaction so that identical uploads at the same moment end with one image.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b41d7e93c5a0"
down_revision: str | Sequence[str] | None = "8d2f6a4c1b37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apercu_contents",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("image_id", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("apercu_contents")
