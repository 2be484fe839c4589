"""Completion webhooks' deliveries: one row per URL to tell when an image settles, and how each attempt went.

The rows of an image's own webhooks (its uploader's callback, the operator's URL) are written by the transaction
that settles it (`add_for_settled`, called by `leases`), so a worker dying right after cannot lose them; another
uploader's callback for an existing image (a duplicate) waits for it to settle (`Deliveries.add`). The task that
settled the image, or the recovery sweep, then takes them (`Deliveries.take_due`) and sends each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from apercu.storage.catalog.engine import Database, utcnow
from apercu.storage.catalog.tables import IN_PROGRESS, NEVER, DeliveryStatus, deliveries, images

TAKEN_FOR = timedelta(seconds=60)  # a delivery taken to be sent is due again this long after, in case it is lost


@dataclass(frozen=True)
class DeliveryRecord:
    """One row of `apercu_deliveries`."""

    id: str
    image_id: str
    url: str
    status: DeliveryStatus
    attempts: int
    due_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: sa.Row[Any]) -> DeliveryRecord:
        fields = row._mapping
        return cls(
            fields["id"], fields["image_id"], fields["url"], DeliveryStatus(fields["status"]), fields["attempts"],
            fields["due_at"], fields["last_status"], fields["last_error"], fields["delivered_at"],
        )


# `add_for_settled`'s statements, built once: built for every image, they cost the worker more than the
# settling UPDATE itself (SQLAlchemy's construction and cache key, ~0.3 ms of CPU per image on SQLite).
ADD_DUE = deliveries.insert().values(
    id=sa.bindparam("delivery_id"), image_id=sa.bindparam("settled_id"), url=sa.bindparam("to"),
    status=DeliveryStatus.PENDING, attempts=0, due_at=sa.bindparam("now"),
)
WAITING_DUE = (
    deliveries.update()
    .where(deliveries.c.image_id == sa.bindparam("settled_id"), deliveries.c.status == DeliveryStatus.WAITING)
    .values(status=DeliveryStatus.PENDING, due_at=sa.bindparam("now"))
)


def add_for_settled(conn: sa.Connection, image_id: str, now: datetime, callback: str | None, operator_url: str) -> None:
    """Inside the transaction that settles the image: a delivery due now to its uploader's `callback` (the row's
    `callback_url`, which the settling UPDATE returned) and to the operator's URL (APERCU_WEBHOOK_URL, or "" for
    none), once per URL; its waiting deliveries become due too."""
    for url in dict.fromkeys(u for u in (callback, operator_url) if u):
        conn.execute(ADD_DUE, {"delivery_id": uuid.uuid4().hex, "settled_id": image_id, "to": url, "now": now})
    conn.execute(WAITING_DUE, {"settled_id": image_id, "now": now})


def _activate(which: sa.ColumnElement[bool], now: datetime) -> sa.Update:
    """Waiting deliveries (`which`) of images that have settled become due now."""
    settled = sa.select(images.c.id).where(images.c.id == deliveries.c.image_id, images.c.status.not_in(IN_PROGRESS))
    waiting = deliveries.c.status == DeliveryStatus.WAITING
    return deliveries.update().where(which, waiting, settled.exists()).values(status=DeliveryStatus.PENDING, due_at=now)


class Deliveries:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, image_id: str, url: str) -> bool:
        """Another uploader's callback for an existing image (a duplicate, with deduplication): due at once when
        the image has settled (True), else waiting for it to settle (`add_for_settled` makes it due then)."""
        now = utcnow()
        delivery_id = uuid.uuid4().hex
        with self._db.begin() as conn:
            conn.execute(deliveries.insert().values(
                id=delivery_id, image_id=image_id, url=url, status=DeliveryStatus.WAITING, attempts=0, due_at=now))
            return bool(conn.execute(_activate(deliveries.c.id == delivery_id, now)).rowcount)

    def of_image(self, image_id: str) -> list[DeliveryRecord]:
        query = sa.select(deliveries).where(deliveries.c.image_id == image_id).order_by(deliveries.c.url)
        with self._db.connect() as conn:
            return [DeliveryRecord.of(r) for r in conn.execute(query)]

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        with self._db.connect() as conn:
            row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first()
        return DeliveryRecord.of(row) if row else None

    def take_due(self, due_before: datetime, image_id: str | None = None) -> list[str]:
        """Pending deliveries whose attempt was due before then (of one image, or any: lost messages), each
        marked due again a minute from now so that one sweep, not every sweep, sends it."""
        where = [deliveries.c.status == DeliveryStatus.PENDING, deliveries.c.due_at <= due_before]
        if image_id is not None:
            where.append(deliveries.c.image_id == image_id)
        with self._db.begin() as conn:
            if image_id is None:  # a callback added while its image settled in a concurrent transaction
                conn.execute(_activate(deliveries.c.status == DeliveryStatus.WAITING, utcnow()))
            # SKIP LOCKED (PostgreSQL; SQLite's writer lock serialises anyway): two sweeps on two machines never
            # pick the same delivery, so one lost message is sent again once, not once per machine.
            due = sa.select(deliveries.c.id).where(*where).limit(500).with_for_update(skip_locked=True)
            ids = [r.id for r in conn.execute(due)]
            if ids:
                later = utcnow() + TAKEN_FOR
                conn.execute(deliveries.update().where(deliveries.c.id.in_(ids)).values(due_at=later))
            return ids

    def mark_unsent(self, delivery_ids: list[str]) -> None:
        """Their attempts could not be queued (the broker away): due long ago, so that the next recovery sweep
        sends them, rather than once they are overdue by its grace period."""
        pending = deliveries.c.id.in_(delivery_ids) & (deliveries.c.status == DeliveryStatus.PENDING)
        with self._db.begin() as conn:
            conn.execute(deliveries.update().where(pending).values(due_at=NEVER))

    def record_attempt(
        self, delivery_id: str, status: DeliveryStatus, http_status: int | None, error: str | None,
        retry_in: float = 0.0,
    ) -> None:
        """One attempt's result: `status` DELIVERED or FAILED ends it; PENDING retries it in `retry_in` seconds."""
        now = utcnow()
        values: dict[str, Any] = {
            "status": status, "attempts": deliveries.c.attempts + 1, "last_status": http_status,
            "last_error": error, "due_at": now + timedelta(seconds=retry_in),
        }
        if status == DeliveryStatus.DELIVERED:
            values["delivered_at"] = now
        with self._db.begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**values))
