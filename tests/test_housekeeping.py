"""Workers' heartbeats and leases, recovery of lost work, and the orphan sweep, on the real catalogs
(SQLite, and PostgreSQL too) and a real blob directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import images
import pytest
import sqlalchemy as sa

from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.storage.catalog import Claim, utcnow
from apercu.storage.catalog.tables import workers
from apercu.tasks import Processor, make_celery
from apercu.tasks.housekeeping import Housekeeping, host_identity


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", orphan_grace=60)
    if request.param == "postgresql":
        settings = settings.with_overrides(database_url=request.getfixturevalue("fresh_postgres_url"))
    return settings


@pytest.fixture
def keeper(settings: Settings) -> Housekeeping:
    """Housekeeping of a worker of its own, not started: each test runs its steps by hand."""
    me = uuid.uuid4().hex
    app = make_celery(settings, me)
    keeper = Housekeeping(app, me)
    keeper.beat()
    return keeper


def stored(processor: Processor, data: bytes = b"", uploaded_ago: float = 0) -> str:
    image_id = uuid.uuid4().hex
    processor.storage.blobs.put(blob_keys.original(image_id), data or images.jpeg())
    processor.storage.catalog.images.add(image_id, "x")
    if uploaded_ago:
        age(processor, image_id, uploaded_ago)
    return image_id


def age(processor: Processor, image_id: str, seconds: float) -> None:
    """Date the row's upload back, and its files too."""
    from apercu.storage.catalog.tables import images as table

    with processor.storage.catalog.engine.begin() as conn:
        stamp = utcnow() - timedelta(seconds=seconds)
        conn.execute(table.update().where(table.c.id == image_id).values(uploaded_at=stamp, enqueued_at=stamp))
    for found in processor.settings.data_dir.rglob(f"{image_id}*"):
        for path in [found, *found.rglob("*")]:  # an image's thumbnails are in a folder named for it
            os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_a_lease_is_free_as_soon_as_its_worker_is_gone(keeper: Housekeeping) -> None:
    catalog = keeper.processor.storage.catalog
    other = uuid.uuid4().hex
    catalog.workers.beat(other, "elsewhere/1", 1)
    image_id = stored(keeper.processor)
    assert catalog.leases.claim(image_id, "task-a", 600, 3, worker=other).outcome is Claim.CLAIMED
    assert catalog.leases.claim(image_id, "task-b", 600, 3, worker=keeper.worker).outcome is Claim.BUSY
    assert keeper.processor.mark_lost_as_resent(0) == []  # a live worker holds it: nothing to recover
    catalog.workers.forget(other)
    assert keeper.processor.mark_lost_as_resent(300) == [image_id]  # abandoned: sent again, whatever the pending grace
    assert catalog.leases.claim(image_id, "task-b", 600, 3, worker=keeper.worker).outcome is Claim.CLAIMED


def test_a_silent_worker_is_dead_after_the_timeout(keeper: Housekeeping) -> None:
    catalog = keeper.processor.storage.catalog
    live = catalog.workers.count_live()
    catalog.workers.beat("silent", "elsewhere/1", 1)
    image_id = stored(keeper.processor)
    catalog.leases.claim(image_id, "task-a", 600, 3, worker="silent")
    assert catalog.workers.count_live() == live + 1
    with catalog.engine.begin() as conn:
        stamp = utcnow() - timedelta(minutes=1)
        conn.execute(workers.update().where(workers.c.id == "silent").values(heartbeat_at=stamp))
    assert catalog.leases.claim(image_id, "task-b", 600, 3, worker=keeper.worker).outcome is Claim.CLAIMED
    assert catalog.workers.count_live() == live


