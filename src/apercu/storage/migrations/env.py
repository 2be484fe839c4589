"""Alembic's entry point for the catalog's migrations (see `apercu.storage.migrations`)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from apercu.storage.catalog.tables import metadata_obj
from apercu.storage.migrations import VERSION_TABLE


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata_obj,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # autogenerate writes ALTERs that SQLite can run too
    )
    with context.begin_transaction():  # inside the caller's transaction when it began one: it commits
        context.run_migrations()


def run_on_configured_catalog() -> None:
    """Without a connection from the caller (a developer generating a revision): the catalog of APERCU_*."""
    from apercu.config import Settings
    from apercu.storage.catalog.engine import create_engine

    engine = create_engine(Settings.from_env().resolved_database_url)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the catalog's migrations run on a database connection, not as SQL scripts")
given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    run_on_configured_catalog()
