"""Integration: apercu on several machines that share nothing but PostgreSQL, Redis and an S3 server.

The web process and two workers each run in an empty working directory of their own (their data directories
hold only staging files): every image lives in a real SeaweedFS bucket, every state in PostgreSQL, every task in
Redis. The schema is created the way docs/DEPLOYMENT.md says, with `apercu db upgrade`, before anything starts.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
import pytest
import sqlalchemy as sa
from live import Service
from PIL import Image

from apercu.storage.catalog import Catalog
from apercu.storage.catalog.tables import images as images_table
from apercu.storage.catalog.tables import workers

pytestmark = pytest.mark.integration


class Cluster:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.env = env
        self.web = Service(root / "web" / "apercu-data", env)
        self.workers = [Service(root / f"worker-{n}" / "apercu-data", env) for n in "ab"]

    def start(self) -> None:
        self.web.data_dir.mkdir(parents=True)
        upgrade = subprocess.run(
            [sys.executable, "-m", "apercu", "db", "upgrade"], env=self.web.env, capture_output=True, text=True,
            timeout=60, cwd=self.web.data_dir.parent,
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        for worker in self.workers:
            worker.launch("worker")
        self.web.start("web")
        self.web._wait_ready("/readyz", "/readyz/workers")  # a worker beats

    def stop(self) -> list[int]:
        return [code for svc in (self.web, *self.workers) for code in svc.stop()]


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    env = {
        "APERCU_DATABASE_URL": request.getfixturevalue("fresh_postgres_url"),
        "APERCU_BROKER_URL": request.getfixturevalue("redis_url"),
        "APERCU_QUEUE": f"machines-{uuid.uuid4().hex[:8]}",
        **request.getfixturevalue("seaweedfs").service_env(),
        "APERCU_TASK_TIME_LIMIT": "5",  # leases of a killed worker's images run out soon after
        "APERCU_RECOVERY_INTERVAL": "1",
        "APERCU_RECOVERY_GRACE": "1",
    }
    cluster = Cluster(tmp_path, env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def local_files(svc: Service) -> list[Path]:
    """What a machine keeps on its own disk besides staging and its processes' metrics: nothing, when images live
    in S3."""
    own = ("tmp", "metrics")
    return [p for p in svc.data_dir.rglob("*") if p.is_file() and p.relative_to(svc.data_dir).parts[0] not in own]


def wait_success(web: Service, image_id: str, timeout: float = 90.0) -> dict[str, Any]:
    body = web.wait_final(image_id, timeout)
    assert body["status"] == "success", body
    return body


def test_every_format_through_web_and_two_workers(cluster: Cluster) -> None:
    web = cluster.web
    ids = {name: web.upload(factory(), f"m.{name.lower()}").json()["id"] for name, factory in images.FACTORIES.items()}
    for name, image_id in ids.items():
        body = wait_success(web, image_id)
        assert body["metadata"]["format"] == images.EXPECTED_FORMAT[name]
        thumb = web.get(f"/thumbnails/{image_id}.jpg")
        assert thumb.status == 200 and Image.open(io.BytesIO(thumb.body)).size == (
            body["thumbnail"]["width"], body["thumbnail"]["height"])
        assert web.get(f"/thumbnails/{image_id}.jpg", headers={"If-None-Match": thumb.headers["ETag"]}).status == 304
        variant = web.get(f"/thumbnails/{image_id}.webp?size=512&wait=20")
        assert variant.status == 200 and Image.open(io.BytesIO(variant.body)).format == "WEBP", variant.body
    assert len([k for k in web.stored() if k.startswith("originals/")]) == len(ids)
    for image_id in ids.values():
        assert web.request("DELETE", f"/images/{image_id}").status == 204
        assert web.get(f"/thumbnails/{image_id}.webp?size=512").status == 404
    assert web.stored() == []  # the bucket is empty again
    assert all(local_files(svc) == [] for svc in (web, *cluster.workers)), "a machine kept a file on its own disk"


def held_by(catalog: Catalog, pid: int) -> set[str]:
    """The images whose lease the worker process `pid` holds right now."""
    with catalog.engine.connect() as conn:
        rows = conn.execute(
            sa.select(images_table.c.id).join(workers, workers.c.id == images_table.c.lease_worker)
            .where(workers.c.pid == pid, images_table.c.status == "processing")
        )
        return {row.id for row in rows}


def test_a_worker_killed_mid_batch_leaves_its_work_to_the_other(cluster: Cluster) -> None:
    web, doomed = cluster.web, cluster.workers[0]
    catalog = Catalog.from_url(cluster.env["APERCU_DATABASE_URL"])
    big = images.encode(images.gradient((160, 120)).resize((7000, 5000)), "PNG", compress_level=1)
    ids = {web.upload(big, f"big-{n}.png").json()["id"] for n in range(16)}  # ~0.2 s of work each
    deadline = time.monotonic() + 30
    held: set[str] = set()
    while time.monotonic() < deadline and not held:
        held = held_by(catalog, doomed.processes[0].pid)
    doomed.crash(0)  # worker a and its imaging processes, mid-task: a machine losing power
    assert held, "worker a was never seen holding an image"
    for image_id in held:  # finished by worker b once worker a's leases were found dead
        assert wait_success(web, image_id)["metadata"]["width"] == 7000
    for image_id in ids:
        assert wait_success(web, image_id)["metadata"]["width"] == 7000
    for image_id in ids:
        assert web.request("DELETE", f"/images/{image_id}").status == 204
    assert web.stored() == []
    catalog.engine.dispose()
