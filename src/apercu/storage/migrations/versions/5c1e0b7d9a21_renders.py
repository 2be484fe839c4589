"""Thumbnail renders asked for and not stored yet.

Revision ID: 5c1e0b7d9a21
Revises: f44a63e6e810
Create Date: 2026-11-29

apercu_renders: one row per thumbnail variant (another size or format) a client asked for, while a worker
renders it, or with the reason it could not; so that many first requests make one render.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e0b7d9a21"
down_revision: str | Sequence[str] | None = "f44a63e6e810"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apercu_renders",
        sa.Column("image_id", sa.String(32), primary_key=True),
        sa.Column("variant", sa.String(128), primary_key=True),
        sa.Column("requested_at", sa.DateTime, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("apercu_renders")
