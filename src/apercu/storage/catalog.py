"""The catalog: one row per image, in SQLite (embedded) or PostgreSQL, through SQLAlchemy Core.

The row is the single source of truth for an image's state. Processing claims it with a lease, so that a task
delivered twice (a retry, a broker redelivery, a recovery sweep) never does the work twice at the same time,
and a task whose worker died is taken over once its lease expires. Every state change is one conditional
UPDATE, which keeps SQLite's single-writer locking short and makes races with DELETE decide cleanly.
"""

from __future__ import annotations

import enum
import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

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
    sa.Column("image_metadata", sa.JSON, nullable=True),
    sa.Column("thumbnail", sa.JSON, nullable=True),
    sa.Index("ix_apercu_images_newest", "uploaded_at", "id"),
    sa.Index("ix_apercu_images_status", "status"),
)

PENDING, PROCESSING, SUCCESS, FAILURE = "pending", "processing", "success", "failure"
NEVER = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC, the form stored in both SQLite and PostgreSQL."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


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


def create_engine(url: str) -> Engine:
    """An engine for the catalog; SQLite gets WAL, full sync and a busy timeout for its several processes."""
    url = _driver_url(url)
    dumps = functools.partial(json.dumps, allow_nan=False, separators=(",", ":"))
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, json_serializer=dumps, connect_args={"timeout": 30})
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    return sa.create_engine(url, json_serializer=dumps, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _driver_url(url: str) -> str:
    """Accept the plain postgresql:// form users write and pick the psycopg 3 driver we ship."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Catalog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> "Catalog":
        return cls(create_engine(url))

    def create_schema(self) -> None:
        """Create the table if missing; another process creating it at the same moment is not an error."""
        try:
            metadata_obj.create_all(self.engine)
        except sa.exc.DatabaseError:
            if not sa.inspect(self.engine).has_table(images.name):
                raise

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def add(self, image_id: str, filename: str | None, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        row = {
            "id": image_id,
            "filename": filename,
            "status": PENDING,
            "uploaded_at": now,
            "enqueued_at": now,
            "attempts": 0,
        }
        with self.engine.begin() as conn:
            conn.execute(images.insert().values(**row))
        return {**row, "error": None, "processed_at": None, "image_metadata": None, "thumbnail": None}

    def get(self, image_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(images).where(images.c.id == image_id)).mappings().first()
        return dict(row) if row else None

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

    def claim(self, image_id: str, owner: str, lease_seconds: float, max_attempts: int) -> ClaimResult:
        """Take the image for processing unless it is finished, deleted, or leased to another live task."""
        now = utcnow()
        claimable = sa.or_(
            images.c.status == PENDING,
            sa.and_(
                images.c.status == PROCESSING,
                sa.or_(images.c.lease_until < now, images.c.lease_owner == owner),
            ),
        )
        with self.engine.begin() as conn:
            taken = conn.execute(
                images.update()
                .where(images.c.id == image_id, claimable, images.c.attempts < max_attempts)
                .values(
                    status=PROCESSING,
                    attempts=images.c.attempts + 1,
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease_seconds),
                )
            ).rowcount
            if taken:
                return ClaimResult(Claim.CLAIMED)
            row = conn.execute(
                sa.select(images.c.status, images.c.lease_until).where(images.c.id == image_id)
            ).first()
        if row is None:
            return ClaimResult(Claim.GONE)
        if row.status in (SUCCESS, FAILURE):
            return ClaimResult(Claim.FINISHED)
        if row.status == PROCESSING and row.lease_until and row.lease_until >= now:
            return ClaimResult(Claim.BUSY, (row.lease_until - now).total_seconds() + 1)
        return ClaimResult(Claim.EXHAUSTED)

    def finish(self, image_id: str, image_metadata: dict[str, Any], thumbnail: dict[str, Any]) -> bool:
        """Record success; False when the image was deleted meanwhile."""
        return self._settle(image_id, status=SUCCESS, error=None, image_metadata=image_metadata, thumbnail=thumbnail)

    def fail(self, image_id: str, message: str, image_metadata: dict[str, Any] | None = None) -> bool:
        """Record failure with a message for the client; False when the image was deleted meanwhile."""
        return self._settle(image_id, status=FAILURE, error=message, image_metadata=image_metadata, thumbnail=None)

    def _settle(self, image_id: str, **values: Any) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    images.update()
                    .where(images.c.id == image_id)
                    .values(processed_at=utcnow(), lease_owner=None, lease_until=None, **values)
                ).rowcount
            )

    def delete(self, image_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(images.delete().where(images.c.id == image_id)).rowcount)

    def mark_unsent(self, image_id: str) -> None:
        """The task could not be published: date the sending back so that the next sweep sends it."""
        with self.engine.begin() as conn:
            conn.execute(images.update().where(images.c.id == image_id).values(enqueued_at=NEVER))

    def stale(self, pending_before: datetime) -> list[str]:
        """Images whose processing may have been lost: pending since before the cut-off, or with an expired lease.

        Their enqueued_at is moved to now, so that one sweep does not re-send what the previous one just sent.
        """
        now = utcnow()
        condition = sa.or_(
            sa.and_(images.c.status == PENDING, images.c.enqueued_at < pending_before),
            sa.and_(images.c.status == PROCESSING, images.c.lease_until < now, images.c.enqueued_at < pending_before),
        )
        with self.engine.begin() as conn:
            return list(
                conn.scalars(images.update().where(condition).values(enqueued_at=now).returning(images.c.id))
            )
