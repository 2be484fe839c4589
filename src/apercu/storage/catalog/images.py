"""Images: one row per image, the single source of truth for its state; recorded, read, listed, deleted.

How an image's state changes while it is processed (claims, leases, its outcome) is `leases`' business; what a
new image may not share with another (an idempotency key, its bytes) is `claims`'.

Every image is its tenant's (the uploading key's). What a client reads, lists, searches and deletes is confined to
its tenant by one rule, `within`: the tenant is in the query's WHERE, so another tenant's image is not found by
the same query that finds none at all (no fetch-then-compare to time apart). `tenant=None` is every tenant: admin,
and the worker and housekeeping, which serve every tenant alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from apercu.storage.catalog.engine import Database, hamming, phash_to_int, utcnow
from apercu.storage.catalog.prepared import Prepared, PreparedWrite
from apercu.storage.catalog.tables import (
    DEFAULT_TENANT,
    IN_PROGRESS,
    ImageStatus,
    contents,
    deliveries,
    images,
    kept,
    renders,
)
from apercu.storage.change_feed import announce_settled


@dataclass(frozen=True)
class ImageRecord:
    """One row of `apercu_images`, as stored (the service shows it as `apercu.images.Image`)."""

    id: str
    filename: str | None
    status: ImageStatus
    error: str | None
    uploaded_at: datetime
    processed_at: datetime | None
    enqueued_at: datetime
    attempts: int
    lease_owner: str | None
    lease_until: datetime | None
    lease_worker: str | None
    image_metadata: dict[str, Any] | None
    thumbnail: dict[str, Any] | None
    sha256: str | None
    phash: int | None
    callback_url: str | None
    tenant: str
    source_url: str | None = None  # an upload by URL: its original is fetched from here by the worker

    @classmethod
    def of(cls, row: sa.Row[Any]) -> ImageRecord:
        """A selected row of the images table (with any further columns after its own)."""
        return cls.of_fields(row._mapping)

    @classmethod
    def of_fields(cls, fields: Mapping[Any, Any]) -> ImageRecord:
        """The record of a row's columns by name."""
        return cls(
            fields["id"], fields["filename"], ImageStatus(fields["status"]), fields["error"], fields["uploaded_at"],
            fields["processed_at"], fields["enqueued_at"], fields["attempts"], fields["lease_owner"],
            fields["lease_until"], fields["lease_worker"], fields["image_metadata"], fields["thumbnail"],
            fields["sha256"], fields["phash"], fields["callback_url"], fields["tenant"], fields["source_url"],
        )


Scoped = TypeVar("Scoped", sa.Select[Any], sa.Delete)


def within(statement: Scoped, tenant: str | sa.BindParameter[str] | None) -> Scoped:
    """The statement confined to one tenant's images (None: every tenant's): the one rule of tenants."""
    return statement if tenant is None else statement.where(images.c.tenant == tenant)


# The statements of the hot paths (an upload, a GET), built once with bound parameters: building a
# statement anew for every call cost SQLAlchemy ten to twenty times what SQLite spends running it (see `leases`).
GET = sa.select(images).where(images.c.id == sa.bindparam("image_id"))
OUTLINE = sa.select(
    images.c.status, images.c.error, images.c.filename,
    images.c.image_metadata["width"].as_integer(), images.c.image_metadata["height"].as_integer(),
).where(images.c.id == sa.bindparam("image_id"))
GET_WITHIN = within(GET, sa.bindparam("tenant"))
INSERT = PreparedWrite(images.insert())  # every upload runs it: on the driver (see `catalog.prepared`)
NEWEST_FIRST = (images.c.uploaded_at.desc(), images.c.id.desc())


@dataclass(frozen=True)
class Outline:
    """What a rendition's request needs of its image, read without decoding the row's metadata and thumbnail
    JSON: that was a third of a kept rendition's time in the catalog, on the route served most."""

    status: ImageStatus
    error: str | None
    filename: str | None
    width: int | None  # None until processed (or when it failed)
    height: int | None

    @property
    def settled(self) -> bool:
        return self.status not in IN_PROGRESS


def insert(
    conn: sa.Connection, image_id: str, filename: str | None, now: datetime, sha256: str | None = None,
    callback_url: str | None = None, tenant: str = DEFAULT_TENANT, source_url: str | None = None,
) -> ImageRecord:
    """A new pending image of `tenant`, inside the caller's transaction (without its original yet when it has a
    `source_url`)."""
    record = ImageRecord(
        id=image_id, filename=filename, status=ImageStatus.PENDING, error=None, uploaded_at=now, processed_at=None,
        enqueued_at=now, attempts=0, lease_owner=None, lease_until=None, lease_worker=None, image_metadata=None,
        thumbnail=None, sha256=sha256, phash=None, callback_url=callback_url, tenant=tenant, source_url=source_url,
    )
    values = {
        "id": image_id, "filename": filename, "status": ImageStatus.PENDING, "uploaded_at": now, "enqueued_at": now,
        "attempts": 0, "sha256": sha256, "callback_url": callback_url, "tenant": tenant,
        "source_url": source_url,
    }
    INSERT.execute(conn, values)
    return record


