"""Integration: real apercu processes, a real Celery worker, real brokers and databases.

Each scenario runs on the embedded default (`apercu serve`: SQLite catalog, SQLite broker, files in the data
directory), split into `apercu web` + `apercu worker` on PostgreSQL + Redis, and the same with the images in S3
(a real SeaweedFS). RabbitMQ gets the end-to-end smoke test.
"""

from __future__ import annotations

import io
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import corpus_files, require_corpus
from live import Service
from PIL import Image

pytestmark = pytest.mark.integration

BACKENDS = ["embedded", "postgres+redis", "postgres+redis+s3"]


def start(backend: str, data_dir: Path, request: pytest.FixtureRequest) -> Service:
    if backend == "embedded":
        return Service(data_dir).start("serve")
    env = {"APERCU_DATABASE_URL": request.getfixturevalue("postgres_url")}
    if backend.startswith("postgres+redis"):
        env["APERCU_BROKER_URL"] = request.getfixturevalue("redis_url")
    else:
        env["APERCU_BROKER_URL"] = request.getfixturevalue("rabbitmq_url")
    if backend.endswith("+s3"):
        env.update(request.getfixturevalue("seaweedfs").service_env())
    return Service(data_dir, env).start("web", "worker")


@pytest.fixture(scope="module", params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start(request.param, tmp_path_factory.mktemp(request.param.replace("+", "-")) / "data", request)
    yield svc
    codes = svc.stop()
    assert codes == [0] * len(codes), f"unclean stop {codes}:\n{svc.log.read_text()[-3000:]}"


def check_processed(svc: Service, image_id: str) -> dict[str, Any]:
    """Wait for the end of processing, then check every promise the API makes about a finished image."""
    body = svc.wait_final(image_id)
    assert body["status"] in ("success", "failure"), body
    if body["status"] == "failure":
        assert body["error"] and "thumbnail" not in body
        assert svc.get(f"/thumbnails/{image_id}.jpg").status == 404
        return body
    thumb = svc.get(f"/thumbnails/{image_id}.jpg")
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(thumb.body))
    assert picture.format == "JPEG" and max(picture.size) <= 256
    assert picture.size == (body["thumbnail"]["width"], body["thumbnail"]["height"])
    assert svc.get(f"/thumbnails/{image_id}.jpg", headers={"If-None-Match": thumb.headers["ETag"]}).status == 304
    return body


@pytest.mark.parametrize("name", sorted(images.FACTORIES))
def test_every_generated_format_end_to_end(service: Service, name: str) -> None:
    reply = service.upload(images.FACTORIES[name](), f"generated.{name.lower()}")
    assert reply.status == 202, reply.body
    image_id = reply.json()["id"]
    body = check_processed(service, image_id)
    assert body["status"] == "success", body["error"]
    assert body["metadata"]["format"] == images.EXPECTED_FORMAT[name]
    variant = service.get(f"/thumbnails/{image_id}.webp?size=128&wait=20")  # rendered by a worker meanwhile
    assert variant.status == 200 and variant.headers["Content-Type"] == "image/webp", variant.body
    assert max(Image.open(io.BytesIO(variant.body)).size) <= 128
    assert service.request("DELETE", f"/delete/{image_id}").status == 204
    assert service.get(f"/images/{image_id}").status == 404
    assert service.files_of(image_id) == []


@pytest.mark.corpus
def test_whole_corpus_end_to_end(service: Service) -> None:
    """Every real file: a 415 at upload, or a final status with a message; the worker survives them all."""
    require_corpus()
    files = corpus_files()
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda p: (p, service.upload(p.read_bytes(), p.name)), files))
    accepted = []
    for path, reply in replies:
        assert reply.status in (202, 415), (path, reply.status, reply.body)
        reply.json()
        if reply.status == 202:
            accepted.append((path, reply.json()["id"]))
        else:
            assert not _must_be_accepted(path), f"{path} refused: {reply.body!r}"
    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda item: (item[0], check_processed(service, item[1])), accepted))
    for path, body in bodies:
        if _must_succeed(path):
            assert body["status"] == "success", (path, body["error"])
    # The worker is still alive and well after every hostile file.
    reply = service.upload(images.jpeg(), "after-corpus.jpg")
    assert check_processed(service, reply.json()["id"])["status"] == "success"
    for _, image_id in accepted:
        assert service.request("DELETE", f"/images/{image_id}").status == 204
    leftovers = [key for key in service.stored() if key.startswith("originals/")]
    assert len(leftovers) == 1  # only the after-corpus image


# Valid files that Pillow cannot read: refused as unsupported, not crashed on (bmpsuite's rarest variants).
PILLOW_UNSUPPORTED = {"g_rgb32bf.bmp"}


def _must_be_accepted(path: Path) -> bool:
    folder = path.parent.name
    if folder == "broken" or path.name.startswith(("x", "b_", "q_")) or path.name in PILLOW_UNSUPPORTED:
        return False
    return True


def _must_succeed(path: Path) -> bool:
    return _must_be_accepted(path) and not path.name.startswith(("jpg_invalid", "jpg_corrupted"))


def test_delete_racing_with_processing_leaves_nothing(service: Service) -> None:
    data = images.encode(images.gradient((2400, 1600)), "PNG")
    ids = []
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8):
        image_id = service.upload(data, "race.png").json()["id"]
        time.sleep(delay)
        assert service.request("DELETE", f"/images/{image_id}").status == 204
        ids.append(image_id)
    time.sleep(3)  # let the worker finish whatever it had started
    for image_id in ids:
        assert service.get(f"/images/{image_id}").status == 404
        assert service.get(f"/thumbnails/{image_id}.jpg").status == 404
        assert service.files_of(image_id) == [], image_id


