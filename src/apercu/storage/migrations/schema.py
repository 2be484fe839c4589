"""What start-up and `apercu db` do with a database's schema: create it, upgrade it, or refuse to run on it.

An empty database is created at head. One from before the schema was versioned is stamped at the revision its
columns match. A schema behind head is upgraded on SQLite (the embedded catalog, one machine, whose processes are
all this code); on PostgreSQL, shared by web and worker machines that may not all run this version yet, a process
refuses to start (`SchemaBehind`) until `apercu db upgrade` migrates it. A revision this code does not know is
`SchemaUnknown`. Processes starting together take turns (`_schema_transaction`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext

from apercu.storage import migrations
from apercu.storage.catalog.engine import sqlite_file
from apercu.storage.catalog.tables import metadata_obj
from apercu.storage.sqlite_lock import writer_lock

SCHEMA_ATTEMPTS = 5
SCHEMA_LOCK = 0x61706572  # PostgreSQL advisory lock class of the schema's creation and upgrades ("aper")


class SchemaError(RuntimeError):
    """The catalog's schema is not one this version of apercu runs on, and starting up does not change that."""


class SchemaBehind(SchemaError):
    """An older schema that this process does not migrate by itself (PostgreSQL: `apercu db upgrade` does)."""

    def __init__(self, current: str, expected: str) -> None:
        super().__init__(
            f"the catalog's schema is at revision {current}, this version of apercu expects revision {expected}: "
            "run `apercu db upgrade` (with this deployment's APERCU_DATABASE_URL) to migrate it, then start again"
        )
        self.current = current
        self.expected = expected


class SchemaUnknown(SchemaError):
    """A revision this code does not know (a newer apercu migrated the catalog), or unversioned tables that match
    no revision."""


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # None: no catalog tables (an empty database)
    versioned: bool  # the revision is recorded (False: empty, or tables from before the schema was versioned)
    head: str  # the revision this code runs on

    @property
    def at_head(self) -> bool:
        return self.versioned and self.revision == self.head


def create_schema(engine: sa.Engine) -> None:
    """At start-up: bring the schema to this code's revision (`migrations.head()`), or refuse to start (see the
    module docstring)."""
    migrate(engine, upgrade=engine.dialect.name == "sqlite")


def migrate(engine: sa.Engine, upgrade: bool = True) -> tuple[str | None, str]:
    """Create or (with `upgrade`) upgrade the schema to head; (revision before, revision now), None before
    for an empty database. SchemaBehind without `upgrade` when the schema is older.

    Each attempt is one transaction, DDL included (SQLite's too), so an interrupted upgrade leaves the schema
    as it was. A process that is not this code (an older apercu creating its tables) can still race with it:
    going again then sees what that process did."""
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with _schema_transaction(engine) as conn:
                return _to_head(conn, upgrade)
        except sa.exc.DatabaseError:
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def schema_state(engine: sa.Engine) -> SchemaState:
    """Where the schema stands, changing nothing (SchemaUnknown if it is not at a known revision)."""
    with engine.connect() as conn:
        return _state(conn)


@contextlib.contextmanager
def _schema_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One transaction, taken by one process at a time: on SQLite, behind the writer lock and begun
    IMMEDIATE (pysqlite would otherwise run DDL outside any transaction); on PostgreSQL, under a transaction
    advisory lock of the schema (search_path) the catalog lives in, so that processes starting together on an
    empty database do not all create the tables, and none runs on a schema being upgraded."""
    with writer_lock(sqlite_file(engine)), engine.connect() as conn, conn.begin():
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:lock, hashtext(coalesce(current_schema(), '')))"),
                {"lock": SCHEMA_LOCK},
            )
        yield conn


def _state(conn: sa.Connection) -> SchemaState:
    head = migrations.head()
    recorded = MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE}).get_current_revision()
    if recorded is not None and not migrations.known(recorded):
        raise SchemaUnknown(
            f"the catalog's schema is at revision {recorded}, which this version of apercu does not know (it expects "
            f"revision {head}): a newer apercu migrated it; run that version, or restore a backup taken before"
        )
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if not tables & set(metadata_obj.tables):  # empty, or its tables were dropped (a version left behind is stale)
        return SchemaState(None, False, head)
    if recorded is not None:
        return SchemaState(recorded, True, head)
    unversioned = tables & migrations.UNVERSIONED_TABLES
    columns = {t: frozenset(c["name"] for c in inspector.get_columns(t)) for t in unversioned}
    revision = migrations.unversioned_revision(columns)
    if revision is None:
        found = "; ".join(f"{t}: {', '.join(sorted(names))}" for t, names in sorted(columns.items()))
        raise SchemaUnknown(
            f"the catalog's tables were created before its schema was versioned, and match no revision ({found}); "
            f"this version of apercu expects revision {head}: bring them to a revision's columns by hand"
        )
    return SchemaState(revision, False, head)


def _to_head(conn: sa.Connection, upgrade: bool) -> tuple[str | None, str]:
    """Inside the caller's transaction: see `create_schema` and `migrate`."""
    state = _state(conn)
    if state.at_head:
        return state.head, state.head
    if state.revision is not None and state.revision != state.head and not upgrade:
        raise SchemaBehind(state.revision, state.head)
    alembic = migrations.config(conn)
    if state.revision is None:
        command.stamp(alembic, "base", purge=True)  # forget the revision of tables that were dropped, if any
    elif not state.versioned:
        command.stamp(alembic, state.revision)
    if state.revision != state.head:
        command.upgrade(alembic, "head")
    return state.revision, state.head
