"""Processing leases: an image is claimed, given back or settled, and sent again when its work was lost.

Processing claims the image's row with a lease, so that a task delivered twice (a retry, a broker redelivery, a
recovery sweep) never does the work twice at the same time. A lease names its task (`lease_owner`) and the
worker process that runs it (`lease_worker`): a lease whose worker is dead is free at once (see `workers`).
Every state change is one conditional UPDATE, which keeps SQLite's single-writer locking short and makes races
with DELETE decide cleanly. Settling writes the image's webhook deliveries in the same transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from apercu.storage.catalog.deliveries import add_for_settled
from apercu.storage.catalog.engine import Database, phash_to_int, utcnow
from apercu.storage.catalog.tables import IN_PROGRESS, NEVER, ImageStatus, images
from apercu.storage.catalog.workers import WORKER_TIMEOUT, dead_lease, lease_is_dead
from apercu.storage.change_feed import announce_settled


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


# The statements of the hot paths (one image's claim and outcome), built once with bound parameters: building a
# statement anew for every call cost SQLAlchemy ten to twenty times what SQLite spends running it (a claim:
# 0.5 ms, of which 0.02 in SQLite), in the web processes and in the worker alike.
_PENDING = images.c.status == ImageStatus.PENDING
_PROCESSING = images.c.status == ImageStatus.PROCESSING
_OWN = sa.and_(_PROCESSING, images.c.lease_owner == sa.bindparam("owner"))
CLAIM = (
    images.update()
    .where(
        images.c.id == sa.bindparam("image_id"),
        sa.or_(
            _PENDING,
            _OWN,
            sa.and_(_PROCESSING, lease_is_dead(sa.bindparam("now"), sa.bindparam("alive_since"))),
        ),
        sa.or_(_OWN, images.c.attempts < sa.bindparam("max_attempts")),
    )
    .values(
        status=ImageStatus.PROCESSING,
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
# (Its statuses compared one by one, not with IN: SQLAlchemy renders an IN of values anew at every execution.)
_THIS = images.c.id == sa.bindparam("image_id")
# By the task holding the lease (or anyone while the image is still pending) ...
SETTLE_UNDER_LEASE = images.update().where(_THIS, sa.or_(_PENDING, _OWN))
# ... or by anyone while the image is pending or processing (giving up after too many interrupted attempts).
SETTLE_UNFINISHED = images.update().where(_THIS, sa.or_(*(images.c.status == status for status in IN_PROGRESS)))
# Both return the uploader's callback, for its delivery (one statement fewer than reading it after).
SETTLE_UNDER_LEASE, SETTLE_UNFINISHED = (
    settle.values(**_OUTCOME).returning(images.c.callback_url) for settle in (SETTLE_UNDER_LEASE, SETTLE_UNFINISHED)
)


class Leases:
    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(
        self, image_id: str, owner: str, lease_seconds: float, max_attempts: int, worker: str | None = None
    ) -> ClaimResult:
        """Take the image for processing unless it is finished, deleted, or leased to another live task.

        A lease is free when its time ran out, when it is this task's own (a retry or a redelivery), or when the
        worker that holds it is dead (see `workers.dead_lease`). Taking an image counts an attempt, except taking
        back one's own lease: a task retried for a storage hiccup has not been interrupted."""
        now = utcnow()
        parameters = {
            "image_id": image_id, "owner": owner, "worker": worker, "max_attempts": max_attempts, "now": now,
            "alive_since": now - timedelta(seconds=WORKER_TIMEOUT), "until": now + timedelta(seconds=lease_seconds),
        }
        with self._db.begin() as conn:
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
        if row.status in (ImageStatus.SUCCESS, ImageStatus.FAILURE):
            return ClaimResult(Claim.FINISHED)
        if row.status == ImageStatus.PROCESSING and not row.dead and row.lease_owner != owner:
            return ClaimResult(Claim.BUSY, min((row.lease_until - now).total_seconds() + 1, WORKER_TIMEOUT))
        if row.attempts >= max_attempts:
            return ClaimResult(Claim.EXHAUSTED)
        return ClaimResult(Claim.BUSY, 1.0)  # the row changed between the update and this read: look again soon

    def release(self, image_id: str, owner: str, resend: bool) -> None:
        """Give a claim back: the attempt is over, the image pending again. With `resend`, the next recovery
        sweep sends it (its work could not be done for a passing reason); without, the caller claims it again."""
        with self._db.begin() as conn:
            conn.execute(
                images.update()
                .where(images.c.id == image_id, _PROCESSING, images.c.lease_owner == owner)
                .values(
                    status=ImageStatus.PENDING, lease_owner=None, lease_worker=None, lease_until=None,
                    enqueued_at=NEVER if resend else utcnow(),
                )
            )

    def finish(
        self, image_id: str, owner: str, image_metadata: dict[str, Any], thumbnail: dict[str, Any], *,
        webhook_url: str,
    ) -> bool:
        """Record success under this task's lease; False when the image was deleted or is no longer ours.
        `webhook_url` is the operator's (APERCU_WEBHOOK_URL, "" for none), told beside the uploader's callback."""
        return self._settle(
            SETTLE_UNDER_LEASE, image_id, owner, webhook_url,
            outcome=ImageStatus.SUCCESS, message=None, facts=image_metadata, thumb=thumbnail,
        )

    def fail(
        self, image_id: str, message: str, image_metadata: dict[str, Any] | None = None, owner: str | None = None,
        *, webhook_url: str,
    ) -> bool:
        """Record failure with a message for the client, if the image is still unfinished and, with `owner`,
        pending or under that task's lease; False otherwise (deleted, finished, or taken by another task).
        `webhook_url` as for `finish`."""
        return self._settle(
            SETTLE_UNFINISHED if owner is None else SETTLE_UNDER_LEASE, image_id, owner, webhook_url,
            outcome=ImageStatus.FAILURE, message=message, facts=image_metadata, thumb=None,
        )

    def _settle(
        self, statement: sa.Update, image_id: str, owner: str | None, webhook_url: str, **outcome: Any
    ) -> bool:
        """Record the outcome, and in the same transaction the completion webhooks to deliver for it."""
        facts = outcome["facts"] or {}
        parameters = {
            "image_id": image_id, "owner": owner, "at": utcnow(), "sha256": facts.get("sha256"),
            "phash": phash_to_int(facts["phash"]) if "phash" in facts else None, **outcome,
        }
        with self._db.begin() as conn:
            settled = conn.execute(statement, parameters).first()
            if settled is None:
                return False
            announce_settled(conn, image_id)
            add_for_settled(conn, image_id, parameters["at"], settled.callback_url, webhook_url)
            return True

    def mark_unsent(self, image_id: str) -> None:
        """The task could not be published: date the sending back so that the next sweep sends it."""
        with self._db.begin() as conn:
            conn.execute(images.update().where(images.c.id == image_id).values(enqueued_at=NEVER))

    def mark_lost_as_resent(self, pending_before: datetime, abandoned_before: datetime) -> list[str]:
        """The images whose processing may have been lost, each marked as sent again now (the caller sends them):
        pending since before `pending_before`, or processing under a dead lease (see `workers.dead_lease`) and
        not re-sent since `abandoned_before`. Marking them is what keeps one sweep from re-sending what the
        previous one just sent."""
        now = utcnow()
        condition = sa.or_(
            sa.and_(_PENDING, images.c.enqueued_at < pending_before),
            sa.and_(_PROCESSING, dead_lease(now), images.c.enqueued_at < abandoned_before),
        )
        with self._db.begin() as conn:
            return list(
                conn.scalars(images.update().where(condition).values(enqueued_at=now).returning(images.c.id))
            )
