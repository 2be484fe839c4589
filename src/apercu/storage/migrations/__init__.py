"""The catalog's schema under Alembic: `env.py` and one file per revision in `versions/`, shipped in the package.

`schema.create_schema` decides at start-up what to do with a database (create it, upgrade it, or refuse to start);
`apercu db upgrade` upgrades one (`schema.migrate`). Both run Alembic here, on the catalog's own connection, with the
revision recorded in `apercu_alembic_version` (not Alembic's default `alembic_version`, which an application
sharing the database may use for its own schema).

A new revision: change the tables in `catalog/tables.py`, then, with APERCU_DATABASE_URL (or the data directory's
SQLite catalog) at the current head, generate the file and check it by hand (it must work on SQLite, through
`op.batch_alter_table`, and on PostgreSQL)::

    python -c 'from alembic import command; from apercu.storage import migrations
    command.revision(migrations.config(), "what changed", autogenerate=True)'
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "apercu_alembic_version"

BASELINE = "93470fee3f51"  # apercu_images as the first release created it
WORKERS = "f44a63e6e810"  # + apercu_images.lease_worker, apercu_workers, apercu_idempotency_keys

# Before the schema was versioned, each start ran `create_all` and then added the columns `apercu_images` lacked:
# such a database has no version table, and its tables' columns tell which revision it is at.
_IMAGES_FIRST = frozenset({
    "id", "filename", "status", "error", "uploaded_at", "processed_at", "enqueued_at", "attempts", "lease_owner",
    "lease_until", "image_metadata", "thumbnail",
})
UNVERSIONED: Mapping[str, Mapping[str, frozenset[str]]] = {
    BASELINE: {"apercu_images": _IMAGES_FIRST},
    WORKERS: {
        "apercu_images": _IMAGES_FIRST | {"lease_worker"},
        "apercu_workers": frozenset({"id", "host", "pid", "started_at", "heartbeat_at"}),
        "apercu_idempotency_keys": frozenset({"key", "image_id", "created_at"}),
    },
}
UNVERSIONED_TABLES = frozenset(name for tables in UNVERSIONED.values() for name in tables)


def config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for these migrations; with `connection`, env.py migrates through it (inside the
    caller's transaction), without, through the catalog the environment configures (APERCU_* variables)."""
    alembic_config = Config()
    alembic_config.set_main_option("script_location", str(LOCATION).replace("%", "%%"))
    if connection is not None:
        alembic_config.attributes["connection"] = connection
    return alembic_config


@functools.cache
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    revision = script().get_current_head()
    assert revision is not None, f"no revisions in {LOCATION / 'versions'}"
    return revision


def known(revision: str) -> bool:
    return any(step.revision == revision for step in script().walk_revisions())


def unversioned_revision(columns: Mapping[str, frozenset[str]]) -> str | None:
    """The revision whose tables have exactly these columns ({table: columns}), for a database from before the
    schema was versioned; None when they match none (an upgrade interrupted between its statements, say)."""
    for revision, tables in UNVERSIONED.items():
        if columns == tables:
            return revision
    return None
