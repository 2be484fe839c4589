"""The catalog: one row per image, in SQLite (embedded) or PostgreSQL, through SQLAlchemy Core.

The row is the single source of truth for an image's state. Processing claims it with a lease, so that a task
delivered twice (a retry, a broker redelivery, a recovery sweep) never does the work twice at the same time.
A lease names its task (`lease_owner`) and the worker process that runs it (`lease_worker`); workers record a
heartbeat in `apercu_workers`, so a lease whose worker stopped beating (or was found dead on its own host) is
taken over at once instead of when its time runs out. Every state change is one conditional UPDATE, which keeps
SQLite's single-writer locking short and makes races with DELETE decide cleanly.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.engine import Engine

from apercu.storage import migrations
from apercu.storage.change_feed import ChangeFeed, announce_settled, open_feed
from apercu.storage.sqlite_lock import writer_lock

metadata_obj = sa.MetaData()

images = sa.Table(
    "apercu_images",
    metadata_obj,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("filename", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("uploaded_at", sa.DateTime, nullable=False),
    sa.Column("processed_at", sa.DateTime, nullable=True),
    sa.Column("enqueued_at", sa.DateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("lease_worker", sa.String(64), nullable=True),
    sa.Column("image_metadata", sa.JSON(none_as_null=True), nullable=True),  # None is SQL NULL, not JSON null
    sa.Column("thumbnail", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),  # of the original: known once processed (at upload with dedup)
    sa.Column("phash", sa.BigInteger, nullable=True),  # metadata.phash as a signed 64-bit integer
    sa.Column("callback_url", sa.Text, nullable=True),  # the uploader's completion webhook
    sa.Index("ix_apercu_images_newest", "uploaded_at", "id"),
    sa.Index("ix_apercu_images_status", "status"),
    sa.Index("ix_apercu_images_sha256", "sha256"),
)

workers = sa.Table(
    "apercu_workers",
    metadata_obj,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),  # hostname and PID namespace: where `pid` means something
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
)

idempotency_keys = sa.Table(
    "apercu_idempotency_keys",
    metadata_obj,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("image_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Thumbnail variants a client asked for and a worker has not stored yet (a row per first request, gone once the
# render is stored), or could not render (the row keeps the reason): so that many first requests make one render.
renders = sa.Table(
    "apercu_renders",
    metadata_obj,
    sa.Column("image_id", sa.String(32), primary_key=True),
    sa.Column("variant", sa.String(128), primary_key=True),  # the thumbnail's blob key
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

# Deduplication (APERCU_DEDUP=reuse): the one image kept for each content, claimed in the upload's transaction
# so that two identical uploads at once end with one image.
contents = sa.Table(
    "apercu_contents",
    metadata_obj,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("image_id", sa.String(32), nullable=False),
)


# Completion webhooks: one row per URL to tell when an image settles, written in the settling transaction (so a
# worker dying right after cannot lose it), then delivered by its own task, retried until `delivered` or `failed`.
deliveries = sa.Table(
    "apercu_deliveries",
    metadata_obj,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("image_id", sa.String(32), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, delivered, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False),  # when its next attempt is meant to run (recovery re-sends)
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    sa.Index("ix_apercu_deliveries_image", "image_id"),
    sa.Index("ix_apercu_deliveries_due", "status", "due_at"),
)
DELIVERY_WAITING, DELIVERY_PENDING, DELIVERED, DELIVERY_FAILED = "waiting", "pending", "delivered", "failed"


@dataclass(frozen=True)
class Unique:
    """What a new image may not share with an existing one: an idempotency key (valid while created after
    `key_expired_before`), and with deduplication its bytes."""

    key: str | None = None
    key_expired_before: datetime | None = None
    sha256: str | None = None


# A worker that has not beaten for this long is dead: its leases are taken over, readiness fails without one.
WORKER_TIMEOUT = 20.0
PENDING, PROCESSING, SUCCESS, FAILURE = "pending", "processing", "success", "failure"
IN_PROGRESS = (PENDING, PROCESSING)  # an image in either is not settled yet
NEVER = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC, the form stored in both SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


class Claim(enum.Enum):
    CLAIMED = "claimed"  # this task now owns the image
    FINISHED = "finished"  # already success or failure: nothing to do
    GONE = "gone"  # deleted
    BUSY = "busy"  # another task holds a live lease
    EXHAUSTED = "exhausted"  # too many interrupted attempts


@dataclass(frozen=True)
class ClaimResult:
    outcome: Claim
    retry_in: float = 0.0


def create_engine(url: str, durable: bool = True) -> Engine:
    """An engine for the catalog; SQLite gets WAL and a busy timeout for its several processes.

    `durable=False` is for the worker: its commits (claims, results) are safe against any process crash but may
    be lost with the machine's power or the database server, which only means an image is processed again. The
    web process keeps every commit durable, because its insert is what a 202 promises."""
    url = _driver_url(url)
    dumps = functools.partial(json.dumps, allow_nan=False, separators=(",", ":"))
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, json_serializer=dumps, connect_args={"timeout": 30})
        event.listen(engine, "connect", functools.partial(sqlite_pragmas, "FULL" if durable else "NORMAL"))
        return engine
    engine = sa.create_engine(url, json_serializer=dumps, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if not durable:
        event.listen(engine, "connect", _postgres_commits_without_waiting)
    return engine


def _postgres_commits_without_waiting(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    dbapi_connection.commit()


def _driver_url(url: str) -> str:
    """Accept the plain postgresql:// form users write and pick the psycopg 3 driver we ship."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def sqlite_pragmas(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    dbapi_connection.create_function("apercu_hamming", 2, _sqlite_hamming, deterministic=True)


