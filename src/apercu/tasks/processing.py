"""One image's processing: claim the row -> load the original -> imaging in a sandbox -> record the outcome.

Every way out leaves the image in a final state, or free for the next attempt at once:
- the file's own failure (`ProcessingFailed`, the time limit) is recorded as `failure` with its message;
- a crashed imaging process (`ChildDied`: a segfault, a SIGKILL, the OOM killer) is retried on the spot, under
  a new claim that counts one more attempt, until `max_attempts` is reached and the image fails saying why;
- storage and database errors propagate, for the task to retry them (they pass; the image is still good);
- anything else is a bug of ours, recorded by the task as `failure` with a reference to the logged traceback.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import timedelta
from typing import Any

from apercu.config import Settings
from apercu.imaging.analyse import Analysis, ProcessingFailed
from apercu.imaging.gps import without_location
from apercu.imaging.thumbnail import OUTPUTS
from apercu.storage import Storage, keys, open_storage
from apercu.storage.blobs import BlobMissing
from apercu.storage.catalog import FAILURE, SUCCESS, Claim, utcnow
from apercu.tasks.outcomes import Outcome, failed, failed_with, report, report_render, succeeded
from apercu.tasks.sandbox import ChildDied, Sandbox, TimeLimitExceeded

log = logging.getLogger(__name__)
# A lease outlives the time limit by this much: the database work around the imaging call.
LEASE_MARGIN = 20


class Processor:
    """Everything one image's processing needs: storage, opened lazily once per process, and a sandbox per thread.

    `worker` is the id under which this process beats (see `storage.catalog.dead_lease`): leases taken under it
    are freed as soon as the process stops beating."""

    def __init__(self, settings: Settings, worker: str | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self.options = settings.imaging_options()
        self._storage: Storage | None = None
        self._local = threading.local()

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = open_storage(self.settings, durable=False)  # a lost commit means work done again
        return self._storage

    @property
    def sandbox(self) -> Sandbox:
        """This thread's imaging process (started on first use, restarted after a crash)."""
        if not hasattr(self._local, "sandbox"):
            self._local.sandbox = Sandbox(self.settings.worker_memory_limit * 1024 * 1024)
        sandbox: Sandbox = self._local.sandbox
        return sandbox

    @property
    def lease_seconds(self) -> float:
        return self.settings.task_time_limit + LEASE_MARGIN

    def process(self, image_id: str, owner: str) -> tuple[Claim, float]:
        """Process one image if this caller may; returns the claim outcome and, when busy, when to retry."""
        catalog, attempts = self.storage.catalog, self.settings.max_attempts
        last_crash, started = "", time.monotonic()
        while True:
            claim = catalog.claim(image_id, owner, self.lease_seconds, attempts, worker=self.worker)
            if claim.outcome is Claim.EXHAUSTED:
                reason = f" (the last time: {last_crash})" if last_crash else ""
                if catalog.fail(image_id, f"processing was interrupted {attempts} times{reason}; giving up"):
                    report(image_id, failed("crashed"), time.monotonic() - started)
            if claim.outcome is not Claim.CLAIMED:
                return claim.outcome, claim.retry_in
            try:
                report(image_id, self._work(image_id, owner), time.monotonic() - started)
                return Claim.CLAIMED, 0.0
            except ChildDied as exc:
                last_crash = str(exc)
                log.warning("image %s: %s; trying again", image_id, exc)
                catalog.release(image_id, owner, resend=False)  # so that the next claim counts an attempt

    def _work(self, image_id: str, owner: str) -> Outcome:
        catalog = self.storage.catalog
        try:
            original = self.storage.open_original(image_id)
        except BlobMissing:
            catalog.fail(image_id, "the original file is missing from storage", owner=owner)
            return failed("missing_original")
        try:
            with original:
                result = self.sandbox.analyse(original, self.options, self.settings.task_time_limit)
        except (ProcessingFailed, TimeLimitExceeded) as exc:
            salvaged = getattr(exc, "metadata", None)
            catalog.fail(image_id, str(exc), self._kept(salvaged) if salvaged else None, owner=owner)
            return failed_with(exc)
        log.debug("image %s: imaging peak RSS %d MiB", image_id, self.sandbox.peak_rss // (1024 * 1024))
        self._record_success(image_id, owner, result)
        return succeeded(result.metadata)

    def _record_success(self, image_id: str, owner: str, result: Analysis) -> None:
        """Thumbnail first, then the row; a delete that won the race leaves no thumbnail behind (while a task
        that took the image over keeps the thumbnail both wrote)."""
        jpeg = result.thumbnail.data
        key = self.storage.put_thumbnail(image_id, self.settings.thumbnail_size, "jpg", jpeg)
        thumb = {
            "key": key,
            "width": result.thumbnail.width,
            "height": result.thumbnail.height,
            "bytes": len(jpeg),
            "etag": hashlib.sha256(jpeg).hexdigest()[:32],
        }
        if not self.storage.catalog.finish(image_id, owner, self._kept(result.metadata), thumb):
            self.storage.forget_if_unrecorded(image_id)

    def _kept(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The metadata as it may be stored: without any location under APERCU_GPS=drop."""
        return without_location(metadata) if self.settings.gps == "drop" else metadata

    def render(self, image_id: str, size: int, ext: str) -> None:
        """Another size or format of a processed image's thumbnail, asked for by a first request: stored under
        its key, or the request's record says why it cannot be (the web answers that instead of waiting)."""
        key, fmt = keys.thumbnail(image_id, size, ext), OUTPUTS[ext][0]
        catalog = self.storage.catalog
        try:
            original = self.storage.open_original(image_id)
        except BlobMissing:  # (a delete meanwhile took the request's row with the image: this changes nothing)
            catalog.render_failed(image_id, key, "the original file is missing from storage")
            report_render(image_id, size, ext, FAILURE)
            return
        try:
            with original:
                thumb = self.sandbox.render_variant(original, self.options, self.settings.task_time_limit, size, fmt)
        except (ProcessingFailed, TimeLimitExceeded, ChildDied) as exc:
            catalog.render_failed(image_id, key, str(exc))
            report_render(image_id, size, ext, FAILURE)
            return
        self.storage.put_thumbnail(image_id, size, ext, thumb.data)
        catalog.render_done(image_id, key)
        self.storage.forget_if_unrecorded(image_id)
        report_render(image_id, size, ext, SUCCESS)

    def render_failed_unexpectedly(self, image_id: str, size: int, ext: str, reference: str) -> None:
        message = f"internal error while rendering this thumbnail (reference {reference})"
        self.storage.catalog.render_failed(image_id, keys.thumbnail(image_id, size, ext), message)
        report_render(image_id, size, ext, FAILURE)

    def fail_unexpectedly(self, image_id: str, owner: str, reference: str) -> None:
        """A bug of ours: the image fails with a reference to the logged traceback instead of waiting forever."""
        message = f"internal error while processing this image (reference {reference})"
        if self.storage.catalog.fail(image_id, message, owner=owner):
            report(image_id, failed("internal"), None)

    def stale(self, pending_for_seconds: float) -> list[str]:
        """Images whose task may have been lost, marked as re-sent (see `Catalog.stale`)."""
        now = utcnow()
        abandoned_for = min(pending_for_seconds, self.settings.recovery_interval)
        return self.storage.catalog.stale(
            now - timedelta(seconds=pending_for_seconds), now - timedelta(seconds=abandoned_for)
        )

    def close(self) -> None:
        """Stop this thread's imaging process (at worker shutdown)."""
        if hasattr(self._local, "sandbox"):
            self._local.sandbox.close()
