"""The domain operations, between HTTP (`api`) and storage and tasks: submit, get (and wait), list, delete, and
the thumbnail or one of its variants.

Routes only translate HTTP to these calls and their answers (typed records, and the errors below) back to HTTP;
the rules live here: an accepted upload is stored, recorded, then queued (or left to the recovery sweep when the
broker is down); a delete removes the record first, then the files; a variant is rendered once, on first request.
Webhooks, authentication and metrics each hang on one place here.

Every operation a client asks for is confined to a tenant the route passes: an upload is the caller's tenant's
(`tenant: str`); reads, searches and deletes see one tenant's images (`tenant: str | None`, None for every
tenant: admin), another tenant's being NotFound exactly as a missing one (the catalog's `within`). A rendition by
its signed URL is not scoped: the signature is the grant.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import IO, NoReturn, TypeVar
from urllib.parse import urlsplit

from celery import Celery

from apercu import outbound, webhooks
from apercu.config import Settings
from apercu.images import Image, client_view
from apercu.imaging.renditions.geometry import plan
from apercu.imaging.renditions.options import Rendition
from apercu.logs import current_request_id
from apercu.rendition_urls import preset_urls, view_urls
from apercu.storage import Storage, blob_keys
from apercu.storage.blobs import BlobInfo, BlobMissing
from apercu.storage.catalog import (
    DeliveryRecord,
    ExclusiveClaims,
    Holder,
    ImageRecord,
    ImageStatus,
    Outline,
    RenderState,
    utcnow,
)
from apercu.storage.catalog.kept import TOUCH_EVERY
from apercu.storage.outages import log_failure
from apercu.storage.watcher import Watcher
from apercu.tasks import LEASE_MARGIN, RenderJob, RenditionJob, ThumbnailJob, enqueue, enqueue_render
from apercu.webhooks import send_due

log = logging.getLogger(__name__)
Read = TypeVar("Read", Image, Outline)  # what a wait for an image reads of it
MAX_TOUCHED = 100_000  # kept files whose last recorded use a web process remembers, before it starts over


class NotFound(Exception):
    """No image with this id (never was, or deleted)."""


class NotReady(Exception):
    """The image is still being processed: ask again later."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the thumbnail is not ready yet (status: {status})")
        self.status = status


class InvalidCallback(Exception):
    """An upload's `callback_url` that will never be called; the message says why."""


class InvalidSourceUrl(Exception):
    """An upload's `url` that will never be fetched (refused by its text alone); the message says why."""


class NoFingerprint(Exception):
    """The image has no perceptual hash to compare others with; the message says why."""


class NoThumbnail(Exception):
    """Processing failed, so there is no thumbnail; the message says why."""


@dataclass(frozen=True)
class Submitted:
    image: Image
    created: bool  # False: an earlier upload's image, answered again (same idempotency key, or same bytes)
    duplicate: bool = False  # answered with a stored image of the same bytes (APERCU_DEDUP=reuse)


@dataclass(frozen=True)
class ThumbnailFile:
    key: str  # in the blob store
    etag: str
    size: int