def test_a_restarted_worker_frees_its_dead_predecessors_leases_at_once(keeper: Housekeeping) -> None:
    """After a kill -9 and a restart, the old worker's heartbeat is still fresh; its PID is what tells."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    catalog = keeper.processor.storage.catalog
    predecessor, neighbour = uuid.uuid4().hex, uuid.uuid4().hex
    catalog.workers.beat(predecessor, host_identity(), dead.pid)
    catalog.workers.beat(neighbour, host_identity(), os.getppid())  # alive: left alone
    image_id = stored(keeper.processor)
    catalog.leases.claim(image_id, "task-a", 600, 3, worker=predecessor)
    assert keeper.recover(grace=300) == [image_id]
    registered = {w for w, _ in catalog.workers.on_host(host_identity())}
    assert keeper.worker in registered and neighbour in registered and predecessor not in registered


def test_stopping_deregisters_the_worker(keeper: Housekeeping) -> None:
    catalog = keeper.processor.storage.catalog
    live = catalog.workers.count_live()
    keeper.stop()
    assert catalog.workers.count_live() == live - 1
    assert keeper.worker not in {w for w, _ in catalog.workers.on_host(host_identity())}


def test_orphan_files_and_rows_are_swept_past_the_grace(keeper: Housekeeping) -> None:
    processor = keeper.processor
    storage = processor.storage
    kept = stored(processor, uploaded_ago=3600)
    young = stored(processor)
    # The worker wrote a thumbnail, a concurrent delete removed the row, and the worker died before cleaning up.
    raced = stored(processor, uploaded_ago=3600)
    storage.put_thumbnail(raced, 256, "jpg", b"jpeg")
    storage.catalog.images.delete(raced)
    age(processor, raced, 3600)
    # The web process died between writing the original and committing its row.
    unrecorded = uuid.uuid4().hex
    storage.blobs.put(blob_keys.original(unrecorded), b"x")
    age(processor, unrecorded, 3600)
    # A row whose original is gone.
    lost = stored(processor, uploaded_ago=3600)
    storage.blobs.delete(blob_keys.original(lost))
    # Staging debris of a killed upload, old and new.
    old_stage, new_stage = storage.staging.incoming(), storage.staging.incoming()
    os.utime(old_stage.name, (time.time() - 3600, time.time() - 3600))

    assert keeper.sweep_orphans() == 5  # the raced image's original and thumbnail, two rows' worth of debris
    assert processor.settings.data_dir.joinpath("tmp").exists()
    assert not Path(old_stage.name).exists() and Path(new_stage.name).exists()
    for gone in (raced, unrecorded, lost):
        assert list(processor.settings.data_dir.rglob(f"{gone}*")) == []
        assert storage.catalog.images.get(gone) is None
    for alive in (kept, young):
        assert storage.has_original(alive) and storage.catalog.images.get(alive) is not None
    assert keeper.sweep_orphans() == 0


def test_thumbnails_in_the_layout_before_keys_are_swept(keeper: Housekeeping) -> None:
    """Before blob keys, a thumbnail was thumbnails/<ab>/<id>.jpg: no key names it now (a request renders the
    thumbnail again under thumbnails/<id>/), so the sweep removes it, the image's own files staying."""
    processor = keeper.processor
    image_id = stored(processor, uploaded_ago=3600)
    legacy = processor.settings.data_dir / "thumbnails" / image_id[:2] / f"{image_id}.jpg"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_bytes(b"jpeg")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    assert keeper.sweep_orphans() == 1
    assert not legacy.exists() and processor.storage.has_original(image_id)


def test_the_sweep_touches_nothing_when_the_storage_looks_unmounted(keeper: Housekeeping) -> None:
    processor = keeper.processor
    ids = [stored(processor, uploaded_ago=3600) for _ in range(60)]
    for image_id in ids:
        processor.storage.blobs.delete(blob_keys.original(image_id))
    keeper.sweep_orphans()
    assert all(processor.storage.catalog.images.get(i) is not None for i in ids)


