"""API keys with an identity, kept in the catalog.

Revision ID: c8e2b5d17f40
Revises: a3c5e9f1d2b4
Create Date: 2026-12-07

apercu_api_keys: one row per key `apercu keys create` made (its name, tenant, scopes and the SHA-256 of the key,
never the key), revoked by `apercu keys revoke` (the row stays, with `revoked_at`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8e2b5d17f40"
down_revision: str | Sequence[str] | None = "a3c5e9f1d2b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apercu_api_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("apercu_api_keys")
