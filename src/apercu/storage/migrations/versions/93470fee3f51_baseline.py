"""Baseline: apercu_images as the first release created it.

Revision ID: 93470fee3f51
Revises:
Create Date: 2026-11-26

A database from before the schema was versioned, with these columns only, is stamped here (see
`apercu.storage.migrations.UNVERSIONED`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "93470fee3f51"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apercu_images",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("filename", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("uploaded_at", sa.DateTime, nullable=False),
        sa.Column("processed_at", sa.DateTime, nullable=True),
        sa.Column("enqueued_at", sa.DateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("image_metadata", sa.JSON, nullable=True),
        sa.Column("thumbnail", sa.JSON, nullable=True),
    )
    op.create_index("ix_apercu_images_newest", "apercu_images", ["uploaded_at", "id"])
    op.create_index("ix_apercu_images_status", "apercu_images", ["status"])


def downgrade() -> None:
    op.drop_index("ix_apercu_images_status", table_name="apercu_images")
    op.drop_index("ix_apercu_images_newest", table_name="apercu_images")
    op.drop_table("apercu_images")
