"""Tenants: every image is its uploading key's tenant's, and so are its idempotency key and its content claim.

Revision ID: c9d14e2a7b63
Revises: c8e2b5d17f40
Create Date: 2026-12-07

apercu_images.tenant (every existing row: 'default', the one tenant of a deployment without keys), indexed with
the list's order for a tenant's list; ix_apercu_images_sha256 gets the tenant and that order after the sha256 for a
tenant's ?sha256= (with the sha256 alone, SQLite chose the tenant's list index and scanned the tenant: 39 ms for
45k images of one tenant, 0.17 ms with this index; PostgreSQL uses it too).

apercu_idempotency_keys and apercu_contents get a tenant too, first in their primary keys, so that the same key or
bytes in two tenants are two images: both tables are made anew (SQLite cannot change a primary key in place),
their rows copied as the 'default' tenant's.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "c9d14e2a7b63"
down_revision: str | Sequence[str] | None = "c8e2b5d17f40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_TENANT = "default"  # (as catalog/tables.py says now: a revision keeps what it did, whatever changes later)


def _claims() -> dict[str, list[sa.Column[Any]]]:
    """Each claim table's columns but the tenant, the first of them the rest of its primary key (new objects on
    each call: a Column belongs to one table)."""
    return {
        "apercu_idempotency_keys": [
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("image_id", sa.String(32), nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
        ],
        "apercu_contents": [
            sa.Column("sha256", sa.String(64), primary_key=True),
            sa.Column("image_id", sa.String(32), nullable=False),
        ],
    }


def upgrade() -> None:
    with op.batch_alter_table("apercu_images") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=False, server_default=DEFAULT_TENANT))
        batch.create_index("ix_apercu_images_tenant_newest", ["tenant", "uploaded_at", "id"])
        batch.drop_index("ix_apercu_images_sha256")
        batch.create_index("ix_apercu_images_sha256", ["sha256", "tenant", "uploaded_at", "id"])
    for table, columns in _claims().items():
        _remake(table, [_tenant(), *columns])


def downgrade() -> None:
    """Only the 'default' tenant's claims are kept: others' could collide without their tenant."""
    for table, columns in _claims().items():
        _remake(table, columns, f"WHERE tenant = '{DEFAULT_TENANT}'")
    with op.batch_alter_table("apercu_images") as batch:
        batch.drop_index("ix_apercu_images_tenant_newest")
        batch.drop_index("ix_apercu_images_sha256")
        batch.create_index("ix_apercu_images_sha256", ["sha256"])
        batch.drop_column("tenant")


def _tenant() -> sa.Column[Any]:
    return sa.Column("tenant", sa.String(64), nullable=False, server_default=DEFAULT_TENANT, primary_key=True)


def _remake(table: str, columns: list[sa.Column[Any]], where: str = "") -> None:
    """The table with these columns, its rows copied (the columns both have; a new tenant column takes its default);
    on PostgreSQL its primary key keeps the name the table's creation gives it (`<table>_pkey`)."""
    kept = ", ".join(c.name for c in columns if c.name != "tenant")
    op.create_table(f"{table}_new", *columns)
    op.execute(f"INSERT INTO {table}_new ({kept}) SELECT {kept} FROM {table} {where}")
    op.drop_table(table)
    op.rename_table(f"{table}_new", table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {table}_new_pkey TO {table}_pkey")