class Images:
    def __init__(self, db: Database) -> None:
        self._db = db
        # The reads of a `?wait`, a rendition's and the worker's, on the driver (0.13 -> 0.03 ms on SQLite)
        self._get, self._get_within, self._outline = (Prepared(q, db.engine) for q in (GET, GET_WITHIN, OUTLINE))

    def add(
        self, image_id: str, filename: str | None, callback_url: str | None = None, tenant: str = DEFAULT_TENANT,
        source_url: str | None = None,
    ) -> ImageRecord:
        with self._db.begin() as conn:
            return insert(conn, image_id, filename, utcnow(), callback_url=callback_url, tenant=tenant,
                          source_url=source_url)

    def get(self, image_id: str, tenant: str | None = None) -> ImageRecord | None:
        """The image, if it is `tenant`'s (None: whoever's)."""
        if tenant is None:
            row = self._get.first({"image_id": image_id})
        else:
            row = self._get_within.first({"image_id": image_id, "tenant": tenant})
        return None if row is None else ImageRecord.of_fields(dict(zip(self._get.columns, row, strict=True)))

    def outline(self, image_id: str) -> Outline | None:
        """The image's `Outline`, whoever's it is (a rendition's signature grants it)."""
        row = self._outline.first({"image_id": image_id})
        return None if row is None else Outline(ImageStatus(row[0]), *row[1:])

    def delete(self, image_id: str, tenant: str | None = None) -> bool:
        """The image, if it is `tenant`'s (None: whoever's), and everything recorded about it (renders and what
        they kept, its content claim, its deliveries), at once."""
        with self._db.begin() as conn:
            deleted = conn.execute(within(images.delete().where(images.c.id == image_id), tenant)).rowcount
            if not deleted and tenant is not None:
                return False  # (no image of this tenant's: another tenant's is not touched)
            conn.execute(renders.delete().where(renders.c.image_id == image_id))
            conn.execute(kept.delete().where(kept.c.image_id == image_id))
            conn.execute(contents.delete().where(contents.c.image_id == image_id))
            conn.execute(deliveries.delete().where(deliveries.c.image_id == image_id))
            if deleted:
                announce_settled(conn, image_id)
            return bool(deleted)

    def page(
        self, limit: int, after: tuple[datetime, str] | None = None, tenant: str | None = None
    ) -> list[ImageRecord]:
        """Newest first (ix_apercu_images_tenant_newest for a tenant); `after` is the (uploaded_at, id) of the last
        row of the previous page."""
        query = within(sa.select(images), tenant).order_by(*NEWEST_FIRST).limit(limit)
        if after is not None:
            stamp, last_id = after
            query = query.where(
                sa.or_(
                    images.c.uploaded_at < stamp,
                    sa.and_(images.c.uploaded_at == stamp, images.c.id < last_id),
                )
            )
        with self._db.connect() as conn:
            return [ImageRecord.of(r) for r in conn.execute(query)]

    def with_sha256(self, sha256: str, limit: int, tenant: str | None = None) -> list[ImageRecord]:
        """Images whose original has this SHA-256 (known once processed, or at upload with deduplication)."""
        query = within(sa.select(images).where(images.c.sha256 == sha256), tenant).order_by(*NEWEST_FIRST).limit(limit)
        with self._db.connect() as conn:
            return [ImageRecord.of(r) for r in conn.execute(query)]

    def similar(
        self, phash: str, max_distance: int, limit: int, tenant: str | None = None
    ) -> list[tuple[ImageRecord, int]]:
        """Processed images whose perceptual hash is within `max_distance` bits of `phash`, nearest first, with
        their distance: one scan computing the distance in the database (~10k rows in a few ms)."""
        distance = hamming(images.c.phash, phash_to_int(phash), self._db.dialect).label("distance")
        query = within(
            sa.select(images, distance).where(images.c.phash.is_not(None), distance <= max_distance), tenant
        ).order_by(distance, *NEWEST_FIRST).limit(limit)
        with self._db.connect() as conn:
            return [(ImageRecord.of(r), r.distance) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        """How many images are in each status (statuses with none are absent): queue depth for backpressure
        and metrics. One indexed GROUP BY (ix_apercu_images_status)."""
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(images.c.status, sa.func.count()).group_by(images.c.status))
            return {status: count for status, count in rows}

    def is_empty(self) -> bool:
        with self._db.connect() as conn:
            return conn.execute(sa.select(images.c.id).limit(1)).first() is None

    def existing(self, ids: list[str]) -> set[str]:
        """Those of `ids` that have a row (housekeeping tells orphaned files from images' files with it)."""
        with self._db.connect() as conn:
            return set(conn.scalars(sa.select(images.c.id).where(images.c.id.in_(ids))))

    def ids_uploaded_before(self, cutoff: datetime, after: str, limit: int) -> list[str]:
        """A page of ids of images uploaded before `cutoff`, in id order, after the id `after`, that should have
        an original by now: not an upload by URL that has not succeeded (its fetch is to come, or failed)."""
        fetched = sa.or_(images.c.source_url.is_(None), images.c.status == ImageStatus.SUCCESS)
        query = (
            sa.select(images.c.id)
            .where(images.c.uploaded_at < cutoff, images.c.id > after, fetched)
            .order_by(images.c.id)
            .limit(limit)
        )
        with self._db.connect() as conn:
            return list(conn.scalars(query))
