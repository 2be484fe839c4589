"""The catalog's schema under Alembic: what start-up does with an empty, an old, an unversioned or a newer
database, on SQLite and PostgreSQL, and `apercu db upgrade`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from apercu.storage import migrations
from apercu.storage.catalog import Catalog, Claim, ExclusiveClaims, create_engine
from apercu.storage.catalog.tables import metadata_obj
from apercu.storage.migrations.schema import (
    SCHEMA_LOCK,
    SchemaBehind,
    SchemaState,
    SchemaUnknown,
    create_schema,
    migrate,
    schema_state,
)

# What `create_all` made of the catalog's first release (git show 1851e93:src/apercu/storage/catalog.py): the
# schema before `_add_missing_columns` added apercu_images.lease_worker and the workers and idempotency tables.
OLD_SCHEMA = {
    "sqlite": [
        """CREATE TABLE apercu_images (
            id VARCHAR(32) NOT NULL,
            filename TEXT,
            status VARCHAR(16) NOT NULL,
            error TEXT,
            uploaded_at DATETIME NOT NULL,
            processed_at DATETIME,
            enqueued_at DATETIME NOT NULL,
            attempts INTEGER NOT NULL,
            lease_owner VARCHAR(64),
            lease_until DATETIME,
            image_metadata JSON,
            thumbnail JSON,
            PRIMARY KEY (id)
        )""",
        "CREATE INDEX ix_apercu_images_status ON apercu_images (status)",
        "CREATE INDEX ix_apercu_images_newest ON apercu_images (uploaded_at, id)",
    ],
    "postgresql": [
        """CREATE TABLE apercu_images (
            id VARCHAR(32) NOT NULL,
            filename TEXT,
            status VARCHAR(16) NOT NULL,
            error TEXT,
            uploaded_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            processed_at TIMESTAMP WITHOUT TIME ZONE,
            enqueued_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            attempts INTEGER NOT NULL,
            lease_owner VARCHAR(64),
            lease_until TIMESTAMP WITHOUT TIME ZONE,
            image_metadata JSON,
            thumbnail JSON,
            PRIMARY KEY (id)
        )""",
        "CREATE INDEX ix_apercu_images_status ON apercu_images (status)",
        "CREATE INDEX ix_apercu_images_newest ON apercu_images (uploaded_at, id)",
    ],
}
# An image an old worker was processing when the service was stopped for the upgrade: its lease has run out.
OLD_ROW = """INSERT INTO apercu_images (id, filename, status, error, uploaded_at, processed_at, enqueued_at, attempts,
                                       lease_owner, lease_until, image_metadata, thumbnail)
             VALUES ('0123456789abcdef0123456789abcdef', 'old.jpg', 'processing', NULL, '2020-01-01 10:00:00', NULL,
                     '2020-01-01 10:00:00', 1, 'old-task', '2020-01-01 10:02:00', '{"format": "JPEG"}', NULL)"""
OLD_ID = "0123456789abcdef0123456789abcdef"
HEAD = migrations.head()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of either kind (PostgreSQL: a schema of this test's own)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_postgres_url"))
    return f"sqlite:///{tmp_path / 'catalog.sqlite'}"


def old_catalog(url: str) -> sa.Engine:
    """The catalog as the first release left it, with one image in it."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in OLD_SCHEMA[engine.dialect.name]:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(OLD_ROW)
    return engine


def recorded_revisions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")))


def columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def schema_differences(engine: sa.Engine) -> list[object]:
    """What autogenerate would write to bring the database to the tables of catalog/tables.py ([]: nothing)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE})
        return list(compare_metadata(context, metadata_obj))


def apercu_db(*args: str, database_url: str = "", data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERCU_")}
    if database_url:
        env["APERCU_DATABASE_URL"] = database_url
    if data_dir is not None:
        env["APERCU_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "apercu", "db", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def assert_old_image_kept_and_new_schema_usable(catalog: Catalog) -> None:
    row = catalog.images.get(OLD_ID)
    assert row is not None
    assert (row.filename, row.status, row.attempts) == ("old.jpg", "processing", 1)
    assert row.uploaded_at == datetime(2020, 1, 1, 10, 0)
    assert row.image_metadata == {"format": "JPEG"}
    assert row.lease_worker is None
    # The columns and tables of the upgrade work: a lease naming its worker, a heartbeat, an idempotency key.
    catalog.workers.beat("worker-1", "host-a", 1234)
    assert catalog.workers.on_host("host-a") == [("worker-1", 1234)]
    assert catalog.leases.claim(OLD_ID, "new-task", 60, 3, worker="worker-1").outcome is Claim.CLAIMED
    assert getattr(catalog.images.get(OLD_ID), "lease_worker", None) == "worker-1"
    catalog.workers.forget("worker-1")
    assert catalog.leases.claim(OLD_ID, "other-task", 60, 3).outcome is Claim.CLAIMED  # its worker is gone: free at once
    claims = ExclusiveClaims("key-1", datetime(2000, 1, 1))
    new, holder = catalog.claims.add_image("fedcba9876543210fedcba9876543210", "new.png", claims)
    assert holder is None and getattr(catalog.claims.image_for_key("key-1", datetime(2000, 1, 1)), "id", None) == new.id


def test_sqlite_catalog_from_before_migrations_is_upgraded_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    engine = old_catalog(url)
    assert "lease_worker" not in columns(engine, "apercu_images")

    catalog = Catalog.from_url(url)
    create_schema(catalog.engine)

    assert recorded_revisions(engine) == [HEAD]
    assert "lease_worker" in columns(engine, "apercu_images")
    assert schema_differences(engine) == []
    assert_old_image_kept_and_new_schema_usable(catalog)


def test_postgres_catalog_from_before_migrations_waits_for_apercu_db_upgrade(fresh_postgres_url: str) -> None:
    engine = old_catalog(fresh_postgres_url)
    catalog = Catalog.from_url(fresh_postgres_url)

    with pytest.raises(SchemaBehind) as refused:
        create_schema(catalog.engine)
    assert (refused.value.current, refused.value.expected) == (migrations.BASELINE, HEAD)
    assert migrations.BASELINE in str(refused.value) and HEAD in str(refused.value)
    assert "apercu db upgrade" in str(refused.value)
    # Refusing changed nothing: no version recorded, no column added.
    assert not sa.inspect(engine).has_table(migrations.VERSION_TABLE)
    assert "lease_worker" not in columns(engine, "apercu_images")
    current = apercu_db("current", database_url=fresh_postgres_url)
    assert current.returncode == 0, current.stderr
    assert current.stdout.startswith(f"{migrations.BASELINE} (unversioned") and f"behind head {HEAD}" in current.stdout

    upgrade = apercu_db("upgrade", database_url=fresh_postgres_url)
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"from revision {migrations.BASELINE} to {HEAD}" in upgrade.stdout

    create_schema(catalog.engine)  # starts now
    assert recorded_revisions(engine) == [HEAD]
    assert schema_differences(engine) == []
    assert_old_image_kept_and_new_schema_usable(catalog)
    again = apercu_db("upgrade", database_url=fresh_postgres_url)
    assert again.returncode == 0 and f"already at revision {HEAD}" in again.stdout
    assert apercu_db("current", database_url=fresh_postgres_url).stdout == f"{HEAD} (head)\n"


def test_postgres_catalog_behind_head_is_refused(fresh_postgres_url: str) -> None:
    """A versioned catalog one revision behind: refused until upgraded, like an unversioned one."""
    catalog = Catalog.from_url(fresh_postgres_url)
    with catalog.engine.begin() as conn:
        command.upgrade(migrations.config(conn), migrations.BASELINE)
    with pytest.raises(SchemaBehind, match=f"at revision {migrations.BASELINE}.*expects revision {HEAD}"):
        create_schema(catalog.engine)
    assert recorded_revisions(catalog.engine) == [migrations.BASELINE]
    assert migrate(catalog.engine, upgrade=True) == (migrations.BASELINE, HEAD)
    create_schema(catalog.engine)
    assert recorded_revisions(catalog.engine) == [HEAD]


def test_sqlite_catalog_behind_head_is_upgraded_at_start(tmp_path: Path) -> None:
    catalog = Catalog.from_url(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    with catalog.engine.begin() as conn:
        command.upgrade(migrations.config(conn), migrations.BASELINE)
    assert not sa.inspect(catalog.engine).has_table("apercu_workers")
    create_schema(catalog.engine)
    assert recorded_revisions(catalog.engine) == [HEAD]
    assert sa.inspect(catalog.engine).has_table("apercu_workers")


def test_empty_database_is_created_at_head(url: str) -> None:
    catalog = Catalog.from_url(url)
    assert schema_state(catalog.engine).revision is None

    create_schema(catalog.engine)

    assert recorded_revisions(catalog.engine) == [HEAD]
    assert all(sa.inspect(catalog.engine).has_table(table) for table in metadata_obj.tables)
    state = schema_state(catalog.engine)
    assert state.at_head and state.revision == HEAD
    create_schema(catalog.engine)  # a second start changes nothing
    assert recorded_revisions(catalog.engine) == [HEAD]


def test_apercu_db_upgrade_creates_the_embedded_catalog(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert apercu_db("current", data_dir=data).stdout == f"none (empty database; head is {HEAD})\n"
    created = apercu_db("upgrade", data_dir=data)
    assert created.returncode == 0, created.stderr
    assert f"from revision none (empty database) to {HEAD}" in created.stdout
    engine = create_engine(f"sqlite:///{data / 'catalog.sqlite'}")
    assert recorded_revisions(engine) == [HEAD]
    assert apercu_db("current", data_dir=data).stdout == f"{HEAD} (head)\n"


def test_migrations_build_the_tables_of_catalog_tables(url: str) -> None:
    """Upgrading from nothing, and downgrading to nothing and back, gives exactly the tables the code declares."""
    catalog = Catalog.from_url(url)
    create_schema(catalog.engine)
    assert schema_differences(catalog.engine) == []

    with catalog.engine.begin() as conn:
        command.downgrade(migrations.config(conn), migrations.BASELINE)
    assert "lease_worker" not in columns(catalog.engine, "apercu_images")
    assert not sa.inspect(catalog.engine).has_table("apercu_workers")
    assert {i["name"] for i in sa.inspect(catalog.engine).get_indexes("apercu_images")} == {
        "ix_apercu_images_newest", "ix_apercu_images_status"}  # SQLite's copy of the table kept them
    with catalog.engine.begin() as conn:
        command.downgrade(migrations.config(conn), "base")
    assert not sa.inspect(catalog.engine).has_table("apercu_images")

    assert migrate(catalog.engine, upgrade=True) == (None, HEAD)
    assert schema_differences(catalog.engine) == []


def test_the_last_unversioned_catalog_is_recognised_and_upgraded(url: str) -> None:
    """The last schema before migrations (what every start's create_all made) is recognised as its revision and
    upgraded from there, as `apercu db upgrade` does, its rows kept."""
    engine = create_engine(url)
    with engine.begin() as conn:  # that schema, as the migrations build it, without their record
        command.upgrade(migrations.config(conn), migrations.WORKERS)
        conn.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
        conn.exec_driver_sql(OLD_ROW)
    catalog = Catalog.from_url(url)
    assert schema_state(catalog.engine) == SchemaState(migrations.WORKERS, versioned=False, head=HEAD)

    assert migrate(catalog.engine, upgrade=True) == (migrations.WORKERS, HEAD)

    assert recorded_revisions(engine) == [HEAD]
    assert catalog.images.get(OLD_ID) is not None
    assert schema_differences(engine) == []


def test_dropped_tables_are_created_again(tmp_path: Path) -> None:
    """A version row left behind by tables dropped since does not stop them being created again."""
    catalog = Catalog.from_url(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    create_schema(catalog.engine)
    metadata_obj.drop_all(catalog.engine)
    assert recorded_revisions(catalog.engine) == [HEAD]
    create_schema(catalog.engine)
    assert all(sa.inspect(catalog.engine).has_table(table) for table in metadata_obj.tables)
    assert recorded_revisions(catalog.engine) == [HEAD]


def test_catalog_at_an_unknown_revision_is_refused(url: str, tmp_path: Path) -> None:
    """A newer apercu migrated the catalog: this one must not run on it, nor 'upgrade' it."""
    catalog = Catalog.from_url(url)
    create_schema(catalog.engine)
    with catalog.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'a1b2c3d4e5f6'"))

    with pytest.raises(SchemaUnknown) as refused:
        create_schema(catalog.engine)
    assert "a1b2c3d4e5f6" in str(refused.value) and HEAD in str(refused.value)
    assert "newer apercu" in str(refused.value)
    with pytest.raises(SchemaUnknown):
        migrate(catalog.engine, upgrade=True)
    database_url = url if url.startswith("postgresql") else ""  # else the data directory's, which `url` is
    upgrade = apercu_db("upgrade", database_url=database_url, data_dir=tmp_path)
    assert upgrade.returncode == 1
    assert "a1b2c3d4e5f6" in upgrade.stderr and "Traceback" not in upgrade.stderr
    assert recorded_revisions(catalog.engine) == ["a1b2c3d4e5f6"]


def test_unversioned_tables_matching_no_revision_are_refused(tmp_path: Path) -> None:
    """A first-release catalog whose old apercu died halfway through adding the new tables and column."""
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    engine = old_catalog(url)
    metadata_obj.tables["apercu_workers"].create(engine)
    with pytest.raises(SchemaUnknown, match="match no revision.*apercu_workers: "):
        create_schema(Catalog.from_url(url).engine)
    assert not sa.inspect(engine).has_table(migrations.VERSION_TABLE)


def test_postgres_starters_wait_for_the_schema_lock(fresh_postgres_url: str) -> None:
    """Processes starting together on PostgreSQL take turns: one holding the lock keeps the others waiting."""
    catalog = Catalog.from_url(fresh_postgres_url)
    holder = create_engine(fresh_postgres_url)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            create_schema(catalog.engine)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    starter = threading.Thread(target=start)
    with holder.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:lock, hashtext(coalesce(current_schema(), '')))"),
                     {"lock": SCHEMA_LOCK})
        starter.start()
        starter.join(1.0)
        assert starter.is_alive()
        assert not sa.inspect(holder).has_table("apercu_images")
        conn.commit()  # lets go of the lock
    starter.join(30)
    assert not starter.is_alive() and errors == []
    assert recorded_revisions(holder) == [HEAD]


def test_an_upgrade_failing_halfway_changes_nothing(url: str) -> None:
    """Each start's migration is one transaction, DDL included, on SQLite too: a failure leaves no half schema."""
    catalog = Catalog.from_url(url)
    with catalog.engine.begin() as conn:
        command.upgrade(migrations.config(conn), migrations.BASELINE)
        conn.exec_driver_sql("CREATE TABLE apercu_idempotency_keys (key VARCHAR(255))")  # the upgrade's last step fails

    with pytest.raises(sa.exc.DatabaseError, match="apercu_idempotency_keys"):
        migrate(catalog.engine, upgrade=True)

    assert recorded_revisions(catalog.engine) == [migrations.BASELINE]
    assert "lease_worker" not in columns(catalog.engine, "apercu_images")
    assert not sa.inspect(catalog.engine).has_table("apercu_workers")


def test_images_processed_before_content_hashes_get_their_sha256(url: str) -> None:
    """The revision adding apercu_images.sha256 fills it from the metadata processing stored, so ?sha256= finds
    images processed before it (a phash, which older processing never computed, stays empty)."""
    engine = create_engine(url)
    digest = "ab" * 32
    with engine.begin() as conn:
        command.upgrade(migrations.config(conn), "5c1e0b7d9a21")  # the revision before content hashes
        conn.execute(sa.text(
            "INSERT INTO apercu_images (id, filename, status, uploaded_at, enqueued_at, attempts, image_metadata) "
            "VALUES (:id, 'old.jpg', 'success', '2026-01-01 10:00:00', '2026-01-01 10:00:00', 1, :meta)"
        ), {"id": OLD_ID, "meta": json.dumps({"format": "JPEG", "sha256": digest})})
    catalog = Catalog.from_url(url)
    assert migrate(catalog.engine, upgrade=True) == ("5c1e0b7d9a21", HEAD)
    assert [row.id for row in catalog.images.with_sha256(digest, 10)] == [OLD_ID]
    assert catalog.images.get(OLD_ID).phash is None
