"""Work accepted before or during a dependency's outage finishes once it is back (issue 17, item 3): a thumbnail
variant requested just before the S3 server goes away is rendered, not failed; a webhook of an image settled
while the broker is away is delivered; and a task whose retry meets a dead broker is handed back at once and
finished by the recovery sweep, instead of waiting out its lease.

Real parts: `apercu web` and `apercu worker` processes (`live.Service`), the test's own SeaweedFS and Redis,
SIGKILLed and started again. To catch a task at the moment it needs the dead dependency, the worker is stopped
while its work is queued, or the S3 server is frozen (SIGSTOP): a frozen S3 server still accepts connections
but answers nothing, so the worker's read hangs, observably `processing`, until the test kills or thaws it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import images
import sqlalchemy as sa
from live import Service
from test_webhooks import SECRET, Receiver, receiver  # noqa: F401 - the fixture, used by name

from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.storage.catalog import RenderState, utcnow
from apercu.storage.catalog.tables import deliveries
from apercu.tasks import TASK_NAME
from apercu.tasks.app import RENDER_TASK, context_of, make_celery

RECOVERY_INTERVAL = 1  # seconds between the worker's recovery sweeps in these tests
BACK_WITHIN = 30.0  # what the work left behind may take once its dependency is back (measured: printed)


def _stop_worker(svc: Service) -> None:
    """Stop the worker (SIGTERM: it deregisters and exits), the web running on: what is queued meanwhile waits."""
    worker = svc.processes.pop(1)
    worker.terminate()
    worker.wait(timeout=30)


def _status(svc: Service, image_id: str) -> str:
    status: str = svc.get(f"/images/{image_id}").json()["status"]
    return status


def _until(what: str, check: Any, timeout: float = BACK_WITHIN, every: float = 0.05) -> float:
    """Poll `check` until it is true; returns how long that took (fails after `timeout`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not after {timeout:g} s"
        time.sleep(every)
    return time.monotonic() - started


def _service(tmp_path: Path, env: dict[str, str]) -> Service:
    settings = {"APERCU_RECOVERY_INTERVAL": str(RECOVERY_INTERVAL), "APERCU_WORKER_CONCURRENCY": "1"}
    return Service(tmp_path / "data", {**settings, **env}).start("web", "worker")


def test_a_variant_requested_just_before_s3_goes_away_is_rendered_once_it_is_back(
    tmp_path: Path, own_seaweedfs: Any
) -> None:
    """The render's message reaches the worker while the S3 server is dead: retried, never recorded as failed
    (requests meanwhile are 503 storage_unavailable, not 404 no_thumbnail), and rendered once it is back."""
    svc = _service(tmp_path, own_seaweedfs.service_env())
    try:
        image_id = svc.upload(images.jpeg()).json()["id"]
        assert svc.wait_final(image_id)["status"] == "success"
        variant = f"/thumbnails/{image_id}.webp?size=128"
        _stop_worker(svc)
        asked = svc.get(variant)  # the request recorded, its render queued
        assert asked.status == 409, asked.body
        own_seaweedfs.stop()
        svc.launch("worker")
        _until("the render retried", lambda: "rendering 128.webp: storage unavailable" in svc.log.read_text())
        during = svc.get(variant)
        assert during.status == 503 and "Retry-After" in during.headers, during.body
        assert during.json()["error"]["code"] == "storage_unavailable"
        own_seaweedfs.restart()
        back = time.monotonic()
        rendered = svc.get(variant + "&wait=30")
        assert rendered.status == 200, rendered.body
        assert rendered.headers["Content-Type"] == "image/webp" and rendered.body[8:12] == b"WEBP"
        print(f"\nrender: served {time.monotonic() - back:.1f} s after the S3 server was back")
    finally:
        svc.stop()


def test_a_render_that_outlasts_its_retries_is_kept_and_sent_again_by_the_next_request(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """After its last retry the render is handed back: its request is not failed, and the next request for
    the variant sends it again at once (not only once the request counts as lost, a task's time limit later)."""
    from botocore.exceptions import EndpointConnectionError

    app = make_celery(Settings(data_dir=tmp_path / "data"))
    storage = context_of(app).processor.storage
    image_id = "a" * 32
    storage.blobs.put(blob_keys.original(image_id), images.jpeg())
    storage.catalog.images.add(image_id, "x")
    assert app.tasks[TASK_NAME].apply(args=[image_id]).get() == "claimed"
    key = blob_keys.thumbnail(image_id, 64, "webp")
    long_ago = utcnow().replace(year=2000)
    assert storage.catalog.renders.request(image_id, key, long_ago).state is RenderState.SEND
    assert storage.catalog.renders.request(image_id, key, long_ago).state is RenderState.PENDING

    def away(*_: Any, **__: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(storage.blobs, "put", away)
    assert app.tasks[RENDER_TASK].apply(args=[image_id, 64, "webp"]).get() == "released"
    assert storage.catalog.renders.request(image_id, key, long_ago).state is RenderState.SEND
    assert storage.catalog.renders.request(image_id, key, long_ago).state is RenderState.PENDING


def test_a_webhook_of_an_image_settled_while_the_broker_is_away_is_delivered_once_it_is_back(
    tmp_path: Path, own_seaweedfs: Any, own_redis: Any, receiver: Receiver  # noqa: F811 - the fixture
) -> None:
    """The worker settles the image while Redis is dead, so the delivery's task cannot be queued: it is marked
    for the recovery sweep, which sends it as soon as Redis is back (before: a minute plus the recovery grace
    period, 300 s by default)."""
    svc = _service(tmp_path, {
        **own_seaweedfs.service_env(), "APERCU_BROKER_URL": own_redis.url, "APERCU_WEBHOOK_URL": receiver.url,
        "APERCU_WEBHOOK_SECRET": SECRET, "APERCU_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    })
    try:
        image_id = _claimed_on_frozen_s3(svc, own_seaweedfs)
        own_redis.kill()  # the broker goes away; then S3 thaws, and the worker settles the image
        os.killpg(own_seaweedfs.process.pid, signal.SIGCONT)
        _until("the image settled", lambda: _status(svc, image_id) == "success")
        time.sleep(2 * RECOVERY_INTERVAL)  # sweeps run while the broker is away: they cannot send it either
        assert receiver.received == []
        own_redis.start()
        took = _until("the webhook delivered", lambda: len(receiver.received) >= 1)
        print(f"\nwebhook: delivered {took:.1f} s after the broker was back")
        catalog = Settings(data_dir=svc.data_dir).resolved_database_url
        _until("its delivery recorded", lambda: _delivery(catalog, image_id) == ("delivered", 1))
    finally:
        svc.stop()


def _claimed_on_frozen_s3(svc: Service, seaweed: Any) -> str:
    """An image whose worker's read of the original hangs on the frozen S3 server: uploaded while no worker runs
    (the web stores the original), then S3 frozen and a worker started; its id once `processing`. The caller
    thaws the S3 server (SIGCONT) or kills it. (Freezing the worker instead could freeze it holding the SQLite
    catalog's write lock, and the web's upload with it.)"""
    _stop_worker(svc)
    reply = svc.upload(images.jpeg())
    assert reply.status == 202, reply.body
    os.killpg(seaweed.process.pid, signal.SIGSTOP)
    svc.launch("worker")
    image_id: str = reply.json()["id"]
    _until("the worker claimed it", lambda: _status(svc, image_id) == "processing", timeout=20)
    return image_id


def _delivery(database_url: str, image_id: str) -> tuple[str, int] | None:
    """The status and attempts of the image's one delivery, as the catalog records them (the API shows only
    uploaders' deliveries, not the operator's)."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            query = sa.select(deliveries.c.status, deliveries.c.attempts).where(deliveries.c.image_id == image_id)
            row = conn.execute(query).first()
    finally:
        engine.dispose()
    return None if row is None else (str(row.status), row.attempts)


def test_a_delivery_whose_catalog_goes_away_is_delivered_once_it_is_back_without_burning_an_attempt(
    tmp_path: Path, own_postgres: Any, receiver: Receiver  # noqa: F811 - the fixture
) -> None:
    """The receiver takes its time, and meanwhile our PostgreSQL is SIGKILLed: its 204 cannot be recorded. The
    delivery's task retries the outage with backoff (it is not the receiver's failure), sends again once the
    catalog is back (the receiver tells the repeat by its delivery id) and records it delivered, one attempt."""
    receiver.delay = 2.0
    svc = _service(tmp_path, {
        "APERCU_DATABASE_URL": own_postgres.url, "APERCU_WEBHOOK_URL": receiver.url,
        "APERCU_WEBHOOK_SECRET": SECRET, "APERCU_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    })
    try:
        image_id = svc.upload(images.jpeg()).json()["id"]
        _until("the webhook sent", lambda: len(receiver.received) == 1)
        # The worker commits without waiting for the disk (`catalog.engine`, durable=False): PostgreSQL writes
        # such commits out within 3 x wal_writer_delay (0.6 s); a server killed sooner loses them, and the image
        # is processed again. Killed after that, while the receiver still holds the attempt:
        time.sleep(1.0)
        own_postgres.kill()
        time.sleep(1.0)
        own_postgres.start()
        back = time.monotonic()
        _until("its delivery recorded", lambda: _delivery(own_postgres.url, image_id) == ("delivered", 1))
        print(f"\nwebhook: recorded delivered {time.monotonic() - back:.1f} s after the catalog was back")
        assert len(receiver.received) >= 2  # sent again: its first answer could not be recorded
        assert len({headers["webhook-id"] for _, headers, _ in receiver.received}) == 1
    finally:
        svc.stop()


def test_a_retry_that_meets_a_dead_broker_is_handed_back_and_finished_once_it_is_back(
    tmp_path: Path, own_seaweedfs: Any, own_redis: Any
) -> None:
    """S3 and Redis go away together while the worker reads an original: the task's retry cannot be published
    (Celery rejects its message), so the image is released at once, pending for the recovery sweep, instead of
    staying `processing` until its lease lapses (the task's time limit + 20 s: 140 s by default); once both are
    back, the sweep sends it and it ends in `success`."""
    svc = _service(tmp_path, {**own_seaweedfs.service_env(), "APERCU_BROKER_URL": own_redis.url})
    try:
        image_id = _claimed_on_frozen_s3(svc, own_seaweedfs)
        own_redis.kill()
        own_seaweedfs.stop()  # the hanging read fails, and so does the publishing of the task's retry
        released = _until("the image handed back", lambda: _status(svc, image_id) == "pending", timeout=15)
        print(f"\nretry: released {released:.1f} s after S3 and the broker went away")
        own_redis.start()
        own_seaweedfs.restart()
        took = _until("the image processed", lambda: _status(svc, image_id) == "success")
        print(f"retry: success {took:.1f} s after S3 and the broker were back")
    finally:
        svc.stop()


def test_images_queued_in_a_broker_that_restarted_empty_are_processed_once_it_is_back(
    tmp_path: Path, own_redis: Any, receiver: Receiver  # noqa: F811 - the fixture
) -> None:
    """Redis is SIGKILLed while images wait in it (the worker's one thread busy with a slow webhook receiver,
    its prefetch full) and comes back empty: their messages are gone. The worker's consumer reconnects, and
    its recovery sweep sends every pending image again at once (before: only once pending for
    `recovery_grace`, 300 s by default)."""
    receiver.delay = 2.5  # the first image's webhook holds the worker's only thread
    svc = _service(tmp_path, {
        "APERCU_BROKER_URL": own_redis.url, "APERCU_WEBHOOK_URL": receiver.url, "APERCU_WEBHOOK_SECRET": SECRET,
        "APERCU_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    })
    try:
        svc.upload(images.jpeg())
        _until("the first webhook sent", lambda: len(receiver.received) == 1)
        queued = [svc.upload(images.jpeg((64 + n, 48))).json()["id"] for n in range(6)]
        own_redis.kill()  # what the worker had not taken yet (its prefetch is 4) is lost
        own_redis.start()
        back = time.monotonic()
        _until("every image processed", lambda: all(_status(svc, i) == "success" for i in queued), every=0.2)
        print(f"\nbroker restarted empty: {len(queued)} images processed {time.monotonic() - back:.1f} s after")
    finally:
        svc.stop()