def test_concurrent_uploads_are_all_processed(service: Service) -> None:
    data = images.jpeg((800, 600))
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: service.upload(data, "burst.jpg"), range(24)))
    assert all(r.status == 202 for r in replies)
    ids = {r.json()["id"] for r in replies}
    assert len(ids) == 24
    assert all(check_processed(service, i)["status"] == "success" for i in ids)
    listed = service.get("/images?limit=100").json()["items"]
    assert ids <= {item["id"] for item in listed}


def test_rabbitmq_broker(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    svc = start("postgres+rabbitmq", tmp_path / "data", request)
    try:
        image_id = svc.upload(images.jpeg(), "rabbit.jpg").json()["id"]
        assert check_processed(svc, image_id)["status"] == "success"
    finally:
        assert svc.stop() == [0, 0]


def test_restart_resumes_pending_images(tmp_path: Path) -> None:
    """Uploads accepted while no worker runs are processed after the service restarts with one."""
    data_dir = tmp_path / "data"
    web_only = Service(data_dir).start("web")
    ids = [web_only.upload(images.FACTORIES[n](), n).json()["id"] for n in ("JPEG", "PNG", "TIFF", "HEIF")]
    assert all(web_only.get(f"/images/{i}").json()["status"] == "pending" for i in ids)
    assert web_only.stop() == [0]
    full = Service(data_dir).start("serve")
    try:
        assert all(check_processed(full, i)["status"] == "success" for i in ids)
    finally:
        assert full.stop(signal.SIGINT) == [0]


def test_sigterm_stops_everything_cleanly(tmp_path: Path) -> None:
    import subprocess

    svc = Service(tmp_path / "data").start("serve")
    pid = svc.processes[0].pid
    assert svc.stop(signal.SIGTERM, timeout=40) == [0]
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    assert children == []


def test_worker_killed_mid_processing_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL the worker while it holds images: once their leases run out, a new worker finishes them all."""
    env = {"APERCU_TASK_TIME_LIMIT": "3", "APERCU_RECOVERY_INTERVAL": "1", "APERCU_RECOVERY_GRACE": "1"}
    svc = Service(tmp_path / "data", env).start("web", "worker")
    big = images.encode(images.gradient((160, 120)).resize((7000, 5000)), "PNG", compress_level=1)
    try:
        ids = {svc.upload(big, f"big-{n}.png").json()["id"] for n in range(12)}  # ~0.2 s of work each
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = {i["id"]: i["status"] for i in svc.get("/images?limit=50").json()["items"]}
            if "processing" in statuses.values():
                break
        svc.crash(1)  # the worker and its pool, mid-task
        held = {i for i, status in statuses.items() if status == "processing"}
        assert held, f"the worker was never seen at work: {statuses}"
        assert all(svc.get(f"/images/{i}").json()["status"] == "processing" for i in held)
        svc.start("worker")
        assert all(svc.wait_final(i, timeout=90)["status"] == "success" for i in ids)
        assert all(check_processed(svc, i)["metadata"]["width"] == 7000 for i in held)
    finally:
        svc.stop()


def test_a_worker_started_with_celerys_own_command(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """`celery -A apercu.worker worker` is a full apercu worker (processing, heartbeat: /readyz/workers is 200 only
    while a worker beats; deregistered once stopped), and Celery's other commands reach it: `inspect ping` answers,
    `purge` empties the queue."""
    import subprocess
    import sys

    from apercu.storage.catalog import Catalog

    env = {"APERCU_DATABASE_URL": request.getfixturevalue("fresh_postgres_url"),  # no other worker beats there
           "APERCU_BROKER_URL": request.getfixturevalue("redis_url")}
    svc = Service(tmp_path / "data", env).start("web", "celery-worker")
    try:
        image_id = svc.upload(images.jpeg(), "celery.jpg").json()["id"]
        assert check_processed(svc, image_id)["status"] == "success"

        def celery(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "celery", "-A", "apercu.worker", *args]
            return subprocess.run(command, env=svc.env, capture_output=True, text=True, timeout=60)

        ping = celery("inspect", "ping", "--timeout=5")
        assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
        purge = celery("purge", "-f")
        assert purge.returncode == 0, purge.stdout + purge.stderr
    finally:
        codes = svc.stop()
    assert codes == [0, 0], svc.log.read_text()[-3000:]
    catalog = Catalog.from_url(env["APERCU_DATABASE_URL"])
    assert catalog.workers.count_live() == 0  # it said goodbye after its last task
    catalog.engine.dispose()


def test_a_celery_worker_that_cannot_beat_does_not_run(tmp_path: Path) -> None:
    """Celery logs and ignores what a worker_init handler raises; a worker without its heartbeat would have its
    leases taken over while it works, so it exits instead."""
    import subprocess
    import sys

    from live import COMMANDS, free_port

    env = {**Service(tmp_path / "data").env, "APERCU_DATABASE_URL": f"postgresql://127.0.0.1:{free_port()}/none"}
    worker = subprocess.run([sys.executable, *COMMANDS["celery-worker"]], env=env, capture_output=True, text=True,
                            timeout=120)
    assert worker.returncode == 3, worker.stderr[-2000:]
    assert "cannot start its heartbeat" in worker.stderr