def dead_lease(now: datetime) -> sa.ColumnElement[bool]:
    """A processing lease nobody holds any more: its time ran out, or its worker is not among the live ones.

    A lease without a worker (written before workers were recorded) only ends with its time."""
    return _dead_lease(sa.literal(now), sa.literal(now - timedelta(seconds=WORKER_TIMEOUT)))


def _dead_lease(now: sa.ColumnElement[datetime], alive_since: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    live = sa.select(workers.c.id).where(workers.c.heartbeat_at >= alive_since)
    return sa.or_(
        images.c.lease_until < now,
        sa.and_(images.c.lease_worker.is_not(None), images.c.lease_worker.not_in(live)),
    )


# The statements of the hot paths (an upload, a `?wait`, one image's claim and outcome), built once with bound
# parameters: building a statement anew for every call cost SQLAlchemy ten to twenty times what SQLite spends
# running it (a claim: 0.5 ms, of which 0.02 in SQLite), in the web processes and in the worker alike.
_OWN = sa.and_(images.c.status == PROCESSING, images.c.lease_owner == sa.bindparam("owner"))
CLAIM = (
    images.update()
    .where(
        images.c.id == sa.bindparam("image_id"),
        sa.or_(
            images.c.status == PENDING,
            _OWN,
            sa.and_(images.c.status == PROCESSING, _dead_lease(sa.bindparam("now"), sa.bindparam("alive_since"))),
        ),
        sa.or_(_OWN, images.c.attempts < sa.bindparam("max_attempts")),
    )
    .values(
        status=PROCESSING,
        attempts=images.c.attempts + sa.case((_OWN, 0), else_=1),
        lease_owner=sa.bindparam("owner"),
        lease_worker=sa.bindparam("worker"),
        lease_until=sa.bindparam("until"),
        enqueued_at=NEVER,  # the claim consumed the message: if this lease dies, send one at once
    )
)
_OUTCOME = {
    "status": sa.bindparam("outcome", type_=images.c.status.type),
    "error": sa.bindparam("message", type_=images.c.error.type),
    "image_metadata": sa.bindparam("facts", type_=images.c.image_metadata.type),
    "thumbnail": sa.bindparam("thumb", type_=images.c.thumbnail.type),
    "processed_at": sa.bindparam("at", type_=images.c.processed_at.type),
    "sha256": sa.func.coalesce(sa.bindparam("sha256", type_=images.c.sha256.type), images.c.sha256),
    "phash": sa.bindparam("phash", type_=images.c.phash.type),
    "lease_owner": None,
    "lease_worker": None,
    "lease_until": None,
}
_UNFINISHED = sa.and_(images.c.id == sa.bindparam("image_id"), images.c.status.in_(IN_PROGRESS))
SETTLE = {  # by the task holding the lease, or by anyone (None) while the image is pending or processing
    True: images.update().where(_UNFINISHED, sa.or_(images.c.status == PENDING, _OWN)).values(**_OUTCOME),
    False: images.update().where(_UNFINISHED).values(**_OUTCOME),
}
GET = sa.select(images).where(images.c.id == sa.bindparam("image_id"))
UNSETTLED = sa.select(images.c.id).where(
    images.c.id.in_(sa.bindparam("ids", expanding=True)), images.c.status.in_(IN_PROGRESS)
)
INSERT = images.insert()


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


class Catalog:
    def __init__(self, engine: Engine, webhook_url: str = "") -> None:
        self.engine = engine
        self.webhook_url = webhook_url  # told of every image that settles (APERCU_WEBHOOK_URL), beside its own
        sqlite = engine.dialect.name == "sqlite"
        self._database = engine.url.database if sqlite else None

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A write transaction; on SQLite, behind the file's writer lock (see `storage.sqlite_lock`)."""
        with writer_lock(self._database), self.engine.begin() as conn:
            yield conn

    @classmethod
    def from_url(cls, url: str, durable: bool = True, webhook_url: str = "") -> Catalog:
        return cls(create_engine(url, durable), webhook_url)

    def create_schema(self) -> None:
        """At start-up: bring the schema to this code's revision (`migrations.head()`), or refuse to start.

        An empty database is created at head. One from before the schema was versioned is stamped at the revision
        its columns match. A schema behind head is upgraded on SQLite (the embedded catalog, one machine, whose
        processes are all this code); on PostgreSQL, shared by web and worker machines that may not all run this
        version yet, the process refuses to start (SchemaBehind) until `apercu db upgrade` migrates it. A revision
        this code does not know is SchemaUnknown. Processes starting together take turns (`_schema_transaction`)."""
        self.migrate(upgrade=self.engine.dialect.name == "sqlite")

    def migrate(self, upgrade: bool = True) -> tuple[str | None, str]:
        """Create or (with `upgrade`) upgrade the schema to head; (revision before, revision now), None before
        for an empty database. SchemaBehind without `upgrade` when the schema is older.

        Each attempt is one transaction, DDL included (SQLite's too), so an interrupted upgrade leaves the schema
        as it was. A process that is not this code (an older apercu creating its tables) can still race with it:
        going again then sees what that process did."""
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with self._schema_transaction() as conn:
                    return _to_head(conn, upgrade)
            except sa.exc.DatabaseError:
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def schema_state(self) -> SchemaState:
        """Where the schema stands, changing nothing (SchemaUnknown if it is not at a known revision)."""
        with self.engine.connect() as conn:
            return _schema_state(conn)

    @contextlib.contextmanager
    def _schema_transaction(self) -> Iterator[sa.Connection]:
        """One transaction, taken by one process at a time: on SQLite, behind the writer lock and begun
        IMMEDIATE (pysqlite would otherwise run DDL outside any transaction); on PostgreSQL, under a transaction
        advisory lock of the schema (search_path) the catalog lives in, so that processes starting together on an
        empty database do not all create the tables, and none runs on a schema being upgraded."""
        with writer_lock(self._database), self.engine.connect() as conn, conn.begin():
            if self.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.engine.dialect.name == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:lock, hashtext(coalesce(current_schema(), '')))"),
                    {"lock": SCHEMA_LOCK},
                )
            yield conn

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def add(self, image_id: str, filename: str | None, callback_url: str | None = None) -> dict[str, Any]:
        with self._begin() as conn:
            return self._insert(conn, image_id, filename, utcnow(), callback_url=callback_url)

    @staticmethod
    def _insert(
        conn: sa.Connection, image_id: str, filename: str | None, now: datetime, sha256: str | None = None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        row = {
            "id": image_id,
            "filename": filename,
            "status": PENDING,
            "uploaded_at": now,
            "enqueued_at": now,
            "attempts": 0,
            "sha256": sha256,
            "callback_url": callback_url,
        }
        conn.execute(INSERT, row)
        return {**row, "error": None, "processed_at": None, "image_metadata": None, "thumbnail": None, "phash": None}

    def get(self, image_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(GET, {"image_id": image_id}).mappings().first()
        return dict(row) if row else None

    def change_feed(self) -> ChangeFeed:
        """What pollers of settled images ask before they query (see `storage.change_feed`)."""
        return open_feed(self.engine)

    def settled_among(self, ids: list[str]) -> set[str]:
        """Those of `ids` whose processing ended (success, failure) or that were deleted."""
        with self.engine.connect() as conn:
            unsettled = set(conn.scalars(UNSETTLED, {"ids": ids}))
        return set(ids) - unsettled

    def page(self, limit: int, after: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
        """Newest first; `after` is the (uploaded_at, id) of the last row of the previous page."""
        query = sa.select(images).order_by(images.c.uploaded_at.desc(), images.c.id.desc()).limit(limit)
        if after is not None:
            stamp, last_id = after
            query = query.where(
                sa.or_(
                    images.c.uploaded_at < stamp,
                    sa.and_(images.c.uploaded_at == stamp, images.c.id < last_id),
                )
            )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def with_sha256(self, sha256: str, limit: int) -> list[dict[str, Any]]:
        """Images whose original has this SHA-256 (known once processed, or at upload with deduplication)."""
        query = sa.select(images).where(images.c.sha256 == sha256)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(images.c.uploaded_at.desc(), images.c.id.desc()).limit(limit))
            return [dict(r) for r in rows.mappings()]

    def similar(self, phash: str, max_distance: int, limit: int) -> list[tuple[dict[str, Any], int]]:
        """Processed images whose perceptual hash is within `max_distance` bits of `phash`, nearest first, with
        their distance: one scan computing the distance in the database (~10k rows in a few ms)."""
        distance = hamming(images.c.phash, phash_to_int(phash), self.engine.dialect.name).label("distance")
        query = (
            sa.select(images, distance).where(images.c.phash.is_not(None), distance <= max_distance)
            .order_by(distance, images.c.uploaded_at.desc(), images.c.id.desc()).limit(limit)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings()
            return [({k: v for k, v in r.items() if k != "distance"}, r["distance"]) for r in found]

    def claim(
        self, image_id: str, owner: str, lease_seconds: float, max_attempts: int, worker: str | None = None
    ) -> ClaimResult:
        """Take the image for processing unless it is finished, deleted, or leased to another live task.

        A lease is free when its time ran out, when it is this task's own (a retry or a redelivery), or when the
        worker that holds it is dead (see `dead_lease`). Taking an image counts an attempt, except taking back
        one's own lease: a task retried for a storage hiccup has not been interrupted."""
        now = utcnow()
        parameters = {
            "image_id": image_id, "owner": owner, "worker": worker, "max_attempts": max_attempts, "now": now,
            "alive_since": now - timedelta(seconds=WORKER_TIMEOUT), "until": now + timedelta(seconds=lease_seconds),
        }
        with self._begin() as conn:
            taken = conn.execute(CLAIM, parameters).rowcount
            if taken:
                return ClaimResult(Claim.CLAIMED)
            row = conn.execute(
                sa.select(images.c.status, images.c.lease_until, images.c.lease_owner, images.c.attempts,
                          dead_lease(now).label("dead"))
                .where(images.c.id == image_id)
            ).first()
        if row is None:
            return ClaimResult(Claim.GONE)
        if row.status in (SUCCESS, FAILURE):
            return ClaimResult(Claim.FINISHED)
        if row.status == PROCESSING and not row.dead and row.lease_owner != owner:
            return ClaimResult(Claim.BUSY, min((row.lease_until - now).total_seconds() + 1, WORKER_TIMEOUT))
        if row.attempts >= max_attempts:
            return ClaimResult(Claim.EXHAUSTED)
        return ClaimResult(Claim.BUSY, 1.0)  # the row changed between the update and this read: look again soon

    def release(self, image_id: str, owner: str, resend: bool) -> None:
        """Give a claim back: the attempt is over, the image pending again. With `resend`, the next recovery
        sweep sends it (its work could not be done for a passing reason); without, the caller claims it again."""
        with self._begin() as conn:
            conn.execute(
                images.update()
                .where(images.c.id == image_id, images.c.status == PROCESSING, images.c.lease_owner == owner)
                .values(
                    status=PENDING, lease_owner=None, lease_worker=None, lease_until=None,
                    enqueued_at=NEVER if resend else utcnow(),
                )
            )

    def finish(self, image_id: str, owner: str, image_metadata: dict[str, Any], thumbnail: dict[str, Any]) -> bool:
        """Record success under this task's lease; False when the image was deleted or is no longer ours."""
        return self._settle(image_id, owner, outcome=SUCCESS, message=None, facts=image_metadata, thumb=thumbnail)

    def fail(
        self, image_id: str, message: str, image_metadata: dict[str, Any] | None = None, owner: str | None = None
    ) -> bool:
        """Record failure with a message for the client, if the image is still unfinished and, with `owner`,
        pending or under that task's lease; False otherwise (deleted, finished, or taken by another task)."""
        return self._settle(image_id, owner, outcome=FAILURE, message=message, facts=image_metadata, thumb=None)

    def _settle(self, image_id: str, owner: str | None, **outcome: Any) -> bool:
        """Record the outcome, and in the same transaction the completion webhooks to deliver for it."""
        facts = outcome["facts"] or {}
        parameters = {
            "image_id": image_id, "owner": owner, "at": utcnow(), "sha256": facts.get("sha256"),
            "phash": phash_to_int(facts["phash"]) if "phash" in facts else None, **outcome,
        }
        with self._begin() as conn:
            settled = conn.execute(SETTLE[owner is not None], parameters).rowcount
            if settled:
                announce_settled(conn, image_id)
                self._add_deliveries(conn, image_id, parameters["at"])
            return bool(settled)

    def _add_deliveries(self, conn: sa.Connection, image_id: str, now: datetime) -> None:
        callback = conn.execute(sa.select(images.c.callback_url).where(images.c.id == image_id)).scalar()
        for url in dict.fromkeys(u for u in (callback, self.webhook_url) if u):
            conn.execute(deliveries.insert().values(
                id=uuid.uuid4().hex, image_id=image_id, url=url, status=DELIVERY_PENDING, attempts=0, due_at=now))
        waiting = (deliveries.c.image_id == image_id) & (deliveries.c.status == DELIVERY_WAITING)
        conn.execute(deliveries.update().where(waiting).values(status=DELIVERY_PENDING, due_at=now))

    def add_delivery(self, image_id: str, url: str) -> bool:
        """Another uploader's callback for an existing image (a duplicate, with deduplication): due at once when
        the image has settled (True), else waiting for it to settle (`_add_deliveries` makes it due then)."""
        now = utcnow()
        delivery_id = uuid.uuid4().hex
        with self._begin() as conn:
            conn.execute(deliveries.insert().values(
                id=delivery_id, image_id=image_id, url=url, status=DELIVERY_WAITING, attempts=0, due_at=now))
            return bool(conn.execute(_activate(deliveries.c.id == delivery_id, now)).rowcount)

    def deliveries_of(self, image_id: str) -> list[dict[str, Any]]:
        query = sa.select(deliveries).where(deliveries.c.image_id == image_id).order_by(deliveries.c.url)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).mappings().first()
        return dict(row) if row else None

    def deliveries_due(self, due_before: datetime, image_id: str | None = None) -> list[str]:
        """Pending deliveries whose attempt was due before then (of one image, or any: lost messages), each
        marked due again a minute from now so that one sweep, not every sweep, sends it."""
        where = [deliveries.c.status == DELIVERY_PENDING, deliveries.c.due_at <= due_before]
        if image_id is not None:
            where.append(deliveries.c.image_id == image_id)
        with self._begin() as conn:
            if image_id is None:  # a callback added while its image settled in a concurrent transaction
                conn.execute(_activate(deliveries.c.status == DELIVERY_WAITING, utcnow()))
            # SKIP LOCKED (PostgreSQL; SQLite's writer lock serialises anyway): two sweeps on two machines never
            # pick the same delivery, so one lost message is sent again once, not once per machine.
            due = sa.select(deliveries.c.id).where(*where).limit(500).with_for_update(skip_locked=True)
            ids = [r.id for r in conn.execute(due)]
            if ids:
                later = utcnow() + timedelta(seconds=60)
                conn.execute(deliveries.update().where(deliveries.c.id.in_(ids)).values(due_at=later))
            return ids

    def record_delivery(
        self, delivery_id: str, status: str, http_status: int | None, error: str | None, retry_in: float = 0.0
    ) -> None:
        """One attempt's result: `status` DELIVERED or DELIVERY_FAILED ends it; DELIVERY_PENDING retries it in
        `retry_in` seconds."""
        now = utcnow()
        values: dict[str, Any] = {
            "status": status, "attempts": deliveries.c.attempts + 1, "last_status": http_status,
            "last_error": error, "due_at": now + timedelta(seconds=retry_in),
        }
        if status == DELIVERED:
            values["delivered_at"] = now
        with self._begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**values))

    def delete(self, image_id: str) -> bool:
        with self._begin() as conn:
            deleted = conn.execute(images.delete().where(images.c.id == image_id)).rowcount
            conn.execute(renders.delete().where(renders.c.image_id == image_id))
            conn.execute(contents.delete().where(contents.c.image_id == image_id))
            conn.execute(deliveries.delete().where(deliveries.c.image_id == image_id))
            if deleted:
                announce_settled(conn, image_id)
            return bool(deleted)

    def request_render(self, image_id: str, variant: str, lost_before: datetime) -> tuple[str, str | None]:
        """("send", None) when the caller is to queue the render: the first request, or the last one was made
        before `lost_before` and is taken for lost; ("pending", None) while one is queued; ("failed", reason)."""
        now = utcnow()
        this = (renders.c.image_id == image_id) & (renders.c.variant == variant)
        try:
            with self._begin() as conn:
                row = conn.execute(sa.select(renders.c.error).where(this)).first()
                if row is None:
                    conn.execute(renders.insert().values(image_id=image_id, variant=variant, requested_at=now))
                    return "send", None
                if row.error is not None:
                    return "failed", row.error
                lost = renders.update().where(this, renders.c.requested_at < lost_before).values(requested_at=now)
                return ("send" if conn.execute(lost).rowcount else "pending"), None
        except sa.exc.IntegrityError:
            return "pending", None  # a concurrent first request recorded it a moment before us

    def render_done(self, image_id: str, variant: str) -> None:
        with self._begin() as conn:
            conn.execute(renders.delete().where(renders.c.image_id == image_id, renders.c.variant == variant))

    def render_failed(self, image_id: str, variant: str, error: str) -> None:
        this = (renders.c.image_id == image_id) & (renders.c.variant == variant)
        with self._begin() as conn:
            conn.execute(renders.update().where(this).values(error=error))

    def mark_unsent(self, image_id: str) -> None:
        """The task could not be published: date the sending back so that the next sweep sends it."""
        with self._begin() as conn:
            conn.execute(images.update().where(images.c.id == image_id).values(enqueued_at=NEVER))

    def stale(self, pending_before: datetime, abandoned_before: datetime) -> list[str]:
        """Images whose processing may have been lost: pending since before `pending_before`, or processing under
        a dead lease (see `dead_lease`) and not re-sent since `abandoned_before`.

        Their enqueued_at is moved to now, so that one sweep does not re-send what the previous one just sent.
        """
        now = utcnow()
        condition = sa.or_(
            sa.and_(images.c.status == PENDING, images.c.enqueued_at < pending_before),
            sa.and_(images.c.status == PROCESSING, dead_lease(now), images.c.enqueued_at < abandoned_before),
        )
        with self._begin() as conn:
            return list(
                conn.scalars(images.update().where(condition).values(enqueued_at=now).returning(images.c.id))
            )

    # Workers: who is alive, for leases and readiness.

    def beat(self, worker: str, host: str, pid: int) -> None:
        """Record that this worker is alive (and register it on its first beat)."""
        now = utcnow()
        with self._begin() as conn:
            updated = conn.execute(workers.update().where(workers.c.id == worker).values(heartbeat_at=now)).rowcount
            if not updated:
                conn.execute(workers.insert().values(id=worker, host=host, pid=pid, started_at=now, heartbeat_at=now))

    def forget_worker(self, worker: str) -> None:
        """A worker that stops (or is found dead): its leases become free at once."""
        with self._begin() as conn:
            conn.execute(workers.delete().where(workers.c.id == worker))

    def workers_on(self, host: str) -> list[tuple[str, int]]:
        """(id, pid) of the workers registered from this host, whose PIDs the caller can check."""
        with self.engine.connect() as conn:
            query = sa.select(workers.c.id, workers.c.pid).where(workers.c.host == host)
            return [(r.id, r.pid) for r in conn.execute(query)]

    def forget_workers_silent_since(self, cutoff: datetime) -> None:
        """Drop workers long dead (on hosts that never came back to forget them): the table stays small."""
        with self._begin() as conn:
            conn.execute(workers.delete().where(workers.c.heartbeat_at < cutoff))

    def counts(self) -> dict[str, int]:
        """How many images are in each status (statuses with none are absent): queue depth for backpressure
        and metrics. One indexed GROUP BY (ix_apercu_images_status)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(images.c.status, sa.func.count()).group_by(images.c.status))
            return {status: count for status, count in rows}

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(images.c.id).limit(1)).first() is None

    def live_workers(self) -> int:
        """How many workers beat recently: zero means nothing is processing uploads."""
        cutoff = utcnow() - timedelta(seconds=WORKER_TIMEOUT)
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).where(workers.c.heartbeat_at >= cutoff)) or 0)

    # Housekeeping: which ids exist, to tell orphans from images.

    def existing(self, ids: list[str]) -> set[str]:
        """Those of `ids` that have a row."""
        with self.engine.connect() as conn:
            return set(conn.scalars(sa.select(images.c.id).where(images.c.id.in_(ids))))

    def ids_uploaded_before(self, cutoff: datetime, after: str, limit: int) -> list[str]:
        """A page of ids of images uploaded before `cutoff`, in id order, after the id `after`."""
        query = (
            sa.select(images.c.id)
            .where(images.c.uploaded_at < cutoff, images.c.id > after)
            .order_by(images.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(query))

    # Idempotency keys: a retried upload gets the image its first try created.

    def add_unique(
        self, image_id: str, filename: str | None, unique: Unique, callback_url: str | None = None
    ) -> tuple[dict[str, Any], Literal["key", "content"] | None]:
        """Record a new image unless an existing one holds its idempotency key or its bytes (with deduplication),
        in one transaction; ({row}, None) when recorded.

        When another request claimed either first (a concurrent retry, the same file uploaded twice at once),
        nothing is written and that image's row is returned with what it holds ("key" or "content"): the caller
        then drops its own copy. A key past its time, and a key or content whose image was deleted, is free."""
        for _ in range(2):  # the winner's image may be deleted between our conflict and our look: then try again
            now = utcnow()
            try:
                with self._begin() as conn:
                    if unique.key is not None:
                        conn.execute(idempotency_keys.delete().where(
                            idempotency_keys.c.key == unique.key, _key_dead(unique.key_expired_before)))
                        claim = {"key": unique.key, "image_id": image_id, "created_at": now}
                        conn.execute(idempotency_keys.insert().values(**claim))
                    if unique.sha256 is not None:  # (the claim goes with its image: see `delete`)
                        failed = sa.select(images.c.id).where(images.c.status == FAILURE)
                        conn.execute(contents.delete().where(  # a failure may have been passing: try again
                            contents.c.sha256 == unique.sha256, contents.c.image_id.in_(failed)))
                        conn.execute(contents.insert().values(sha256=unique.sha256, image_id=image_id))
                    return self._insert(conn, image_id, filename, now, unique.sha256, callback_url), None
            except sa.exc.IntegrityError:
                if unique.key is not None and (row := self.image_for_key(unique.key, unique.key_expired_before)):
                    return row, "key"
                if unique.sha256 is not None and (row := self.image_with_content(unique.sha256)):
                    return row, "content"
        raise RuntimeError(f"{unique} keeps conflicting")

    def image_with_content(self, sha256: str) -> dict[str, Any] | None:
        """The image deduplication keeps for these bytes, if any: not a failed one (its failure may have been
        passing: a time limit under load, a crash), which a new upload of the bytes replaces."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(images).join(contents, contents.c.image_id == images.c.id)
                .where(contents.c.sha256 == sha256, images.c.status != FAILURE)
            ).mappings().first()
        return dict(row) if row else None

    def image_for_key(self, key: str, expired_before: datetime | None) -> dict[str, Any] | None:
        """The image an idempotency key created, if the key is still valid and its image still exists."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(images).join(idempotency_keys, idempotency_keys.c.image_id == images.c.id)
                .where(idempotency_keys.c.key == key, idempotency_keys.c.created_at >= (expired_before or NEVER))
            ).mappings().first()
        return dict(row) if row else None

    def expire_keys(self, expired_before: datetime) -> int:
        """Forget idempotency keys past their time, and keys whose image was deleted."""
        with self._begin() as conn:
            return conn.execute(idempotency_keys.delete().where(_key_dead(expired_before))).rowcount


def _activate(which: sa.ColumnElement[bool], now: datetime) -> sa.Update:
    """Waiting deliveries (`which`) of images that have settled become due now."""
    settled = sa.select(images.c.id).where(images.c.id == deliveries.c.image_id, images.c.status.not_in(IN_PROGRESS))
    waiting = deliveries.c.status == DELIVERY_WAITING
    return deliveries.update().where(which, waiting, settled.exists()).values(status=DELIVERY_PENDING, due_at=now)


def phash_to_int(text: str) -> int:
    """16 hex digits as the signed 64-bit integer both databases store in a BIGINT."""
    value = int(text, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(column: sa.ColumnElement[int], target: int, dialect: str) -> sa.ColumnElement[int]:
    """How many bits of two 64-bit integers differ, in SQL: PostgreSQL counts them itself; SQLite has neither XOR
    nor a bit count, so it calls a function each connection registers (see `sqlite_pragmas`)."""
    if dialect == "postgresql":
        xor = column.op("#")(sa.literal(target, sa.BigInteger))
        return sa.func.bit_count(sa.cast(xor, BIT(64)), type_=sa.Integer)
    return sa.func.apercu_hamming(column, target, type_=sa.Integer)


def _sqlite_hamming(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()


def _key_dead(expired_before: datetime | None) -> sa.ColumnElement[bool]:
    image_exists = sa.select(images.c.id).where(images.c.id == idempotency_keys.c.image_id).exists()
    return sa.or_(idempotency_keys.c.created_at < (expired_before or NEVER), ~image_exists)


def _schema_state(conn: sa.Connection) -> SchemaState:
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
    """Inside the caller's transaction: see `Catalog.create_schema` and `Catalog.migrate`."""
    state = _schema_state(conn)
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
