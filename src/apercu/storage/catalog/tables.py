"""The catalog's tables and the statuses stored in them: what `migrations/` must build, and every module reads.

A change here needs an Alembic revision (see `apercu.storage.migrations`). Statuses are `StrEnum`s: a member is
its stored string (it compares, hashes and serialises as that string), so the rows stay exactly as before.
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa

metadata_obj = sa.MetaData()


class ImageStatus(enum.StrEnum):
    PENDING = "pending"  # recorded, waiting for a worker
    PROCESSING = "processing"  # under a worker's lease
    SUCCESS = "success"
    FAILURE = "failure"


class DeliveryStatus(enum.StrEnum):
    WAITING = "waiting"  # an uploader's callback for an image that has not settled yet
    PENDING = "pending"  # due: its next attempt is at `due_at`
    DELIVERED = "delivered"
    FAILED = "failed"


IN_PROGRESS = (ImageStatus.PENDING, ImageStatus.PROCESSING)  # an image in either is not settled yet
NEVER = datetime(1970, 1, 1)  # an `enqueued_at` that the next recovery sweep finds overdue
DEFAULT_TENANT = "default"  # the tenant of every image uploaded without keys (and of rows from before tenants)


def _tenant(primary_key: bool = False) -> sa.Column[str]:
    """Whose a row is (an image, and what a new image claims for itself alone): the uploading key's tenant."""
    return sa.Column("tenant", sa.String(64), nullable=False, server_default=DEFAULT_TENANT, primary_key=primary_key)


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
    sa.Column("lease_worker", sa.String(64), nullable=True),
    sa.Column("image_metadata", sa.JSON(none_as_null=True), nullable=True),  # None is SQL NULL, not JSON null
    sa.Column("thumbnail", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),  # of the original: known once processed (at upload with dedup)
    sa.Column("phash", sa.BigInteger, nullable=True),  # metadata.phash as a signed 64-bit integer
    sa.Column("callback_url", sa.Text, nullable=True),  # the uploader's completion webhook
    sa.Column("source_url", sa.Text, nullable=True),  # an upload by URL's: the worker fetches the original from it
    _tenant(),
    sa.Index("ix_apercu_images_newest", "uploaded_at", "id"),
    sa.Index("ix_apercu_images_tenant_newest", "tenant", "uploaded_at", "id"),  # a tenant's list, newest first
    sa.Index("ix_apercu_images_status", "status"),
    sa.Index("ix_apercu_images_sha256", "sha256", "tenant", "uploaded_at", "id"),  # (see the tenants revision)
)

workers = sa.Table(
    "apercu_workers",
    metadata_obj,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),  # hostname and PID namespace: where `pid` means something
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
)

idempotency_keys = sa.Table(
    "apercu_idempotency_keys",
    metadata_obj,
    _tenant(primary_key=True),  # a key is unique per tenant: two tenants' same key are two uploads
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("image_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Thumbnail variants a client asked for and a worker has not stored yet (a row per first request, gone once the
# render is stored), or could not render (the row keeps the reason): so that many first requests make one render.
renders = sa.Table(
    "apercu_renders",
    metadata_obj,
    sa.Column("image_id", sa.String(32), primary_key=True),
    sa.Column("variant", sa.String(128), primary_key=True),  # the thumbnail's blob key
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

# What the renders stored (thumbnail variants, renditions): a row each, with its size and when it was last asked
# for, for the sweep that bounds what they hold (APERCU_RENDITIONS_MAX_MB), least recently used first.
kept = sa.Table(
    "apercu_kept",
    metadata_obj,
    sa.Column("key", sa.String(128), primary_key=True),  # the blob key
    sa.Column("image_id", sa.String(32), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.DateTime, nullable=False),  # touched at most every `kept.TOUCH_EVERY` by each web
    sa.Index("apercu_kept_used_at", "used_at"),
    sa.Index("apercu_kept_image_id", "image_id"),
)

# Deduplication (APERCU_DEDUP=reuse): the one image kept for each content, claimed in the upload's transaction
# so that two identical uploads at once end with one image.
contents = sa.Table(
    "apercu_contents",
    metadata_obj,
    _tenant(primary_key=True),  # deduplication within a tenant: no answer names another tenant's image
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("image_id", sa.String(32), nullable=False),
)

# Completion webhooks: one row per URL to tell when an image settles, written in the settling transaction (so a
# worker dying right after cannot lose it), then delivered by its own task, retried until `delivered` or `failed`.
deliveries = sa.Table(
    "apercu_deliveries",
    metadata_obj,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("image_id", sa.String(32), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # a DeliveryStatus
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False),  # when its next attempt is meant to run (recovery re-sends)
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    sa.Index("ix_apercu_deliveries_image", "image_id"),
    sa.Index("ix_apercu_deliveries_due", "status", "due_at"),
)

# API keys made by `apercu keys create`: each key's identity and the SHA-256 of the key (never the key). A revoked
# key keeps its row (`revoked_at`), and no row is ever deleted: (rows, revoked rows) then only grows, and is the
# version every web compares every few seconds to notice a change (`keys.Keys.snapshot`).
api_keys = sa.Table(
    "apercu_api_keys",
    metadata_obj,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("scopes", sa.String(64), nullable=False),  # comma-separated: read,write,delete,admin
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),  # hex digest of the key
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
)

# Rate limits (APERCU_RATE_LIMIT, APERCU_UPLOAD_RATE_LIMIT) when the deployment has no Redis: one row per limit and
# caller (`key`: "<limit>:<caller>"), counting the caller's requests in the current fixed window, which starts at
# `window_start` (unix seconds). An upsert restarts the count when the window moved on; rows idle for an hour are swept.
rate_counts = sa.Table(
    "apercu_rate_counts",
    metadata_obj,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("hits", sa.Integer, nullable=False),
    sa.Index("ix_apercu_rate_counts_window", "window_start"),
)

# Resumable (tus) uploads under way (`catalog.uploads`): each one's length, what has arrived (`received`), where its
# bytes are (`handle`: an S3 multipart upload's id, `parts` its parts, `flushed` the bytes in them; the rest is in
# a tail object), who holds it (`owner`: the cap per key or address), and the PATCH that holds it now (`claim`,
# until `claimed_until`: one writer at a time, whichever web process). `image_id` once its last byte made an image.
uploads = sa.Table(
    "apercu_uploads",
    metadata_obj,
    sa.Column("id", sa.String(32), primary_key=True),
    _tenant(),
    sa.Column("owner", sa.String(80), nullable=False),
    sa.Column("length", sa.BigInteger, nullable=False),
    sa.Column("received", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.Text, nullable=True),
    sa.Column("upload_metadata", sa.Text, nullable=True),  # the Upload-Metadata header as sent, for HEAD
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("handle", sa.Text, nullable=True),
    sa.Column("parts", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("flushed", sa.BigInteger, nullable=False),
    sa.Column("claim", sa.String(32), nullable=True),
    sa.Column("claimed_until", sa.DateTime, nullable=True),
    sa.Column("image_id", sa.String(32), nullable=True),
    sa.Index("ix_apercu_uploads_owner", "owner", "image_id"),
    sa.Index("ix_apercu_uploads_expires", "expires_at"),
)
