"""What an image looks like, for search: the original's SHA-256 and its perceptual hash.

Revision ID: 8d2f6a4c1b37
Revises: 5c1e0b7d9a21
Create Date: 2026-11-29

apercu_images.sha256 (indexed: GET /images?sha256=, deduplication) and apercu_images.phash (GET
/images?similar_to=). Rows processed before this revision get them from their stored metadata.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d2f6a4c1b37"
down_revision: str | Sequence[str] | None = "5c1e0b7d9a21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apercu_images") as batch:
        batch.add_column(sa.Column("sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("phash", sa.BigInteger, nullable=True))
        batch.create_index("ix_apercu_images_sha256", ["sha256"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE apercu_images SET sha256 = image_metadata->>'sha256' WHERE image_metadata IS NOT NULL")
    else:
        op.execute("UPDATE apercu_images SET sha256 = json_extract(image_metadata, '$.sha256') "
                   "WHERE image_metadata IS NOT NULL")
    # No phash before this revision computed one: those images are simply never found as similar.


def downgrade() -> None:
    with op.batch_alter_table("apercu_images") as batch:
        batch.drop_index("ix_apercu_images_sha256")
        batch.drop_column("phash")
        batch.drop_column("sha256")
