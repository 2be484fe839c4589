"""Leases name their worker; workers' heartbeats; idempotency keys.

Revision ID: f44a63e6e810
Revises: 93470fee3f51
Create Date: 2026-11-29

apercu_images.lease_worker (the worker process holding a lease, freed when it stops beating), apercu_workers
(their heartbeats) and apercu_idempotency_keys (a retried upload gets its first image).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f44a63e6e810"
down_revision: str | Sequence[str] | None = "93470fee3f51"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apercu_images") as batch:  # SQLite: a plain ADD COLUMN still, no table copy
        batch.add_column(sa.Column("lease_worker", sa.String(64), nullable=True))
    op.create_table(
        "apercu_workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "apercu_idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("image_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("apercu_idempotency_keys")
    op.drop_table("apercu_workers")
    with op.batch_alter_table("apercu_images") as batch:  # SQLite: the table is copied without the column
        batch.drop_column("lease_worker")