def test_schema_gains_new_columns_on_an_old_database(tmp_path: Path) -> None:
    """A catalog created before leases named their worker is upgraded in place at start."""
    from apercu.storage import open_storage

    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    engine = sa.create_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE apercu_images (id VARCHAR(32) PRIMARY KEY, filename TEXT, status VARCHAR(16) NOT NULL,"
            " error TEXT, uploaded_at DATETIME NOT NULL, processed_at DATETIME, enqueued_at DATETIME NOT NULL,"
            " attempts INTEGER NOT NULL, lease_owner VARCHAR(64), lease_until DATETIME, image_metadata JSON,"
            " thumbnail JSON)"
        ))
        conn.execute(sa.text(
            "INSERT INTO apercu_images (id, status, uploaded_at, enqueued_at, attempts)"
            " VALUES ('" + "a" * 32 + "', 'pending', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)"
        ))
    storage = open_storage(settings)
    assert storage.catalog.leases.claim("a" * 32, "t", 60, 3, worker="w").outcome is Claim.CLAIMED
    row: Any = storage.catalog.images.get("a" * 32)
    assert row.lease_worker == "w"


KILLED_BETWEEN_THUMBNAIL_AND_ROW = """
import os, signal, sys
sys.path.insert(0, sys.argv[3])
from apercu.config import Settings
from apercu.storage.catalog.images import Images
from apercu.storage.catalog.leases import Leases
from apercu.tasks import Processor

def delete_then_die(self, image_id, *args, **kwargs):
    Images(self._db).delete(image_id)  # a concurrent DELETE wins the race...
    os.kill(os.getpid(), signal.SIGKILL)  # ...and the worker dies before it can clean up

Leases.finish = delete_then_die
if __name__ == "__main__":
    Processor(Settings.from_env({"APERCU_DATA_DIR": sys.argv[1], "APERCU_DATABASE_URL": sys.argv[4]})).process(
        sys.argv[2], "t")
"""


def test_a_worker_killed_between_thumbnail_and_row_leaves_nothing_after_the_sweep(
    keeper: Housekeeping, tmp_path: Path
) -> None:
    processor = keeper.processor
    stored(processor)  # another image: an empty catalog would make the sweep leave every file alone
    image_id = stored(processor)
    script = tmp_path / "die.py"
    script.write_text(KILLED_BETWEEN_THUMBNAIL_AND_ROW)
    database = processor.settings.resolved_database_url
    run = subprocess.run(
        [sys.executable, str(script), str(processor.settings.data_dir), image_id, str(Path(__file__).parent), database],
        capture_output=True, timeout=60,
    )
    assert run.returncode == -9, run.stderr.decode()[-2000:]
    assert processor.storage.catalog.images.get(image_id) is None
    assert list(processor.storage.blobs.keys(blob_keys.thumbnails_of(image_id)))  # the orphan the kill left
    age(processor, image_id, 3600)
    keeper.sweep_orphans()
    assert list(processor.settings.data_dir.rglob(f"{image_id}*")) == []


def test_the_sweep_leaves_files_alone_when_the_catalog_is_empty(keeper: Housekeeping) -> None:
    """Pointed at a wrong (new, empty) database, the sweep must not take every stored file for an orphan."""
    processor = keeper.processor
    image_id = stored(processor, uploaded_ago=3600)
    processor.storage.catalog.images.delete(image_id)
    keeper.sweep_orphans()
    assert processor.storage.has_original(image_id)


def test_a_storage_hiccup_retry_does_not_count_as_an_attempt(keeper: Housekeeping) -> None:
    catalog = keeper.processor.storage.catalog
    image_id = stored(keeper.processor)
    for _ in range(5):  # the same task taking its own lease back, as a Celery retry does
        assert catalog.leases.claim(image_id, "task", 600, 3, worker=keeper.worker).outcome is Claim.CLAIMED
    assert catalog.images.get(image_id).attempts == 1
    assert not catalog.leases.finish(image_id, "another-task", {}, {}, webhook_url="")  # not its lease: nothing recorded
    assert catalog.leases.finish(image_id, "task", {}, {}, webhook_url="")
