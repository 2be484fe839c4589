"""One image's processing: claim the row -> load the original -> imaging in a sandbox -> record the outcome.

An upload by URL is recorded without its original: the attempt that finds none fetches it first (`outbound.fetch`,
sniffed like any upload) and stores it, then goes on as for any image; a fetch that fails is the image's failure,
saying why. A worker that dies mid-fetch stored nothing: the attempt after the lease's recovery fetches again.

Every way out leaves the image in a final state, or free for the next attempt at once:
- the file's own failure (`ProcessingFailed`, the time limit) is recorded as `failure` with its message;
- a crashed imaging process (`ChildDied`: a segfault, a SIGKILL, the OOM killer) is retried on the spot, under
  a new claim that counts one more attempt, until `max_attempts` is reached and the image fails saying why;
- a dependency's outage (`storage.outages.classify`: the blob store, the catalog or the broker away)
  propagates, for the task to retry under the same lease and then give back for recovery (never `failure`);
- anything else is a bug of ours, recorded by the task as `failure` with a reference to the logged traceback.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from datetime import timedelta
from typing import IO

from apercu.config import Settings
from apercu.imaging.analyse import Analysis, ProcessingFailed
from apercu.imaging.formats import sniff
from apercu.imaging.gps import allowed_metadata
from apercu.outbound.fetch import FetchFailed, fetch
from apercu.storage import Storage, open_storage
from apercu.storage.blobs import BlobMissing
from apercu.storage.catalog import Claim, ImageStatus, utcnow
from apercu.tasks.jobs import RenderJob
from apercu.tasks.outcomes import Outcome, failed, failed_with, report, report_fetch, report_render, succeeded
from apercu.tasks.sandbox import ChildDied, Sandbox, TimeLimitExceeded

log = logging.getLogger(__name__)
# A lease outlives the time limit by this much: the database work around the imaging call.
LEASE_MARGIN = 20


class Processor:
    """Everything one image's processing needs: storage, opened lazily once per process, and a sandbox per thread.

    `worker` is the id under which this process beats (see `storage.catalog.workers.dead_lease`): leases taken under it
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
            self._storage = open_storage(self.settings, durable=False)  # SQLite: a lost commit means work done again
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
        """Long enough for the longest attempt: an upload by URL's fetch (up to APERCU_FETCH_DEADLINE), then the
        analysis (up to the time limit). A lease that ran out mid-attempt would let a second worker take the image
        and do it all again. (A dead worker's images are taken over by its missed heartbeats, long before this.)"""
        return self.settings.fetch_deadline + self.settings.task_time_limit + LEASE_MARGIN

    def process(self, image_id: str, owner: str) -> tuple[Claim, float]:
        """Process one image if this caller may; returns the claim outcome and, when busy, when to retry."""
        leases, attempts = self.storage.catalog.leases, self.settings.max_attempts
        last_crash, started = "", time.monotonic()
        while True:
            claim = leases.claim(image_id, owner, self.lease_seconds, attempts, worker=self.worker)
            if claim.outcome is Claim.EXHAUSTED:
                reason = f" (the last time: {last_crash})" if last_crash else ""
                message = f"processing was interrupted {attempts} times{reason}; giving up"
                if leases.fail(image_id, message, webhook_url=self.settings.webhook_url):
                    report(image_id, failed("crashed"), time.monotonic() - started)
            if claim.outcome is not Claim.CLAIMED:
                return claim.outcome, claim.retry_in
            try:
                report(image_id, self._work(image_id, owner), time.monotonic() - started)
                return Claim.CLAIMED, 0.0
            except ChildDied as exc:
                last_crash = str(exc)
                log.warning("image %s: %s; trying again", image_id, exc)
                leases.release(image_id, owner, resend=False)  # so that the next claim counts an attempt

    def _work(self, image_id: str, owner: str) -> Outcome:
        leases, webhook_url = self.storage.catalog.leases, self.settings.webhook_url
        try:
            original = self._original(image_id)
        except BlobMissing:
            leases.fail(image_id, "the original file is missing from storage", owner=owner, webhook_url=webhook_url)
            return failed("missing_original")
        except FetchFailed as exc:
            leases.fail(image_id, f"could not fetch the image: {exc}", owner=owner, webhook_url=webhook_url)
            return failed("fetch")
        try:
            with original:
                result = self.sandbox.analyse(original, self.options, self.settings.task_time_limit)
        except (ProcessingFailed, TimeLimitExceeded) as exc:
            salvaged = getattr(exc, "metadata", None)
            kept = allowed_metadata(salvaged, self.settings.gps) if salvaged else None
            leases.fail(image_id, str(exc), kept, owner=owner, webhook_url=webhook_url)
            return failed_with(exc)
        log.debug("image %s: imaging peak RSS %d MiB", image_id, self.sandbox.peak_rss // (1024 * 1024))
        self._record_success(image_id, owner, result)
        return succeeded(result.metadata)

    def _original(self, image_id: str) -> IO[bytes]:
        """The stored original; an upload by URL's is fetched and stored first when no earlier attempt stored it.
        BlobMissing when there is none to be had, FetchFailed when the fetch failed."""
        try:
            return self.storage.open_original(image_id)
        except BlobMissing:
            record = self.storage.catalog.images.get(image_id)
            if record is None or record.source_url is None:
                raise
        with tempfile.TemporaryFile(dir=self.storage.staging.folder) as fetched:
            self._fetch(record.source_url, fetched)
            self.storage.put_original(image_id, fetched)
        return self.storage.open_original(image_id)

    def _fetch(self, url: str, sink: IO[bytes]) -> None:
        """The URL's bytes into `sink`, under the outbound policy and the upload size limit, then recognised as
        an image of a supported format the way an upload is; counted by outcome."""
        settings = self.settings
        try:
            fetch(url, sink, allowed_hosts=settings.fetch_allowed_hosts, max_bytes=settings.max_upload_bytes,
                  timeout=settings.fetch_timeout, total=settings.fetch_deadline)
            sink.seek(0)
            if sniff(sink) is None:  # type: ignore[arg-type]
                raise FetchFailed("not_an_image", "not an image in a supported format")
        except FetchFailed as exc:
            report_fetch(exc.outcome)
            raise
        report_fetch("success")

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
        metadata, webhook_url = allowed_metadata(result.metadata, self.settings.gps), self.settings.webhook_url
        if not self.storage.catalog.leases.finish(image_id, owner, metadata, thumb, webhook_url=webhook_url):
            self.storage.forget_if_unrecorded(image_id)

    def render(self, job: RenderJob) -> None:
        """A thumbnail variant or a rendition of a processed image, asked for by a first request: stored under
        its key, or the request's record says why it cannot be (the web answers that instead of waiting)."""
        renders = self.storage.catalog.renders
        try:
            original = self.storage.open_original(job.image_id)
        except BlobMissing:  # (a delete meanwhile took the request's row with the image: this changes nothing)
            renders.failed(job.image_id, job.key, "the original file is missing from storage")
            report_render(job, ImageStatus.FAILURE)
            return
        try:
            with original:
                data = job.render(self, original)
        except (ProcessingFailed, TimeLimitExceeded, ChildDied) as exc:
            renders.failed(job.image_id, job.key, str(exc))
            report_render(job, ImageStatus.FAILURE)
            return
        self.storage.blobs.put(job.key, data, durable=False)  # a variant: made again when found missing or empty
        if not renders.done(job.image_id, job.key, len(data)):  # (recorded: its image was, after the write)
            self.storage.forget_if_unrecorded(job.image_id)
        report_render(job, ImageStatus.SUCCESS)

    def render_failed_unexpectedly(self, job: RenderJob, reference: str) -> None:
        message = f"internal error while rendering this {job.kind} (reference {reference})"
        self.storage.catalog.renders.failed(job.image_id, job.key, message)
        report_render(job, ImageStatus.FAILURE)

    def render_unsent(self, job: RenderJob) -> None:
        """A render handed back for an outage: kept as requested (never failed for it), sent again by the next
        request for it (`storage.catalog.renders.Renders.unsent`)."""
        self.storage.catalog.renders.unsent(job.image_id, job.key)

    def fail_unexpectedly(self, image_id: str, owner: str, reference: str) -> None:
        """A bug of ours: the image fails with a reference to the logged traceback instead of waiting forever."""
        message = f"internal error while processing this image (reference {reference})"
        if self.storage.catalog.leases.fail(image_id, message, owner=owner, webhook_url=self.settings.webhook_url):
            report(image_id, failed("internal"), None)

    def mark_lost_as_resent(self, pending_for_seconds: float) -> list[str]:
        """Images whose task may have been lost, marked as re-sent for the caller to send (see
        `Leases.mark_lost_as_resent`)."""
        now = utcnow()
        abandoned_for = min(pending_for_seconds, self.settings.recovery_interval)
        return self.storage.catalog.leases.mark_lost_as_resent(
            now - timedelta(seconds=pending_for_seconds), now - timedelta(seconds=abandoned_for)
        )

    def close(self) -> None:
        """Stop this thread's imaging process (at worker shutdown)."""
        if hasattr(self._local, "sandbox"):
            self._local.sandbox.close()
