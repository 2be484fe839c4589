"""What a `?wait=N` request waits for, as the catalog sees it: an image's processing ending, or a thumbnail
variant's render ending; and the change feed that announces both.

Each is announced (`storage.change_feed`) in the transaction that settles it, under a name: an image by its id
(`leases`, `images`), a render by its blob key, `thumbnails/<id>/<size>.<ext>`, which no image id looks like
(`renders`). When the feed cannot name what changed, the poller (`storage.watcher`) asks here which of the names
it waits for settled, in one query for all of them whatever their kind:
- an image, once its processing ended (success, failure) or it was deleted;
- a render, once its `apercu_renders` row is gone or holds an error. The row is recorded when the render is
  requested, before anyone waits for it, and goes in the transaction that records the stored blob (the worker
  writes the blob first) or deletes the image; so "no row" means "stored or image gone", and the blob store is
  never asked.
"""

from __future__ import annotations

import sqlalchemy as sa

from apercu.storage import blob_keys
from apercu.storage.catalog.engine import Database
from apercu.storage.catalog.prepared import Prepared
from apercu.storage.catalog.tables import IN_PROGRESS, images, renders
from apercu.storage.change_feed import ChangeFeed, open_feed

NAMES: sa.BindParameter[str] = sa.bindparam("names", expanding=True)
UNSETTLED_IMAGES = sa.select(images.c.id).where(images.c.id.in_(NAMES), images.c.status.in_(IN_PROGRESS))
UNSETTLED = sa.union_all(  # images and renders: the second part costs a third more, so only when renders are awaited
    UNSETTLED_IMAGES,
    sa.select(renders.c.variant).where(  # (by image too: the table's key starts with it)
        renders.c.image_id.in_(sa.bindparam("images", expanding=True)), renders.c.variant.in_(NAMES),
        renders.c.error.is_(None),
    ),
)


class Settling:
    def __init__(self, db: Database) -> None:
        self._db = db
        # On SQLite the feed cannot name what settled, so the poller asks after every commit to the file (the
        # worker's claims and finishes, the web's uploads): each look is a `Prepared` query (0.13 -> 0.03 ms).
        self._unsettled_images = Prepared(UNSETTLED_IMAGES, db.engine)
        self._unsettled = Prepared(UNSETTLED, db.engine)

    def change_feed(self) -> ChangeFeed:
        """What pollers of settled names ask before they query (see `storage.change_feed`)."""
        return open_feed(self._db.engine)

    def settled_among(self, names: list[str]) -> set[str]:
        """Those of `names` (image ids, renders' blob keys) that settled, as the module's docstring says."""
        rendered = sorted({blob_keys.image_id_of(name) for name in names if "/" in name})  # (no image id has one)
        if rendered:
            unsettled = self._unsettled.rows({"names": names, "images": rendered})
        else:
            unsettled = self._unsettled_images.rows({"names": names})
        return set(names) - {row[0] for row in unsettled}
