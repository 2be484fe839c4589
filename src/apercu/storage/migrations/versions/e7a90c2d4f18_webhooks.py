"""Completion webhooks: an upload's callback URL, and one delivery row per URL to tell.

Revision ID: e7a90c2d4f18
Revises: b41d7e93c5a0
Create Date: 2026-11-29

apercu_images.callback_url, and apercu_deliveries (written when an image settles, then delivered and retried by
the worker; what became of each is shown in the image's JSON).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7a90c2d4f18"
down_revision: str | Sequence[str] | None = "b41d7e93c5a0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apercu_images") as batch:
        batch.add_column(sa.Column("callback_url", sa.Text, nullable=True))
    op.create_table(
        "apercu_deliveries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("image_id", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_apercu_deliveries_image", "apercu_deliveries", ["image_id"])
    op.create_index("ix_apercu_deliveries_due", "apercu_deliveries", ["status", "due_at"])


def downgrade() -> None:
    op.drop_table("apercu_deliveries")
    with op.batch_alter_table("apercu_images") as batch:
        batch.drop_column("callback_url")
