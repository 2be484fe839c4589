"""What the renders keep (thumbnail variants and renditions): each blob's size and when it was last asked for, so
that a sweep can bound what they hold (APERCU_RENDITIONS_MAX_MB), least recently used first.

A row is written with the render's end (`renders.Renders.done`, one transaction), touched by the web at most every
TOUCH_EVERY per process and file (`Kept.touch`: a request that finds a kept file costs no write otherwise), and
removed with its image (`images.Images.delete`) or by the worker's sweep (`tasks.housekeeping`), which removes the
row first, then the blob: a request in between asks for a render again, as for any missing blob. A rendition found
in the store without a row (rendered before this table existed, or a worker lost between storing it and recording
it) is adopted by the orphan sweep (`unrecorded`, `adopt`), so that nothing a render keeps escapes the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from apercu.storage.catalog.engine import Database, utcnow
from apercu.storage.catalog.tables import kept

TOUCH_EVERY = 600.0  # seconds: how stale a file's last use may be in the catalog (LRU needs no more precision)


def _keep(insert: Any) -> Any:
    """The upsert of a kept file, built once per dialect: a render's end is on every first request's path."""
    columns = ("key", "image_id", "bytes", "used_at")
    statement = insert(kept).values({name: sa.bindparam(name) for name in columns})
    return statement.on_conflict_do_update(
        index_elements=["key"], set_={"bytes": statement.excluded.bytes, "used_at": statement.excluded.used_at}
    )


KEEP = {"postgresql": _keep(postgresql.insert), "sqlite": _keep(sqlite.insert)}


def record_kept(conn: sa.Connection, image_id: str, key: str, size: int, used_at: datetime | None = None) -> None:
    """Record (or, for a render stored twice, refresh) a kept file, in the caller's transaction; last used now
    unless `used_at` says when."""
    values = {"key": key, "image_id": image_id, "bytes": size, "used_at": used_at or utcnow()}
    conn.execute(KEEP[conn.dialect.name], values)


class Kept:
    def __init__(self, db: Database) -> None:
        self._db = db

    def touch(self, key: str) -> None:
        """The file was asked for now (a hint for the sweep: not worth an fsync)."""
        with self._db.begin(durable=False) as conn:
            conn.execute(kept.update().where(kept.c.key == key).values(used_at=utcnow()))

    def total(self) -> int:
        """Bytes held by every kept file."""
        with self._db.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(kept.c.bytes), 0))).scalar_one())

    def least_used(self, limit: int) -> list[tuple[str, int]]:
        """(key, bytes) of up to `limit` files, least recently used first."""
        query = sa.select(kept.c.key, kept.c.bytes).order_by(kept.c.used_at, kept.c.key).limit(limit)
        with self._db.connect() as conn:
            return [(row.key, row.bytes) for row in conn.execute(query)]

    def unrecorded(self, keys: Sequence[str]) -> list[str]:
        """Those of `keys` that no row records, in their order."""
        with self._db.connect() as conn:
            known = set(conn.execute(sa.select(kept.c.key).where(kept.c.key.in_(keys))).scalars())
        return [key for key in keys if key not in known]

    def adopt(self, files: Sequence[tuple[str, str, int, datetime]]) -> None:
        """Record (image id, key, bytes, written at) of files found without a row, last used when they were
        written: an unrecorded file has not been asked for since, or its request would have touched a row."""
        with self._db.begin() as conn:
            for image_id, key, size, written in files:
                record_kept(conn, image_id, key, size, written)

    def forget(self, keys: list[str]) -> None:
        with self._db.begin() as conn:
            conn.execute(kept.delete().where(kept.c.key.in_(keys)))
