"""What a new image claims for itself alone: its upload's idempotency key (a retried upload gets the image its
first try created) and, with deduplication (APERCU_DEDUP=reuse), its bytes (two identical uploads at once end
with one image). Both are claimed in the transaction that records the image, within the uploader's tenant: the
same key, or the same bytes, in two tenants are two images, and no answer names another tenant's image.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from apercu.storage.catalog.engine import Database, utcnow
from apercu.storage.catalog.images import ImageRecord, insert, within
from apercu.storage.catalog.tables import DEFAULT_TENANT, NEVER, ImageStatus, contents, idempotency_keys, images


@dataclass(frozen=True)
class ExclusiveClaims:
    """What a new image may not share with an existing one: an idempotency key (valid while created after
    `key_expired_before`), and with deduplication its bytes' SHA-256. `ExclusiveClaims()` claims nothing."""

    key: str | None = None
    key_expired_before: datetime | None = None
    sha256: str | None = None


class Holder(enum.StrEnum):
    """Which claim an existing image already held, when a new one could not be recorded."""

    KEY = "key"
    CONTENT = "content"


class Claims:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_image(
        self, image_id: str, filename: str | None, claims: ExclusiveClaims, callback_url: str | None = None,
        tenant: str = DEFAULT_TENANT, source_url: str | None = None,
    ) -> tuple[ImageRecord, Holder | None]:
        """Record a new image of `tenant` unless an existing one of its holds its idempotency key or its bytes
        (with deduplication), in one transaction; (record, None) when recorded.

        When another request claimed either first (a concurrent retry, the same file uploaded twice at once),
        nothing is written and that image's record is returned with what it holds: the caller then drops its own
        copy. A key past its time, and a key or content whose image was deleted, is free."""
        for _ in range(2):  # the winner's image may be deleted between our conflict and our look: then try again
            now = utcnow()
            try:
                with self._db.begin() as conn:
                    if claims.key is not None:
                        conn.execute(idempotency_keys.delete().where(
                            idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == claims.key,
                            _key_dead(claims.key_expired_before)))
                        claim = {"tenant": tenant, "key": claims.key, "image_id": image_id, "created_at": now}
                        conn.execute(idempotency_keys.insert().values(**claim))
                    if claims.sha256 is not None:  # (the claim goes with its image: see `Images.delete`)
                        failed = sa.select(images.c.id).where(images.c.status == ImageStatus.FAILURE)
                        conn.execute(contents.delete().where(  # a failure may have been passing: try again
                            contents.c.tenant == tenant, contents.c.sha256 == claims.sha256,
                            contents.c.image_id.in_(failed)))
                        conn.execute(contents.insert().values(tenant=tenant, sha256=claims.sha256, image_id=image_id))
                    return insert(conn, image_id, filename, now, claims.sha256, callback_url, tenant, source_url), None
            except sa.exc.IntegrityError:
                if claims.key is not None and (
                        found := self.image_for_key(claims.key, claims.key_expired_before, tenant)):
                    return found, Holder.KEY
                if claims.sha256 is not None and (found := self.image_with_content(claims.sha256, tenant)):
                    return found, Holder.CONTENT
        raise RuntimeError(f"{claims} keeps conflicting")

    def image_with_content(self, sha256: str, tenant: str = DEFAULT_TENANT) -> ImageRecord | None:
        """The image deduplication keeps for these bytes in `tenant`, if any: not a failed one (its failure may
        have been passing: a time limit under load, a crash), which a new upload of the bytes replaces."""
        query = within(sa.select(images).join(contents, contents.c.image_id == images.c.id), tenant).where(
            contents.c.tenant == tenant, contents.c.sha256 == sha256, images.c.status != ImageStatus.FAILURE)
        with self._db.connect() as conn:
            row = conn.execute(query).first()
        return ImageRecord.of(row) if row else None

    def image_for_key(
        self, key: str, expired_before: datetime | None, tenant: str = DEFAULT_TENANT
    ) -> ImageRecord | None:
        """The image `tenant`'s idempotency key created, if the key is still valid and its image still exists."""
        query = within(sa.select(images).join(idempotency_keys, idempotency_keys.c.image_id == images.c.id), tenant)
        with self._db.connect() as conn:
            row = conn.execute(query.where(
                idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == key,
                idempotency_keys.c.created_at >= (expired_before or NEVER),
            )).first()
        return ImageRecord.of(row) if row else None

    def expire_keys(self, expired_before: datetime) -> int:
        """Forget idempotency keys past their time, and keys whose image was deleted."""
        with self._db.begin() as conn:
            return int(conn.execute(idempotency_keys.delete().where(_key_dead(expired_before))).rowcount)


def _key_dead(expired_before: datetime | None) -> sa.ColumnElement[bool]:
    image_exists = sa.select(images.c.id).where(images.c.id == idempotency_keys.c.image_id).exists()
    return sa.or_(idempotency_keys.c.created_at < (expired_before or NEVER), ~image_exists)
