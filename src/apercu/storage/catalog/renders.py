"""Thumbnail variants asked for and not stored yet: so that many first requests for one make one render.

A row per variant a client asked for, gone once a worker has stored it; a render that failed keeps its row with
the reason, which requests are then answered with instead of waiting. Either end is announced on the change feed
under the variant's blob key, for the requests waiting for it (`catalog.settling`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa

from apercu.storage.catalog.engine import Database, utcnow
from apercu.storage.catalog.kept import record_kept
from apercu.storage.catalog.tables import NEVER, kept, renders
from apercu.storage.change_feed import announce_settled


class RenderState(enum.StrEnum):
    SEND = "send"  # the caller is to queue the render
    PENDING = "pending"  # one is queued
    FAILED = "failed"  # it could not be rendered: see the error
    KEPT = "kept"  # it was stored since the caller looked: look again (`Kept` records it with its row's removal)


class RenderRequest(NamedTuple):
    state: RenderState
    error: str | None = None


# A first request's statements, built once with bound parameters (building them per request was a fifth of its
# transaction's CPU: a cold rendition's path).
_THIS = (renders.c.image_id == sa.bindparam("of_image")) & (renders.c.variant == sa.bindparam("of_variant"))
REQUESTED = sa.select(renders.c.error).where(_THIS)
KEPT_FILE = sa.select(kept.c.key).where(kept.c.key == sa.bindparam("key"))
REQUEST = renders.insert().values(
    image_id=sa.bindparam("of_image"), variant=sa.bindparam("of_variant"), requested_at=sa.bindparam("now"),
)
# A render's end, built once: it is on every first request's path (built for each, it cost the worker ~0.3 ms).
DONE = renders.delete().where(_THIS)
LOST = renders.update().where(_THIS, renders.c.requested_at < sa.bindparam("lost_before")).values(
    requested_at=sa.bindparam("now"),
)


class Renders:
    def __init__(self, db: Database) -> None:
        self._db = db

    def request(self, image_id: str, variant: str, lost_before: datetime) -> RenderRequest:
        """SEND when the caller is to queue the render: the first request, or the last one was made before
        `lost_before` and is taken for lost; PENDING while one is queued; FAILED with the reason; KEPT when a
        render stored it after the caller found no file (`done` removes the row and records it kept at once: a
        request that took the missing row for "never asked" would render it twice). The row is looked at before
        the record of kept files, so that a `done` committed between the two is seen in the second."""
        this = {"of_image": image_id, "of_variant": variant, "key": variant, "now": utcnow(),
                "lost_before": lost_before}
        try:
            with self._db.begin(durable=False) as conn:  # a request lost with the machine is made again
                row = conn.execute(REQUESTED, this).first()
                if row is None and conn.execute(KEPT_FILE, this).first():
                    return RenderRequest(RenderState.KEPT)
                if row is None:
                    conn.execute(REQUEST, this)
                    return RenderRequest(RenderState.SEND)
                if row.error is not None:
                    return RenderRequest(RenderState.FAILED, row.error)
                return RenderRequest(RenderState.SEND if conn.execute(LOST, this).rowcount else RenderState.PENDING)
        except sa.exc.IntegrityError:
            return RenderRequest(RenderState.PENDING)  # a concurrent first request recorded it a moment before us

    def done(self, image_id: str, variant: str, size: int) -> bool:
        """The variant is stored (its blob of `size` bytes written before this): kept from now on (`catalog.kept`).
        True when its request was still recorded, so its image too (a delete takes both in one transaction): the
        blob was written while the image was, and a later delete of the image removes it."""
        with self._db.begin() as conn:
            requested = conn.execute(DONE, {"of_image": image_id, "of_variant": variant}).rowcount
            record_kept(conn, image_id, variant, size)
            announce_settled(conn, variant)
        return bool(requested)

    def unsent(self, image_id: str, variant: str) -> None:
        """Its render could not be queued or retried (the broker or the blob store away): the next request for it
        sends it again at once, instead of once the request counts as lost. A failed render keeps its reason."""
        this = (renders.c.image_id == image_id) & (renders.c.variant == variant) & renders.c.error.is_(None)
        with self._db.begin() as conn:
            conn.execute(renders.update().where(this).values(requested_at=NEVER))

    def failed(self, image_id: str, variant: str, error: str) -> None:
        this = (renders.c.image_id == image_id) & (renders.c.variant == variant)
        with self._db.begin() as conn:
            conn.execute(renders.update().where(this).values(error=error))
            announce_settled(conn, variant)
