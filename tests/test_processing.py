"""The processing task's guarantees, on the real catalogs (SQLite here, PostgreSQL too): claims and leases,
idempotency, poison files, recovery, and deletes that race with processing."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import images
import pytest
import sqlalchemy as sa

from apercu.config import Settings
from apercu.storage import blob_keys, open_storage
from apercu.storage.catalog import WORKER_TIMEOUT, Claim, utcnow
from apercu.storage.catalog.tables import images as images_table
from apercu.tasks import TASK_NAME, Processor
from apercu.tasks.sandbox import Sandbox


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
    processor.storage.blobs.put(blob_keys.original(image_id), data)
    processor.storage.catalog.images.add(image_id, "x")
    return image_id


def test_processing_twice_is_harmless(processor: Processor) -> None:
    image_id = stored(processor, images.jpeg())
    assert processor.process(image_id, "task-1")[0] is Claim.CLAIMED
    first = processor.storage.catalog.images.get(image_id)
    assert processor.process(image_id, "task-2")[0] is Claim.FINISHED
    assert processor.storage.catalog.images.get(image_id) == first
    assert first.status == "success" and first.attempts == 1


def test_a_live_lease_keeps_other_tasks_out_until_it_expires(processor: Processor) -> None:
    catalog = processor.storage.catalog
    image_id = stored(processor, images.jpeg())
    assert catalog.leases.claim(image_id, "a", lease_seconds=60, max_attempts=3).outcome is Claim.CLAIMED
    busy = catalog.leases.claim(image_id, "b", lease_seconds=60, max_attempts=3)
    assert busy.outcome is Claim.BUSY and 0 < busy.retry_in <= WORKER_TIMEOUT  # re-checked before the lease ends
    assert catalog.leases.claim(image_id, "a", lease_seconds=60, max_attempts=3).outcome is Claim.CLAIMED  # a retry
    _expire_lease(processor, image_id)
    assert catalog.leases.claim(image_id, "b", lease_seconds=60, max_attempts=3).outcome is Claim.CLAIMED


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
        claim = catalog.leases.claim(image_id, f"crashed-{attempt}", 60, processor.settings.max_attempts)
        assert claim.outcome is Claim.CLAIMED
        _expire_lease(processor, image_id)
    assert processor.process(image_id, "last")[0] is Claim.EXHAUSTED
    row = catalog.images.get(image_id)
    assert row.status == "failure" and "interrupted" in row.error


def test_recovery_finds_pending_and_abandoned_images_once(processor: Processor) -> None:
    pending = stored(processor, images.jpeg())
    abandoned = stored(processor, images.jpeg())
    processor.storage.catalog.leases.claim(abandoned, "dead-worker", 60, 3)
    _expire_lease(processor, abandoned)
    done = stored(processor, images.jpeg())
    processor.process(done, "t")
    found = processor.mark_lost_as_resent(0)
    assert set(found) == {pending, abandoned}
    assert processor.mark_lost_as_resent(300) == []  # just re-sent: not again until the grace period passes


def test_a_decoder_error_is_a_failure_not_a_crash(processor: Processor) -> None:
    data = images.jpeg((1600, 1200))
    image_id = stored(processor, data[:3000])
    assert processor.process(image_id, "t")[0] is Claim.CLAIMED
    row = processor.storage.catalog.images.get(image_id)
    assert row.status == "failure" and row.error.startswith("cannot decode image")


def test_missing_original_is_a_failure(processor: Processor) -> None:
    image_id = stored(processor, images.jpeg())
    processor.storage.blobs.delete(blob_keys.original(image_id))
    processor.process(image_id, "t")
    assert "missing" in processor.storage.catalog.images.get(image_id).error


@pytest.mark.parametrize("round_", range(10))
def test_delete_during_processing_leaves_nothing(processor: Processor, round_: int) -> None:
    """Whatever the interleaving, a delete that returned leaves no row and no file behind."""
    image_id = stored(processor, images.encode(images.gradient((1200, 800)), "PNG"))
    worker = threading.Thread(target=processor.process, args=(image_id, "t"))
    worker.start()
    threading.Event().wait(round_ * 0.01)
    assert processor.storage.catalog.images.delete(image_id)
    processor.storage.delete_files(image_id)
    worker.join()
    assert processor.storage.catalog.images.get(image_id) is None
    assert list(processor.settings.data_dir.rglob(f"*{image_id}*")) == []


def test_schema_creation_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = open_storage(settings)
    first.catalog.images.add("a" * 32, None)
    second = open_storage(settings)
    assert second.catalog.images.get("a" * 32).status == "pending"
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


def test_the_workers_postgres_commits_are_durable(postgres_url: Any) -> None:
    """A PostgreSQL server that crashes while the worker lives on must not take the worker's last claims and
    results with it (they would leave images stuck for minutes: tests/test_outages_load.py)."""
    from apercu.storage.catalog import create_engine

    engine = create_engine(postgres_url, durable=False)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW synchronous_commit")).scalar() == "on"
    engine.dispose()


def test_a_write_that_need_not_be_durable_skips_the_fsync_then_the_connection_is_durable_again(
    tmp_path: Path,
) -> None:
    """`Database.begin(durable=False)` (a render's request) commits without the WAL's fsync on the web's SQLite
    (synchronous=FULL), and gives the pooled connection back as durable as it was, even after a failed write."""
    from apercu.storage.catalog.engine import Database, create_engine

    db = Database(create_engine(f"sqlite:///{tmp_path / 'c.db'}"))
    seen = []
    with db.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    with db.begin(durable=False) as conn:
        seen.append(conn.exec_driver_sql("PRAGMA synchronous").scalar())
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with pytest.raises(sa.exc.IntegrityError), db.begin(durable=False) as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with db.begin() as conn:
        seen.append(conn.exec_driver_sql("PRAGMA synchronous").scalar())
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    assert seen == [1, 2]  # NORMAL, then FULL again
    db.engine.dispose()


def test_time_limit_becomes_a_clear_failure(processor: Processor) -> None:
    """The sandbox kills an imaging process that outlives the time limit; the image fails saying so."""
    usual = processor.settings
    processor = Processor(usual.with_overrides(task_time_limit=0.05))
    image_id = stored(processor, images.encode(images.gradient((160, 120)).resize((4000, 3000)), "PNG"))
    started = time.monotonic()
    processor.process(image_id, "t")
    assert time.monotonic() - started < 5
    row = processor.storage.catalog.images.get(image_id)
    assert row.status == "failure" and "longer than 0.05 s" in row.error
    assert list(processor.storage.blobs.keys(blob_keys.thumbnails_of(image_id))) == []
    again = stored(processor, images.jpeg())  # the thread's next image gets a fresh imaging process
    Processor(usual).process(again, "t")
    assert processor.storage.catalog.images.get(again).status == "success"


def test_an_imaging_process_killed_mid_image_is_retried_then_fails(
    processor: Processor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that kills every imaging process it touches ends as failure after max_attempts, at once."""
    real = Sandbox._ensure_child

    def killed(self: Sandbox) -> Any:
        """The child the call is handed to dies under it (killed after the liveness check, not before it,
        which would only make the sandbox start another)."""
        conn = real(self)
        os.kill(self._process.pid, signal.SIGKILL)
        return conn

    monkeypatch.setattr(Sandbox, "_ensure_child", killed)
    image_id = stored(processor, images.jpeg())
    started = time.monotonic()
    assert processor.process(image_id, "t")[0] is Claim.EXHAUSTED
    assert time.monotonic() - started < 10
    row = processor.storage.catalog.images.get(image_id)
    assert row.status == "failure" and row.attempts == processor.settings.max_attempts
    assert "interrupted 3 times" in row.error and "signal 9" in row.error
    monkeypatch.undo()
    survivor = stored(processor, images.jpeg())
    processor.process(survivor, "t")
    assert processor.storage.catalog.images.get(survivor).status == "success"


def test_one_crash_then_success(processor: Processor, monkeypatch: pytest.MonkeyPatch) -> None:
    real, kills = Sandbox._ensure_child, []

    def killed_once(self: Sandbox) -> Any:
        conn = real(self)
        if not kills:
            kills.append(self._process.pid)
            os.kill(self._process.pid, signal.SIGKILL)
        return conn

    monkeypatch.setattr(Sandbox, "_ensure_child", killed_once)
    image_id = stored(processor, images.jpeg())
    processor.process(image_id, "t")
    row = processor.storage.catalog.images.get(image_id)
    assert row.status == "success" and row.attempts == 2


def test_a_bug_of_ours_ends_as_failure_with_a_reference(
    processor: Processor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever escapes processing is recorded as failure (never left `processing`), traceback logged."""
    from apercu.tasks.app import context_of, make_celery

    app = make_celery(processor.settings)
    image_id = stored(context_of(app).processor, images.jpeg())

    def broken(*_: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(Processor, "_record_success", broken)
    assert app.tasks[TASK_NAME].apply(args=[image_id]).get() == "failed"
    row = context_of(app).processor.storage.catalog.images.get(image_id)
    assert row.status == "failure" and "internal error" in row.error
    reference = row.error.rsplit(" ", 1)[-1].rstrip(")")
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and image_id in logged[0].getMessage() and "KeyError" in (logged[0].exc_text or "")


def test_an_apps_tasks_share_one_context_of_their_own(tmp_path: Path) -> None:
    """One worker context per app, shared by its tasks (one storage, one imaging process per thread), and never
    another app's (Celery adds `shared` tasks to every app made later)."""
    from apercu.tasks import ApercuTask, context_of, make_celery

    first, second = (make_celery(Settings(data_dir=tmp_path / name)) for name in ("a", "b"))
    for app in (first, second):
        tasks = [task for task in app.tasks.values() if isinstance(task, ApercuTask)]
        assert len(tasks) == 4 and all(task.context is context_of(app) for task in tasks)
    assert context_of(first) is not context_of(second)
    assert context_of(second).settings.data_dir == tmp_path / "b"


def test_embedded_broker_delivers_each_message_once_across_connections(tmp_path: Path) -> None:
    """Web and worker are separate processes with their own connections: every message is fetched by exactly
    one consumer, in order, and a rejected one comes back."""
    from concurrent.futures import ThreadPoolExecutor

    from kombu import Connection

    import apercu.storage.sqlite_broker  # noqa: F401 - registers the URL scheme

    url = f"apercu-sqlite+sqlite:///{tmp_path / 'broker.sqlite'}"
    with Connection(url) as publisher:
        queue = publisher.SimpleQueue("q")
        for n in range(200):
            queue.put({"n": n})

    def drain(_: int) -> list[int]:
        got = []
        with Connection(url) as consumer:
            queue = consumer.SimpleQueue("q")
            while True:
                try:
                    message = queue.get(timeout=0.3)
                except queue.Empty:
                    return got
                got.append(message.payload["n"])
                message.ack()

    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(drain, range(4)))
    assert sorted(n for batch in batches for n in batch) == list(range(200))
    assert all(batch == sorted(batch) for batch in batches)
    with Connection(url) as consumer:
        queue = consumer.SimpleQueue("q")
        queue.put({"n": "again"})
        queue.get(timeout=2).reject(requeue=True)
        assert queue.get(timeout=2).payload == {"n": "again"} and queue.qsize() == 0


def test_embedded_broker_wakes_its_consumer_on_a_publish_not_on_its_next_poll(tmp_path: Path) -> None:
    """With a poll every 5 s at most, an idle consumer (its polls backed off to seconds apart) still gets a
    message published from another connection at once: the commit bell wakes it."""
    from kombu import Connection

    import apercu.storage.sqlite_broker  # noqa: F401 - registers the URL scheme

    url, options = f"apercu-sqlite+sqlite:///{tmp_path / 'broker.sqlite'}", {"polling_interval": 5.0}
    published: list[float] = []

    def publish() -> None:
        with Connection(url) as publisher:
            publisher.SimpleQueue("q").put({"n": 1})
        published.append(time.monotonic())

    with Connection(url, transport_options=options) as consumer:
        queue = consumer.SimpleQueue("q")
        timer = threading.Timer(4.2, publish)  # by then polls are 4 s apart: the next one would come at ~8.2 s
        timer.start()
        message = queue.get(timeout=30)
        received = time.monotonic()
        timer.join()
    assert message.payload == {"n": 1} and received - published[0] < 2.0


def test_an_image_over_the_memory_limit_fails_clearly(processor: Processor) -> None:
    """The imaging process's memory is bounded: a canvas too big for it is the file's failure, and the next
    image still works."""
    processor = Processor(processor.settings.with_overrides(worker_memory_limit=200))
    huge = stored(processor, images.encode(images.gradient((160, 120)).resize((10000, 8000)), "TIFF"))
    processor.process(huge, "t")
    row = processor.storage.catalog.images.get(huge)
    assert row.status == "failure" and "memory" in row.error, row.error
    small = stored(processor, images.jpeg())
    processor.process(small, "t")
    assert processor.storage.catalog.images.get(small).status == "success"


def test_a_new_image_reads_back_as_it_was_recorded(processor: Processor) -> None:
    """The row is written as SQLAlchemy writes it on both databases (on SQLite the INSERT runs on the driver's
    connection, through the columns' own bind processors): what `add` returns is what a read finds, to the
    microsecond, and it sorts among rows written the other way."""
    catalog = processor.storage.catalog
    added = catalog.images.add("a" * 32, "name.jpg", "http://127.0.0.1:9/hook", "tenant-a")
    with catalog.engine.begin() as conn:  # a row through SQLAlchemy itself, a microsecond later
        conn.execute(sa.insert(images_table).values(
            id="b" * 32, status="pending", uploaded_at=added.uploaded_at + timedelta(microseconds=1),
            enqueued_at=added.uploaded_at, attempts=0, tenant="tenant-a",
        ))
    assert catalog.images.get("a" * 32, "tenant-a") == added
    assert [r.id for r in catalog.images.page(10, tenant="tenant-a")] == ["b" * 32, "a" * 32]
