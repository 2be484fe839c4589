"""The catalog: the state of every image, in SQLite (embedded) or PostgreSQL, through SQLAlchemy Core.

One module per aggregate, all on one engine (`engine.Database`) and one set of tables (`tables`):

- `images`: the image rows (recorded, read, listed, deleted): `catalog.images`;
- `leases`: processing claims, outcomes, re-sending lost work: `catalog.leases`;
- `workers`: the worker registry behind leases and readiness: `catalog.workers`;
- `deliveries`: completion webhooks' deliveries: `catalog.deliveries`;
- `renders`: thumbnail variants and renditions asked for and not stored yet: `catalog.renders`;
- `kept`: what those renders stored, and when each was last used (the sweep's, least used first): `catalog.kept`;
- `claims`: idempotency keys and content claims of new images: `catalog.claims`;
- `keys`: API keys made by `apercu keys create`, and what every web process last read of them: `catalog.keys`;
- `uploads`: resumable (tus) uploads under way, and the claim of the request writing to each: `catalog.uploads`;
- `settling`: what `?wait=N` waits for (images settling, renders ending) and the feed announcing it:
  `catalog.settling`.

The schema (creating, upgrading, refusing one this code does not run on) is `storage.migrations`' business.
"""

from __future__ import annotations

import sqlalchemy as sa

from apercu.storage.catalog.claims import Claims, ExclusiveClaims, Holder
from apercu.storage.catalog.deliveries import Deliveries, DeliveryRecord
from apercu.storage.catalog.engine import Database, create_engine, utcnow
from apercu.storage.catalog.images import ImageRecord, Images, Outline
from apercu.storage.catalog.kept import Kept
from apercu.storage.catalog.keys import Keys
from apercu.storage.catalog.leases import Claim, ClaimResult, Leases
from apercu.storage.catalog.renders import RenderRequest, Renders, RenderState
from apercu.storage.catalog.settling import Settling
from apercu.storage.catalog.tables import DEFAULT_TENANT, IN_PROGRESS, DeliveryStatus, ImageStatus
from apercu.storage.catalog.uploads import Uploads
from apercu.storage.catalog.workers import WORKER_TIMEOUT, RegisteredWorker, Workers

__all__ = [
    "DEFAULT_TENANT", "IN_PROGRESS", "WORKER_TIMEOUT", "Catalog", "Claim", "ClaimResult", "DeliveryRecord",
    "DeliveryStatus", "ExclusiveClaims", "Holder", "ImageRecord", "ImageStatus", "Outline", "RegisteredWorker",
    "RenderRequest", "RenderState", "create_engine", "utcnow",
]


class Catalog:
    """The aggregates of one catalog, sharing its engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        db = Database(engine)
        self.images = Images(db)
        self.leases = Leases(db)
        self.workers = Workers(db)
        self.deliveries = Deliveries(db)
        self.renders = Renders(db)
        self.kept = Kept(db)
        self.claims = Claims(db)
        self.settling = Settling(db)
        self.keys = Keys(db)
        self.uploads = Uploads(db)

    @classmethod
    def from_url(cls, url: str, durable: bool = True) -> Catalog:
        """See `create_engine` for what `durable` means."""
        return cls(create_engine(url, durable))

    def ping(self) -> None:
        """Raise unless the database answers (the readiness probe)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
