"""Resumable (tus) uploads: apercu_uploads, each upload's progress, where its bytes are, and the claim of the
request writing to it.

Revision ID: e5b8c1d4f2a7
Revises: d3a7f2c9e1b5
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5b8c1d4f2a7"
down_revision: str | Sequence[str] | None = "d3a7f2c9e1b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apercu_uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False, server_default="default"),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("filename", sa.Text, nullable=True),
        sa.Column("upload_metadata", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("handle", sa.Text, nullable=True),
        sa.Column("parts", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("flushed", sa.BigInteger, nullable=False),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("claimed_until", sa.DateTime, nullable=True),
        sa.Column("image_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_apercu_uploads_owner", "apercu_uploads", ["owner", "image_id"])
    op.create_index("ix_apercu_uploads_expires", "apercu_uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_table("apercu_uploads")
