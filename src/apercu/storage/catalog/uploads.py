"""Resumable (tus) uploads under way: the state every web process shares, so that any request of an upload may land
on any of them (`apercu.resumable` holds the rules; the bytes are in the blob store, `storage.partials`).

One request writes to an upload at a time, by a claim taken in the catalog (`claim`: a conditional UPDATE, so it
holds across processes and machines, never a process-local lock); a claim left by a process that died frees
itself at `claimed_until`. What has arrived (`received`) only moves forward under the claim, by `advance`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from apercu.storage.catalog.engine import Database, utcnow
from apercu.storage.catalog.tables import uploads

Part = tuple[int, str]  # an S3 multipart upload's part: its number and ETag


@dataclass(frozen=True)
class Progress:
    """Where an upload's bytes are, after a write: its store's handle (an S3 multipart upload id), the parts
    written to it and the bytes they hold (`flushed`; the rest, up to `received`, waits in a tail object)."""

    handle: str | None = None
    parts: tuple[Part, ...] = ()
    flushed: int = 0


@dataclass(frozen=True)
class UploadRecord:
    id: str
    tenant: str
    owner: str
    length: int
    received: int
    filename: str | None
    upload_metadata: str | None
    idempotency_key: str | None
    created_at: datetime
    expires_at: datetime
    progress: Progress
    image_id: str | None

    @classmethod
    def of(cls, row: Any) -> UploadRecord:
        parts = tuple((int(number), str(etag)) for number, etag in (row.parts or ()))
        return cls(row.id, row.tenant, row.owner, row.length, row.received, row.filename, row.upload_metadata,
                   row.idempotency_key, row.created_at, row.expires_at, Progress(row.handle, parts, row.flushed),
                   row.image_id)


@dataclass(frozen=True)
class NewUpload:
    id: str
    tenant: str
    owner: str
    length: int
    filename: str | None
    upload_metadata: str | None
    idempotency_key: str | None
    expires_at: datetime


class Claimed(enum.Enum):
    """What asking for an upload's claim at an offset found."""

    YES = "claimed"
    MOVED = "the offset is not the upload's"  # another request appended meanwhile, or the client is lost
    BUSY = "another request is writing to it"
    GONE = "no such upload"


class Uploads:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, new: NewUpload, max_open: int) -> UploadRecord | None:
        """Record a new upload, unless its owner holds `max_open` unfinished ones already: None. (Two creations of
        one owner at the same moment may both pass the count: the cap bounds what piles up, not exactly.)"""
        now = utcnow()
        with self._db.begin() as conn:
            open_ = conn.execute(sa.select(sa.func.count()).select_from(uploads).where(
                uploads.c.owner == new.owner, uploads.c.image_id.is_(None))).scalar_one()
            if open_ >= max_open:
                return None
            values = {**new.__dict__, "received": 0, "created_at": now, "flushed": 0}
            conn.execute(uploads.insert().values(**values))
            row = conn.execute(sa.select(uploads).where(uploads.c.id == new.id)).one()
        return UploadRecord.of(row)

    def get(self, upload_id: str, tenant: str | None) -> UploadRecord | None:
        """The upload, when it is `tenant`'s (None: whoever's)."""
        query = sa.select(uploads).where(uploads.c.id == upload_id)
        if tenant is not None:
            query = query.where(uploads.c.tenant == tenant)
        with self._db.connect() as conn:
            row = conn.execute(query).first()
        return UploadRecord.of(row) if row else None

    def claim(self, upload_id: str, offset: int, token: str, until: datetime) -> Claimed:
        """Claim the unfinished upload for one request that appends at `offset`; why not otherwise."""
        now = utcnow()
        free = sa.or_(uploads.c.claim.is_(None), uploads.c.claimed_until < now)
        with self._db.begin() as conn:
            taken = conn.execute(uploads.update().where(
                uploads.c.id == upload_id, uploads.c.received == offset, uploads.c.image_id.is_(None), free,
            ).values(claim=token, claimed_until=until)).rowcount
            if taken:
                return Claimed.YES
            row = conn.execute(sa.select(uploads.c.received, uploads.c.claim, uploads.c.claimed_until)
                               .where(uploads.c.id == upload_id)).first()
        if row is None:
            return Claimed.GONE
        return Claimed.BUSY if row.claim is not None and row.claimed_until >= now else Claimed.MOVED

    def advance(self, upload_id: str, token: str, received: int, progress: Progress) -> bool:
        """Record what the claim's request wrote; False when the claim was lost meanwhile (nothing recorded)."""
        parts = [list(part) for part in progress.parts] or None
        with self._db.begin() as conn:
            return bool(conn.execute(uploads.update().where(uploads.c.id == upload_id, uploads.c.claim == token)
                                     .values(received=received, handle=progress.handle, parts=parts,
                                             flushed=progress.flushed)).rowcount)

    def release(self, upload_id: str, token: str) -> None:
        with self._db.begin() as conn:
            conn.execute(uploads.update().where(uploads.c.id == upload_id, uploads.c.claim == token)
                         .values(claim=None, claimed_until=None))

    def finish(self, upload_id: str, token: str, image_id: str) -> None:
        """The upload made its image: it is no longer open (the cap), and answers with the image from now on."""
        with self._db.begin() as conn:
            conn.execute(uploads.update().where(uploads.c.id == upload_id, uploads.c.claim == token)
                         .values(image_id=image_id, claim=None, claimed_until=None, handle=None, parts=None))

    def remove(self, upload_id: str) -> None:
        with self._db.begin() as conn:
            conn.execute(uploads.delete().where(uploads.c.id == upload_id))

    def expired(self, before: datetime, limit: int) -> list[UploadRecord]:
        """Uploads whose time ended before `before`, finished or not (a finished one's row only lingers for HEAD)."""
        query = sa.select(uploads).where(uploads.c.expires_at < before).order_by(uploads.c.expires_at).limit(limit)
        with self._db.connect() as conn:
            return [UploadRecord.of(row) for row in conn.execute(query)]
