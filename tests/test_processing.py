"""The processing task's guarantees, on the real catalogs (SQLite here, PostgreSQL too): claims and leases,
idempotency, poison files, recovery, and deletes that race with processing."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import images
from apercu.config import Settings
from apercu.storage import open_storage
from apercu.storage.catalog import Claim, images as images_table, utcnow
from apercu.tasks import Processor


@pytest.fixture(params=["sqlite", "postgresql"])
def processor(request: pytest.FixtureRequest, tmp_path: Path) -> Processor:
    settings = Settings(data_dir=tmp_path / "data")
    if request.param == "postgresql":
        settings = settings.with_overrides(database_url=request.getfixturevalue("postgres_url"))
    return Processor(settings)


def stored(processor: Processor, data: bytes) -> str:
    """An image as an upload leaves it: original committed, row pending."""
    import uuid

    image_id = uuid.uuid4().hex
    incoming = processor.storage.blobs.incoming()
    incoming.write(data)
    processor.storage.blobs.commit_original(image_id, incoming)
    incoming.close()
    processor.storage.catalog.add(image_id, "x")
    return image_id


def test_processing_twice_is_harmless(processor: Processor) -> None:
    image_id = stored(processor, images.jpeg())
    assert processor.process(image_id, "task-1")[0] is Claim.CLAIMED
    first = processor.storage.catalog.get(image_id)
    assert processor.process(image_id, "task-2")[0] is Claim.FINISHED
    assert processor.storage.catalog.get(image_id) == first
    assert first["status"] == "success" and first["attempts"] == 1


def test_a_live_lease_keeps_other_tasks_out_until_it_expires(processor: Processor) -> None:
    catalog = processor.storage.catalog
    image_id = stored(processor, images.jpeg())
    assert catalog.claim(image_id, "a", lease_seconds=60, max_attempts=3).outcome is Claim.CLAIMED
    busy = catalog.claim(image_id, "b", lease_seconds=60, max_attempts=3)
    assert busy.outcome is Claim.BUSY and 55 < busy.retry_in <= 61
    assert catalog.claim(image_id, "a", lease_seconds=60, max_attempts=3).outcome is Claim.CLAIMED  # a retry
    _expire_lease(processor, image_id)
    assert catalog.claim(image_id, "b", lease_seconds=60, max_attempts=3).outcome is Claim.CLAIMED


def _expire_lease(processor: Processor, image_id: str) -> None:
    with processor.storage.catalog.engine.begin() as conn:
        conn.execute(
            images_table.update()
            .where(images_table.c.id == image_id)
            .values(lease_until=utcnow() - timedelta(seconds=1), enqueued_at=utcnow() - timedelta(hours=1))
        )


def test_an_image_that_keeps_killing_workers_ends_as_failure(processor: Processor) -> None:
    """Each crash leaves an expired lease; after max_attempts the image fails instead of looping."""
    image_id = stored(processor, images.jpeg())
    catalog = processor.storage.catalog
    for attempt in range(processor.settings.max_attempts):
        assert catalog.claim(image_id, f"crashed-{attempt}", 60, processor.settings.max_attempts).outcome is Claim.CLAIMED
        _expire_lease(processor, image_id)
    assert processor.process(image_id, "last")[0] is Claim.EXHAUSTED
    row = catalog.get(image_id)
    assert row["status"] == "failure" and "interrupted" in row["error"]


def test_recovery_finds_pending_and_abandoned_images_once(processor: Processor) -> None:
    pending = stored(processor, images.jpeg())
    abandoned = stored(processor, images.jpeg())
    processor.storage.catalog.claim(abandoned, "dead-worker", 60, 3)
    _expire_lease(processor, abandoned)
    done = stored(processor, images.jpeg())
    processor.process(done, "t")
    found = processor.stale(0)
    assert set(found) == {pending, abandoned}
    assert processor.stale(300) == []  # just re-sent: not again until the grace period passes


def test_a_decoder_error_is_a_failure_not_a_crash(processor: Processor) -> None:
    data = images.jpeg((1600, 1200))
    image_id = stored(processor, data[:3000])
    assert processor.process(image_id, "t")[0] is Claim.CLAIMED
    row = processor.storage.catalog.get(image_id)
    assert row["status"] == "failure" and row["error"].startswith("cannot decode image")


def test_missing_original_is_a_failure(processor: Processor) -> None:
    image_id = stored(processor, images.jpeg())
    processor.storage.blobs._original_path(image_id).unlink()  # type: ignore[attr-defined]
    processor.process(image_id, "t")
    assert "missing" in processor.storage.catalog.get(image_id)["error"]


@pytest.mark.parametrize("round_", range(10))
def test_delete_during_processing_leaves_nothing(processor: Processor, round_: int) -> None:
    """Whatever the interleaving, a delete that returned leaves no row and no file behind."""
    image_id = stored(processor, images.encode(images.gradient((1200, 800)), "PNG"))
    worker = threading.Thread(target=processor.process, args=(image_id, "t"))
    worker.start()
    threading.Event().wait(round_ * 0.01)
    assert processor.storage.catalog.delete(image_id)
    processor.storage.blobs.delete(image_id)
    worker.join()
    assert processor.storage.catalog.get(image_id) is None
    assert list(processor.settings.data_dir.rglob(f"*{image_id}*")) == []


def test_schema_creation_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = open_storage(settings)
    first.catalog.add("a" * 32, None)
    second = open_storage(settings)
    assert second.catalog.get("a" * 32)["status"] == "pending"
    assert sa.inspect(second.catalog.engine).has_table("apercu_images")


def test_settings_from_environment() -> None:
    env = {"APERCU_PORT": "8080", "APERCU_DATA_DIR": "/srv/x", "APERCU_BROKER_POLL_INTERVAL": "0.2"}
    settings = Settings.from_env(env, port=9000)
    assert settings.port == 9000 and settings.data_dir == Path("/srv/x") and settings.broker_poll_interval == 0.2
    assert Settings.from_env(settings.to_env()) == settings
    with pytest.raises(ValueError, match="APERCU_PORT"):
        Settings.from_env({"APERCU_PORT": "eighty"})


def test_postgres_urls_get_the_bundled_driver(postgres_url: Any) -> None:
    from apercu.storage.catalog import create_engine

    assert create_engine(postgres_url).dialect.driver == "psycopg"


def test_time_limit_becomes_a_clear_failure(processor: Processor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery interrupts a slow decode with SoftTimeLimitExceeded; the image fails saying so, and keeps nothing."""
    from celery.exceptions import SoftTimeLimitExceeded

    import apercu.imaging.engines as engines

    def too_slow(*_: Any) -> Any:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(engines.PillowEngine, "reduce", too_slow)
    image_id = stored(processor, images.encode(images.gradient(), "BMP"))
    processor.process(image_id, "t")
    row = processor.storage.catalog.get(image_id)
    assert row["status"] == "failure" and "longer than" in row["error"]
    assert not processor.storage.blobs.thumbnail_path(image_id).exists()


def test_embedded_broker_survives_a_queue_creation_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Web and worker both create the queue at start-up; the one that loses must still publish."""
    from kombu import Connection
    from sqlalchemy.exc import IntegrityError

    from apercu.storage import sqlite_broker

    url = f"apercu-sqlite+sqlite:///{tmp_path / 'broker.sqlite'}"
    with Connection(url) as first:
        first.SimpleQueue("q").put({"n": 1})

    def lost_the_race(self: Any, queue: str) -> Any:
        raise IntegrityError("INSERT INTO kombu_queue", {}, Exception("UNIQUE constraint failed"))

    monkeypatch.setattr(sqlite_broker.SqlaChannel, "_get_or_create", lost_the_race)
    with Connection(url) as second:
        second.SimpleQueue("q").put({"n": 2})
    monkeypatch.undo()
    with Connection(url) as reader:
        queue = reader.SimpleQueue("q")
        assert [queue.get(timeout=2).payload for _ in range(2)] == [{"n": 1}, {"n": 2}]
