"""Uploads by URL: apercu_images.source_url, where the worker fetches the original of such an image from.

Revision ID: d3a7f2c9e1b5
Revises: c8b1f4e2a7d6
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d3a7f2c9e1b5"
down_revision: str | Sequence[str] | None = "c8b1f4e2a7d6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apercu_images") as batch:
        batch.add_column(sa.Column("source_url", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("apercu_images") as batch:
        batch.drop_column("source_url")