@dataclass(frozen=True)
class Service:
    """What the routes work with, kept in app.extensions["apercu"]."""

    settings: Settings
    storage: Storage
    celery: Celery
    watcher: Watcher
    touched: dict[str, float] = field(default_factory=dict)  # kept files' last recorded use (`_used`), monotonic

    def replay(self, key: str, *, tenant: str) -> Submitted | None:
        """The image an earlier upload of `tenant` with this idempotency key created, while the key is kept; else
        None."""
        found = self.storage.catalog.claims.image_for_key(key, self._keys_expire_before(), tenant)
        return None if found is None else Submitted(self._image_of(found), created=False)

    def _keys_expire_before(self) -> datetime:
        return utcnow() - timedelta(seconds=self.settings.idempotency_ttl)

    def submit(
        self, upload: IO[bytes], filename: str | None, key: str | None = None, callback_url: str | None = None,
        *, tenant: str,
    ) -> Submitted:
        """Store an upload already checked to be an image, record it as `tenant`'s, queue it. With an idempotency
        key that a concurrent upload recorded first, that upload's image is the answer and this copy is dropped;
        with deduplication, so is a stored image of the tenant with the same bytes (looked up first, so that
        nothing is stored)."""
        self._check_callback(callback_url)
        claims = ExclusiveClaims(key, self._keys_expire_before() if key else None, self._content_of(upload))
        if claims.sha256 and (same := self.storage.catalog.claims.image_with_content(claims.sha256, tenant)):
            self._add_callback(same.id, callback_url)
            return Submitted(self._image_of(same), created=False, duplicate=True)
        image_id = uuid.uuid4().hex
        self.storage.put_original(image_id, upload)
        try:
            record, holder = self._record(image_id, filename, claims, callback_url, tenant)
        except Exception:
            self.storage.delete_files(image_id)
            raise
        if holder is None:
            self._enqueue_or_leave_to_recovery(image_id)
        else:
            self.storage.delete_files(image_id)
            if holder is Holder.CONTENT:
                self._add_callback(record.id, callback_url)
        return Submitted(self._image_of(record), created=holder is None, duplicate=holder is Holder.CONTENT)

    def submit_url(
        self, url: str, key: str | None = None, callback_url: str | None = None, *, tenant: str,
    ) -> Submitted:
        """Record an upload by URL as `tenant`'s, without its original, and queue it: the worker fetches the
        bytes, then processes them as any upload's (see `tasks.processing`). The URL is checked here as far as its
        text tells (InvalidSourceUrl: no connection is made for a URL that can never be fetched), and again,
        resolved, by the fetch. An idempotency key works as for any upload; deduplication, which needs the bytes,
        does not apply."""
        self._check_callback(callback_url)
        try:
            outbound.check(url, self.settings.fetch_allowed_hosts)
        except outbound.Refused as exc:
            raise InvalidSourceUrl(f"url: {exc}") from None
        image_id, filename = uuid.uuid4().hex, PurePosixPath(urlsplit(url).path).name or None
        claims = ExclusiveClaims(key, self._keys_expire_before() if key else None)
        record, holder = self._record(image_id, filename, claims, callback_url, tenant, url)
        if holder is None:
            self._enqueue_or_leave_to_recovery(image_id)
        return Submitted(self._image_of(record), created=holder is None)

    def _record(
        self, image_id: str, filename: str | None, claims: ExclusiveClaims, callback_url: str | None, tenant: str,
        source_url: str | None = None,
    ) -> tuple[ImageRecord, Holder | None]:
        """A new image's row, unless another image holds one of its claims: then that image's, and what it holds."""
        if claims == ExclusiveClaims():
            return self.storage.catalog.images.add(image_id, filename, callback_url, tenant, source_url), None
        return self.storage.catalog.claims.add_image(image_id, filename, claims, callback_url, tenant, source_url)

    def _add_callback(self, image_id: str, url: str | None) -> None:
        """A duplicate's uploader is told too, when the image settles (at once if it has)."""
        if url is not None and self.storage.catalog.deliveries.add(image_id, url):
            try:
                send_due(self.celery, self.storage.catalog, image_id)
            except Exception as exc:  # noqa: BLE001 - recorded: the recovery sweep sends it
                log_failure(log, exc, "could not queue the webhook of %s; the recovery sweep will", image_id)

    def _check_callback(self, url: str | None) -> None:
        """An upload's `callback_url`, checked as far as its text tells (its host is resolved and checked again
        at every delivery: see `outbound.addresses`)."""
        if url is None:
            return
        if not self.settings.webhook_secret:
            raise InvalidCallback("this service sends no webhooks: APERCU_WEBHOOK_SECRET is not set")
        try:
            webhooks.check(url, self.settings.webhook_allowed_hosts)
        except webhooks.Refused as exc:
            raise InvalidCallback(f"callback_url: {exc}") from None

    def _content_of(self, upload: IO[bytes]) -> str | None:
        """The upload's SHA-256 when deduplication needs it (it costs the web ~2 ms of CPU per MB)."""
        if self.settings.dedup != "reuse":
            return None
        upload.seek(0)
        return hashlib.file_digest(upload, "sha256").hexdigest()  # type: ignore[arg-type]

    def _enqueue_or_leave_to_recovery(self, image_id: str) -> None:
        try:
            enqueue(self.celery, image_id, current_request_id())  # the worker's lines for it carry the id
        except Exception as exc:  # noqa: BLE001 - the image is durable; the worker's next recovery sweep sends it
            log_failure(log, exc, "could not enqueue %s; the next recovery sweep will send it", image_id)
            try:
                self.storage.catalog.leases.mark_unsent(image_id)
            except Exception as unmarked:  # noqa: BLE001 - still accepted
                log_failure(log, unmarked, "could not mark %s as unsent; a sweep sends it later", image_id)

    def get(self, image_id: str, wait: float = 0.0, *, tenant: str | None) -> Image:
        """The image with its uploaders' webhook deliveries, after waiting up to `wait` seconds for its processing
        to end; NotFound when `tenant` has none (None: any tenant)."""
        image = self._waited(image_id, wait, tenant)
        if self.settings.webhook_secret:  # (without one there are no webhooks: no query)
            image = replace(image, deliveries=self._uploaders_deliveries(image_id))
        return image

    def _waited(self, image_id: str, wait: float, tenant: str | None) -> Image:
        """(Another tenant's image is NotFound before any wait: it is not waited for.)"""
        return self._settled_or_waited(image_id, wait, lambda: self._image(image_id, tenant))

    def _settled_or_waited(self, image_id: str, wait: float, read: Callable[[], Read]) -> Read:
        """`read()` of the image, once it settled or after up to `wait` seconds. A settled image costs one read
        and no watcher; else the watch starts before a second read (the watcher tells of what settles from then
        on only), and a read follows the wait."""
        found = read()
        if found.settled or wait <= 0:
            return found
        with self.watcher.watching(image_id) as settled:
            found = read()
            if not found.settled:
                settled(wait)
                found = read()
        return found

    def _uploaders_deliveries(self, image_id: str) -> tuple[DeliveryRecord, ...]:
        """The deliveries to uploaders' callbacks; the operator's APERCU_WEBHOOK_URL (which may itself be a
        secret, like a chat webhook) and what its receiver answered are not shown to API clients."""
        found = self.storage.catalog.deliveries.of_image(image_id)
        return tuple(d for d in found if d.url != self.settings.webhook_url)

    def _image(self, image_id: str, tenant: str | None) -> Image:
        record = self.storage.catalog.images.get(image_id, tenant)
        if record is None:
            raise NotFound(image_id)
        return self._image_of(record)

    def _image_of(self, record: ImageRecord) -> Image:
        keys = self.storage.catalog.keys
        return replace(client_view(record, self.settings.gps), renditions=preset_urls(self.settings, keys, record.id),
                       views=view_urls(self.settings, keys, record.id))

    def with_sha256(self, sha256: str, limit: int, *, tenant: str | None) -> list[Image]:
        """The images of `tenant` whose original has these bytes, newest first."""
        found = self.storage.catalog.images.with_sha256(sha256, limit, tenant)
        return [self._image_of(record) for record in found]

    def similar(self, image_id: str, max_distance: int, limit: int, *, tenant: str | None) -> list[tuple[Image, int]]:
        """Images of `tenant` that look like this one of its own (perceptual hashes within `max_distance` bits),
        nearest first, itself included at distance 0. NotReady while it is processed, NoFingerprint when it has no
        perceptual hash."""
        image = self._image(image_id, tenant)
        if not image.settled:
            raise NotReady(image.status)
        phash = (image.metadata or {}).get("phash")
        if not isinstance(phash, str):
            raise NoFingerprint("this image has no perceptual hash (its processing failed, or predates them)")
        found = self.storage.catalog.images.similar(phash, max_distance, limit, tenant)
        return [(self._image_of(record), distance) for record, distance in found]

    def page(self, limit: int, after: tuple[datetime, str] | None = None, *, tenant: str | None) -> list[Image]:
        """`tenant`'s images, newest first; `after` is the (uploaded_at, id) of the last image of the previous
        page."""
        return [self._image_of(record) for record in self.storage.catalog.images.page(limit, after, tenant)]

    def delete(self, image_id: str, *, tenant: str | None) -> None:
        """The record first, then the files: a worker that finishes meanwhile sees the record gone and removes
        what it wrote (see `Storage.forget_if_unrecorded`). The blob store is asked first whether it answers, so
        that its outage refuses the delete (503) before the record is gone, rather than after."""
        self.storage.blobs.exists(blob_keys.original(image_id))
        if not self.storage.catalog.images.delete(image_id, tenant):
            raise NotFound(image_id)
        self.storage.delete_files(image_id)

    def thumbnail(
        self, image_id: str, size: int, ext: str, wait: float = 0.0, *, tenant: str | None
    ) -> ThumbnailFile:
        """The stored thumbnail, or another size or format of it (rendered by a worker on first request and
        kept). NotReady while processing or rendering, NoThumbnail when that failed, NotFound for no image of
        `tenant`'s."""
        started = time.monotonic()
        image = self._waited(image_id, wait, tenant)  # (not `get`: a thumbnail needs no webhook deliveries)
        if not image.settled:
            raise NotReady(image.status)
        if image.thumbnail is None:
            raise NoThumbnail(f"processing failed ({image.error})")
        if ext == "jpg" and size == self.settings.thumbnail_size and "key" in image.thumbnail:
            return ThumbnailFile(image.thumbnail["key"], image.thumbnail["etag"], image.thumbnail["bytes"])
        return self._variant(ThumbnailJob(image_id, size, ext), started + wait - time.monotonic())

    def rendition(self, image_id: str, rendition: Rendition) -> tuple[ThumbnailFile, str | None]:
        """A rendition (resolved to a format) and its image's file name: rendered by a worker on first request and
        kept, the request waiting up to `APERCU_RENDITION_WAIT` seconds for that and for the image's processing
        (NotReady after that). NotFound for no image, NoThumbnail when processing or the render failed,
        BadOption for an output larger than `APERCU_MAX_RENDITION_PIXELS` (before anything is rendered). Whoever's
        the image is: the URL's signature grants it."""
        started, wait = time.monotonic(), self.settings.rendition_wait
        image = self._settled_or_waited(image_id, wait, lambda: self._outline(image_id))
        if not image.settled:
            raise NotReady(image.status)
        if image.status is not ImageStatus.SUCCESS or image.width is None or image.height is None:
            raise NoThumbnail(f"processing failed ({image.error})")
        plan(rendition, image.width, image.height, self.settings.max_rendition_pixels)
        job = RenditionJob(image_id, rendition.key())
        return self._variant(job, started + wait - time.monotonic()), image.filename

    def _outline(self, image_id: str) -> Outline:
        if (outline := self.storage.catalog.images.outline(image_id)) is None:
            raise NotFound(image_id)
        return outline

    def _variant(self, job: RenderJob, wait: float) -> ThumbnailFile:
        """The variant once stored (its use recorded for the sweep); else its render is requested (queued once
        however many ask) and, with `wait` left, waited for on the watcher, as an image's processing is (a worker
        announces its end)."""
        if (info := self._stat(job.key)) is None and (info := self._request_render(job)) is None:
            if wait <= 0 or not self._rendered(job, wait):
                raise NotReady("rendering")
            info = self._stat(job.key) or self._not_rendered(job)
        else:
            self._used(job.key)
        return ThumbnailFile(job.key, info.etag, info.size)

    def _rendered(self, job: RenderJob, wait: float) -> bool:
        """Whether the render requested ended within `wait` seconds: watched from now on, and looked at once, since
        it may have ended after it was requested. (Not watched before the request: until its row is recorded, no
        row reads as "ended".)"""
        with self.watcher.watching(job.key) as ended:
            return job.key in self.storage.catalog.settling.settled_among([job.key]) or ended(wait)

    def _used(self, key: str) -> None:
        """Tell the catalog a kept file was used, at most every `TOUCH_EVERY` per file from this process (the
        sweep needs no more precision, and a request no write); never failing the request that uses it."""
        now = time.monotonic()
        if now - self.touched.get(key, -TOUCH_EVERY) < TOUCH_EVERY:
            return
        if len(self.touched) > MAX_TOUCHED:
            self.touched.clear()
        self.touched[key] = now
        try:
            self.storage.catalog.kept.touch(key)
        except Exception as exc:  # noqa: BLE001 - the file is served anyway; its use is recorded next time
            log_failure(log, exc, "could not record the use of %s; serving it anyway", key)

    def _not_rendered(self, job: RenderJob) -> NoReturn:
        """Why a render that ended left no blob: NotFound when its image went, NoThumbnail when it failed; else
        the blob went missing since it was stored, and it is asked for again. (Whoever's: the request that asked
        for the render was allowed the image.)"""
        self._image(job.image_id, None)
        self._request_render(job)
        raise NotReady("rendering")

    def _stat(self, key: str) -> BlobInfo | None:
        """A kept variant's file; None when missing, or empty (the worker stores variants without fsync: after a
        machine's crash one may be), either way rendered again."""
        try:
            info = self.storage.blobs.stat(key)
        except BlobMissing:
            return None
        return info if info.size > 0 else None

    def _request_render(self, job: RenderJob) -> BlobInfo | None:
        """Queue the render unless it is queued already (many first requests, one render), or say why it failed;
        the file when a render stored it since the caller looked. A request older than a task's time limit is
        taken for lost and sent again; a file recorded as kept that is not there is forgotten and rendered again."""
        lost_before = utcnow() - timedelta(seconds=self.settings.task_time_limit + LEASE_MARGIN)
        state, error = self.storage.catalog.renders.request(job.image_id, job.key, lost_before)
        if state is RenderState.KEPT:
            if (info := self._stat(job.key)) is not None:
                return info
            self.storage.catalog.kept.forget([job.key])  # gone from the store since: render it again
            state, error = self.storage.catalog.renders.request(job.image_id, job.key, lost_before)
        if state is RenderState.FAILED:
            raise NoThumbnail(error)
        if state is RenderState.SEND:
            try:
                enqueue_render(self.celery, job, current_request_id())
            except Exception as exc:  # noqa: BLE001 - the request stays recorded: the next one sends it again
                log_failure(log, exc, "could not queue the render of %s; the next request for it will", job.key)
                self.storage.catalog.renders.unsent(job.image_id, job.key)
        return None

    def open_thumbnail(self, found: ThumbnailFile) -> IO[bytes]:
        """The thumbnail's bytes; NotFound when the image was deleted since it was found."""
        try:
            return self.storage.blobs.open(found.key)
        except BlobMissing:
            raise NotFound(found.key) from None

    def thumbnail_url(self, found: ThumbnailFile) -> str | None:
        """Where a client may fetch the thumbnail straight from the store, when `APERCU_S3_PRESIGN` asks so."""
        if self.settings.s3_presign <= 0:
            return None
        return self.storage.blobs.url(found.key, self.settings.s3_presign)
