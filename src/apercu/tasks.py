"""The Celery app and the one processing task: load blob -> imaging -> write thumbnail + metadata -> status.

The same task runs on the embedded SQLite broker and on Redis or RabbitMQ. It is safe to deliver twice: the
catalog lease (see `storage.catalog.Catalog.claim`) decides who works, and every exit path leaves the image in
a final state or in a state that recovery will pick up again. A file that crashes the decoder costs one child
process at most; after `max_attempts` interrupted tries the image is marked failed instead of looping forever.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import timedelta
from typing import Any

import sqlalchemy.exc
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from apercu.config import Settings
from apercu.imaging.analyse import Analysis, ProcessingFailed, analyse
from apercu.storage import Storage, open_storage
from apercu.storage.catalog import Claim, utcnow

TASK_NAME = "apercu.process_image"
# Storage or database hiccups: retried with backoff by the same task id, which still owns the lease.
TRANSIENT_ERRORS = (OSError, sqlalchemy.exc.OperationalError)
TRANSIENT_RETRIES = 5
# The hard time limit (the child is killed) comes this long after the soft one (the task is interrupted).
HARD_LIMIT_MARGIN = 15


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds: past the hard time limit, a holder still at work is impossible."""
    return settings.task_time_limit + HARD_LIMIT_MARGIN + 5
log = logging.getLogger(__name__)


class Processor:
    """Everything one image's processing needs; storage is opened lazily, once per (forked) process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._storage: Storage | None = None
        self.options = settings.imaging_options()

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = open_storage(self.settings)
        return self._storage

    def forget_storage(self) -> None:
        """Drop connections inherited through fork; each worker child opens its own."""
        self._storage = None

    def process(self, image_id: str, owner: str) -> tuple[Claim, float]:
        """Process one image if this caller may; returns the claim outcome and, when busy, when to retry."""
        catalog, blobs = self.storage.catalog, self.storage.blobs
        claim = catalog.claim(image_id, owner, lease_seconds(self.settings), self.settings.max_attempts)
        if claim.outcome is Claim.EXHAUSTED:
            catalog.fail(image_id, f"processing was interrupted {self.settings.max_attempts} times; giving up")
        if claim.outcome is not Claim.CLAIMED:
            return claim.outcome, claim.retry_in
        try:
            data = blobs.read_original(image_id)
        except FileNotFoundError:
            catalog.fail(image_id, "the original file is missing from storage")
            return Claim.CLAIMED, 0.0
        try:
            result = analyse(data, self.options)
        except (ProcessingFailed, SoftTimeLimitExceeded) as exc:
            catalog.fail(image_id, self._failure_message(exc), getattr(exc, "metadata", None) or None)
            return Claim.CLAIMED, 0.0
        self._record_success(image_id, result)
        return Claim.CLAIMED, 0.0

    def _failure_message(self, exc: BaseException) -> str:
        """The decoder's message, unless the time limit is what interrupted it (imaging wraps every error)."""
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, SoftTimeLimitExceeded):
                return f"processing took longer than {self.settings.task_time_limit} s"
            cause = cause.__cause__
        return str(exc)

    def _record_success(self, image_id: str, result: Analysis) -> None:
        """Thumbnail first, then the row; a delete that won the race leaves no thumbnail behind."""
        jpeg = result.thumbnail.data
        self.storage.blobs.write_thumbnail(image_id, jpeg)
        thumb = {
            "width": result.thumbnail.width,
            "height": result.thumbnail.height,
            "bytes": len(jpeg),
            "etag": hashlib.sha256(jpeg).hexdigest()[:32],
        }
        if not self.storage.catalog.finish(image_id, result.metadata, thumb):
            self.storage.blobs.delete(image_id)

    def stale(self, pending_for_seconds: float) -> list[str]:
        """Images whose task may have been lost, marked as re-sent (see `Catalog.stale`)."""
        return self.storage.catalog.stale(utcnow() - timedelta(seconds=pending_for_seconds))


def make_celery(settings: Settings) -> Celery:
    """A Celery app bound to these settings, with the processing task registered."""
    app = Celery("apercu", set_as_current=False)
    transport_options: dict[str, Any] = {}
    if settings.embedded_broker:
        import apercu.storage.sqlite_broker  # noqa: F401 - registers the transport's URL scheme

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        transport_options["polling_interval"] = settings.broker_poll_interval
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=settings.queue,
        task_soft_time_limit=settings.task_time_limit,
        task_time_limit=settings.task_time_limit + HARD_LIMIT_MARGIN,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    app.processor = Processor(settings)  # type: ignore[attr-defined]
    app.task(
        name=TASK_NAME,
        bind=True,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=True,
        max_retries=TRANSIENT_RETRIES,
    )(process_image)
    return app


def process_image(task: Task, image_id: str) -> str:
    """The Celery task body: one image, identified by its catalog id."""
    outcome, retry_in = task.app.processor.process(image_id, owner=task.request.id or image_id)
    if outcome is Claim.BUSY:
        raise task.retry(countdown=retry_in)
    return outcome.value


def enqueue(app: Celery, image_id: str) -> None:
    app.send_task(TASK_NAME, args=[image_id], queue=app.conf.task_default_queue)


def start_recovery(app: Celery, stop: threading.Event) -> threading.Thread:
    """Re-send lost work now (everything unfinished) and then every recovery_interval (what is stale)."""
    settings: Settings = app.processor.settings  # type: ignore[attr-defined]
    recovery = Processor(settings)  # its own connections, never shared with forked children

    def loop() -> None:
        grace = 0.0
        while not stop.is_set():
            try:
                ids = recovery.stale(grace)
                for image_id in ids:
                    enqueue(app, image_id)
                if ids:
                    log.info("recovery re-sent %d unfinished image(s)", len(ids))
            except Exception:  # noqa: BLE001 - a broker or database hiccup must not end recovery
                log.exception("recovery sweep failed; will try again")
            grace = float(settings.recovery_grace)
            stop.wait(settings.recovery_interval)

    thread = threading.Thread(target=loop, name="apercu-recovery", daemon=True)
    thread.start()
    return thread


def run_worker(app: Celery, concurrency: int, loglevel: str) -> None:
    """Run a Celery worker for this app in the foreground, with recovery beside it, until it is told to stop."""
    processor: Processor = app.processor  # type: ignore[attr-defined]
    processor.storage  # noqa: B018 - create the schema before any child races to
    processor.forget_storage()
    worker_process_init.connect(lambda **_: processor.forget_storage(), weak=False)
    stop = threading.Event()
    start_recovery(app, stop)
    argv = ["worker", f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    argv += [f"--queues={app.conf.task_default_queue}", f"--hostname=apercu-{processor.settings.queue}@%h"]
    if concurrency > 0:
        argv.append(f"--concurrency={concurrency}")
    try:
        app.worker_main(argv)
    finally:
        stop.set()
