"""What every worker does beside its tasks: beat, recover lost work, and clean up after crashes.

- **Heartbeat.** The worker records itself in the catalog every few seconds (`catalog.workers.beat`). Leases taken under
  its id are freed the moment it stops beating for `WORKER_TIMEOUT`, or at once when a worker on the same host
  finds its process gone (a restart after a kill -9 sees its predecessor's PID dead). The web's readiness probe
  fails while no worker beats.
- **Recovery.** At start and every `recovery_interval`, images whose work was lost are sent again: processing
  under a dead lease, or pending for longer than `recovery_grace` (their message may have died with a broker or
  a worker), and completion webhooks overdue by as long (their message was lost). Work whose message the broker
  could not take (an upload's task, a task's retry, a webhook's attempt: see `tasks.app`) is marked unsent, and
  the first sweep after the broker is back sends it, within `recovery_interval`. Sending twice is harmless:
  the claim lets one task work, and a receiver tells a repeated webhook by its delivery id.
- **Orphans.** At start and every `orphan_interval`: staging files left by crashed uploads and thumbnail writes,
  originals and thumbnails without a row (a process killed between the file and the row, or between a
  concurrent delete and its cleanup), rows whose original is gone, expired idempotency keys, and resumable uploads past
  `upload_expiry` with their bytes (`storage.partials.sweep_expired`). Everything
  younger than `orphan_grace` is left alone, so work in flight is never mistaken for debris.
- **Renditions.** Every KEPT_INTERVAL: what renders keep (renditions, thumbnail variants) beyond
  `renditions_max_mb`, least recently used first (`catalog.kept`); a later request renders it again. The orphan
  sweep adopts renditions that the store holds and the catalog does not record (kept before `apercu_kept` existed,
  or whose render's end was lost with its worker), as last used when they were written.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from celery import Celery

from apercu import metrics
from apercu.storage import blob_keys
from apercu.storage.blobs import BlobMissing
from apercu.storage.catalog import WORKER_TIMEOUT, utcnow
from apercu.storage.outages import log_failure
from apercu.storage.partials import open_partials, sweep_expired
from apercu.tasks.app import context_of, enqueue
from apercu.tasks.processing import Processor
from apercu.webhooks import send_due

log = logging.getLogger(__name__)
BEAT_INTERVAL = WORKER_TIMEOUT / 4
PAGE = 500
T = TypeVar("T")
# More rows than this without their original, in one page, looks like storage that is not mounted: touch nothing.
MAX_MISSING_ORIGINALS = 50
KEPT_INTERVAL = 60.0  # seconds between sweeps of what renders keep: one SUM over a small table
MIB = 1024 * 1024


def host_identity() -> str:
    """Where a PID means one process: the host name and the PID namespace (containers share host names)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def process_alive(pid: int) -> bool:
    """Whether a process of this host runs; a zombie (killed, not yet reaped by its new parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat[stat.rindex(")") + 2] != "Z"


class Housekeeping:
    """The worker's background threads; `start` them beside the Celery worker, `stop` them when it ends."""

    def __init__(self, app: Celery, worker: str) -> None:
        settings = context_of(app).settings
        self.app, self.worker, self.settings = app, worker, settings
        self.processor = Processor(settings)  # its own connections, never shared with task threads
        self.stopping = threading.Event()  # set when shutdown begins: no more sweeps
        self.finished = threading.Event()  # set when the last task has ended: no more heartbeats
        self.grace = 0.0  # of the next recovery sweep: none at start, and after the broker's connection is back
        self.sweep_now = threading.Event()  # wakes the recovery sweep (see `broker_connected`)
        self._connections = 0
        self.heartbeat = threading.Thread(
            target=self._every, args=(BEAT_INTERVAL, self.beat, self.finished), name="apercu-heartbeat", daemon=True
        )
        self.sweeps = [
            threading.Thread(target=self._recover_loop, name="apercu-recovery", daemon=True),
            threading.Thread(
                target=self._every, args=(settings.orphan_interval, self.sweep_orphans, self.stopping),
                name="apercu-orphans", daemon=True,
            ),
            threading.Thread(
                target=self._every, args=(KEPT_INTERVAL, self.sweep_kept, self.stopping), name="apercu-kept",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        self.beat()
        for thread in (self.heartbeat, *self.sweeps):
            thread.start()

    def stop(self) -> None:
        """After the last task: stop beating and deregister, so leases left behind (if any) are free at once."""
        self.stopping.set()
        self.finished.set()
        if self.heartbeat.is_alive():
            self.heartbeat.join(timeout=10)  # a beat in flight must not register the worker again
        try:
            self.processor.storage.catalog.workers.forget(self.worker)
        except Exception:  # noqa: BLE001 - then the leases free themselves after WORKER_TIMEOUT
            log.warning("could not deregister worker %s", self.worker, exc_info=True)

    def broker_connected(self) -> None:
        """The worker's consumer (re)connected to the broker. After a lost connection, the broker may have lost
        what it held (a Redis restarted without persistence loses every queued message and every retry waiting
        for its time): the recovery sweep runs at once and without grace, as at start, rather than leaving the
        pending images to their `recovery_grace` (300 s by default). What the broker kept is sent twice:
        harmless, the claim lets one task work."""
        self._connections += 1
        if self._connections > 1:
            self.grace = 0.0
            self.sweep_now.set()

    def _every(
        self, interval: float, step: Callable[[], object], until: threading.Event, wake: threading.Event | None = None
    ) -> None:
        while not until.is_set():
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a broker or database hiccup must not end housekeeping
                log_failure(log, exc, "%s failed; will try again", getattr(step, "__name__", step))
            if wake is None:
                until.wait(interval)
            elif wake.wait(interval):
                wake.clear()

    def _recover_loop(self) -> None:
        """First everything unfinished whose worker is gone, then every interval what is stale."""

        def recovery() -> None:
            self.recover(self.grace)
            if not self.sweep_now.is_set():  # (a reconnection meanwhile asks for another sweep without grace)
                self.grace = float(self.settings.recovery_grace)

        self._every(self.settings.recovery_interval, recovery, self.stopping, self.sweep_now)

    def beat(self) -> None:
        self.processor.storage.catalog.workers.beat(self.worker, host_identity(), os.getpid())

    def recover(self, grace: float) -> list[str]:
        """Forget dead workers of this host, then send again what they and lost messages left behind."""
        catalog = self.processor.storage.catalog
        for worker, pid in catalog.workers.on_host(host_identity()):
            if worker != self.worker and (pid == os.getpid() or not process_alive(pid)):
                catalog.workers.forget(worker)
                log.info("worker %s (pid %d) is gone; its images are free again", worker, pid)
        ids = self.processor.mark_lost_as_resent(grace)
        for sent, image_id in enumerate(ids):
            try:
                enqueue(self.app, image_id)
            except Exception:
                metrics.RESENT.inc(sent)
                for unsent in ids[sent:]:  # the next sweep sends them, not the one after the grace period
                    catalog.leases.mark_unsent(unsent)
                raise
        metrics.RESENT.inc(len(ids))
        if ids:
            log.info("recovery re-sent %d unfinished image(s)", len(ids))
        if webhooks := send_due(self.app, catalog, overdue_for=grace):
            log.info("recovery re-sent %d webhook deliveries", webhooks)
        return ids

    def sweep_orphans(self) -> int:
        """Remove what no image owns any more (see the module docstring); returns how many things went."""
        storage, grace = self.processor.storage, float(self.settings.orphan_grace)
        removed = storage.clean_staging(grace)
        removed += self._files_without_rows(grace) + self._rows_without_originals(grace)
        removed += storage.catalog.claims.expire_keys(utcnow() - timedelta(seconds=self.settings.idempotency_ttl))
        removed += sweep_expired(storage.catalog.uploads, open_partials(storage.blobs, storage.staging.folder))
        storage.catalog.workers.forget_silent_since(utcnow() - timedelta(days=1))
        if removed:
            log.info("orphan sweep removed %d leftover(s)", removed)
        return removed

    def sweep_kept(self) -> int:
        """Remove the least recently used renders' files until they hold at most `renditions_max_mb` (rows
        first, then blobs: see `catalog.kept`); returns how many went."""
        kept, blobs = self.processor.storage.catalog.kept, self.processor.storage.blobs
        excess, removed = kept.total() - self.settings.renditions_max_mb * MIB, 0
        while excess > 0 and (page := kept.least_used(PAGE)):
            chosen = []
            for key, size in page:
                if excess <= 0:
                    break
                chosen.append(key)
                excess -= size
            kept.forget(chosen)
            for key in chosen:
                blobs.delete(key)
            removed += len(chosen)
        if removed:
            log.info("removed %d least recently used rendition(s) beyond APERCU_RENDITIONS_MAX_MB", removed)
        return removed

    def _files_without_rows(self, grace: float) -> int:
        storage, removed = self.processor.storage, 0
        if storage.catalog.images.is_empty():
            log.warning("the catalog is empty: leaving the stored files alone (is it the right database?)")
            return 0
        for batch in _batches(storage.stored(grace), PAGE):
            recorded = storage.catalog.images.existing(sorted({image_id for image_id, _ in batch}))
            for image_id, key in batch:
                if image_id not in recorded:
                    storage.blobs.delete(key)
                    removed += 1
            self._adopt_renditions([key for image_id, key in batch if image_id in recorded])
        return removed

    def _adopt_renditions(self, keys: list[str]) -> None:
        """Record the renditions among `keys` that `catalog.kept` does not know, so that its sweep bounds them."""
        storage, found = self.processor.storage, []
        renditions = [key for key in keys if key.startswith(blob_keys.RENDITIONS)]
        for key in storage.catalog.kept.unrecorded(renditions) if renditions else ():
            try:
                info = storage.blobs.stat(key)
            except BlobMissing:
                continue  # deleted with its image meanwhile
            written = datetime.fromtimestamp(info.modified, UTC).replace(tzinfo=None)  # the catalog's naive UTC
            found.append((blob_keys.image_id_of(key), key, info.size, written))
        if found:
            storage.catalog.kept.adopt(found)
            log.info("adopted %d rendition(s) that the catalog did not record", len(found))

    def _rows_without_originals(self, grace: float) -> int:
        storage, after, checked = self.processor.storage, "", 0
        cutoff = utcnow() - timedelta(seconds=grace)
        missing: list[str] = []
        while page := storage.catalog.images.ids_uploaded_before(cutoff, after, PAGE):
            checked += len(page)
            missing += [i for i in page if not storage.has_original(i)]
            after = page[-1]
        if len(missing) > MAX_MISSING_ORIGINALS or len(missing) > max(3, checked // 2):
            log.error("%d of %d images have lost their original: is the storage mounted? removing none",
                      len(missing), checked)
            return 0
        removed = 0
        for image_id in missing:
            if storage.catalog.images.delete(image_id):
                storage.delete_files(image_id)
                removed += 1
        return removed


def _batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
