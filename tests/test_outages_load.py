"""Issue 17, item 5: real `apercu web` and `apercu worker` processes on a PostgreSQL, a Redis and a SeaweedFS of
the test's own, under a steady upload load, while one of them is SIGKILLed for a few seconds and started again.

Two client threads upload a small JPEG every ~120 ms throughout. Afterwards: no answer but 202 or 503 at any
moment; every 503 carries Retry-After and names the killed dependency; while the blob store or the catalog is down
uploads are refused that way, while the broker is down they are still accepted; every accepted image reaches
`success`; the originals in the bucket are exactly the rows in the catalog; the web logged no traceback, nor did
the worker's own code (Celery's consumer still logs one per running task when it loses the broker: it tries to
cancel them, which its thread pool cannot do). The time from the dependency's return to the first accepted
upload, the refusals per code and the slowest answer during the outage are printed (pytest -s) and kept in the
assertion messages. Recovery sweeps run every 2 s here (10 s by default), so that what the outage left for them
is sent again within the test's time.

What these tests found: the worker exited when Redis went away (see `apercu.storage.redis_broker`), the images
whose messages died with Redis waited out the 300 s recovery grace (a reconnection now wakes the recovery sweep,
without grace: `tasks.housekeeping.Housekeeping.broker_connected`), and the
worker's PostgreSQL commits were not durable, so a crashed database server left images stuck for minutes (see
`apercu.storage.catalog.engine.create_engine`).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import images
import pytest
import sqlalchemy as sa
from live import Reply, Service

from apercu.storage import blob_keys
from apercu.storage.catalog import Catalog
from apercu.storage.catalog.tables import images as images_table

pytestmark = pytest.mark.integration

WARM_UP = 1.5  # seconds of load before the kill
OUTAGE = 5.0  # seconds the dependency stays dead
AFTER = 3.0  # seconds of load after its return
PAUSE = 0.12  # between one client's uploads
CLIENTS = 2
SETTLE_TIMEOUT = 75.0  # for every accepted image to reach success, from the end of the load
RECOVERY_BOUND = 10.0  # seconds after its return by which an upload must be accepted again
PREFIX = "apercu"


@dataclass(frozen=True)
class Sample:
    """One upload as a client saw it."""

    started: float
    ended: float
    status: int
    code: str | None  # the error's code, for a refusal
    retry_after: str | None
    image_id: str | None  # for a 202
    body: bytes

    @classmethod
    def of(cls, started: float, reply: Reply) -> Sample:
        payload = reply.json() if reply.headers.get("Content-Type", "").startswith("application/json") else {}
        error = payload.get("error") if isinstance(payload, dict) else None
        return cls(
            started, time.monotonic(), reply.status, error["code"] if error else None,
            reply.headers.get("Retry-After"), payload.get("id") if reply.status == 202 else None, reply.body[:300],
        )


@dataclass
class Load:
    """CLIENTS threads uploading until stopped, every answer recorded."""

    web: Service
    samples: list[Sample] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        data = images.jpeg((64, 48))
        for n in range(CLIENTS):
            thread = threading.Thread(target=self._client, args=(data,), name=f"load-{n}", daemon=True)
            self.threads.append(thread)
            thread.start()
        return self

    def _client(self, data: bytes) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.samples.append(Sample.of(started, self.web.upload(data, "load.jpg")))
            except OSError as exc:  # no answer at all (status 0): the web closed or reset the connection
                self.samples.append(Sample(started, time.monotonic(), 0, None, None, None, repr(exc).encode()))
            self.stopping.wait(PAUSE)

    def stop(self) -> list[Sample]:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=90)
        return sorted(self.samples, key=lambda s: s.started)


@dataclass(frozen=True)
class Outage:
    """What one dependency's outage did to the uploads: the figures the closing note quotes."""

    dependency: str
    signalled: float  # when the SIGKILL was sent
    killed: float  # when the server was seen gone
    restarting: float  # when it was started again
    back: float  # when it served again
    samples: list[Sample]

    def during(self) -> list[Sample]:
        """The uploads sent after the kill and answered before the restart began: while it was surely down."""
        return [s for s in self.samples if s.started >= self.killed and s.ended <= self.restarting]

    def refused_before_kill(self) -> list[Sample]:
        return [s for s in self.samples if s.status == 503 and s.ended < self.signalled]

    def first_accepted_after_return(self) -> float | None:
        accepted = [s.ended for s in self.samples if s.started >= self.back and s.status == 202]
        return min(accepted) - self.back if accepted else None

    def summary(self) -> str:
        during = self.during()
        codes = Counter(s.code or str(s.status) for s in during)
        slowest = max((s.ended - s.started for s in during), default=0.0)
        recovery = self.first_accepted_after_return()
        return (
            f"{self.dependency}: {len(self.samples)} uploads, {len(during)} during the {self.restarting - self.killed:.1f} s "
            f"outage answered {dict(codes)}, slowest {slowest:.2f} s; restarted in {self.back - self.restarting:.1f} s, "
            "first 202 "
            + (f"{recovery:.2f} s after its return" if recovery is not None else "never after its return")
            + f"; 503s in all {dict(Counter(s.code for s in self.samples if s.status == 503))}, "
            f"{len([s for s in self.samples if s.status == 503 and s.started >= self.back])} of them after its return, "
            f"{len(self.refused_before_kill())} before the kill"
        )


@dataclass
class Deployment:
    """A web and a worker on the own servers, each process with its own log."""

    web: Service
    worker: Service
    database_url: str
    bucket: str
    servers: dict[str, Any]

    def stop(self) -> None:
        self.web.stop()
        self.worker.stop()


@pytest.fixture
def deployment(
    tmp_path: Path, own_postgres: Any, own_redis: Any, own_seaweedfs: Any
) -> Iterator[Deployment]:
    bucket = own_seaweedfs.new_bucket()
    env = {
        "APERCU_DATABASE_URL": own_postgres.url,
        "APERCU_BROKER_URL": own_redis.url,
        "APERCU_QUEUE": f"load-{uuid.uuid4().hex[:8]}",
        **own_seaweedfs.service_env(bucket, PREFIX),
        "APERCU_RECOVERY_INTERVAL": "2",
        "APERCU_LOG_LEVEL": "INFO",
    }
    web, worker = Service(tmp_path / "web" / "apercu-data", env), Service(tmp_path / "worker" / "apercu-data", env)
    web.data_dir.mkdir(parents=True)
    upgrade = subprocess.run(
        [sys.executable, "-m", "apercu", "db", "upgrade"], env=web.env, capture_output=True, text=True, timeout=60,
        cwd=web.data_dir.parent,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    found = Deployment(web, worker, own_postgres.url, bucket,
                       {"storage": own_seaweedfs, "catalog": own_postgres, "broker": own_redis})
    try:
        worker.launch("worker")
        web.start("web")
        web._wait_ready("/readyz", "/readyz/workers")  # the worker beats
        yield found
    finally:
        found.stop()


def kill(server: Any) -> Callable[[], None]:
    """SIGKILL the server; returns what starts it again (and returns once it serves)."""
    if hasattr(server, "restart"):  # SeaweedFS
        server.stop()
        return server.restart  # type: ignore[no-any-return]
    server.kill()
    return server.start  # type: ignore[no-any-return]


def run_outage(deployment: Deployment, dependency: str) -> Outage:
    load = Load(deployment.web).start()
    try:
        time.sleep(WARM_UP)
        signalled = time.monotonic()
        restart = kill(deployment.servers[dependency])
        killed = time.monotonic()
        time.sleep(OUTAGE)
        restarting = time.monotonic()
        restart()
        back = time.monotonic()
        time.sleep(AFTER)
    finally:
        samples = load.stop()
    return Outage(dependency, signalled, killed, restarting, back, samples)


def statuses_are_outages(outage: Outage, code: str | None) -> None:
    """Only 202 and 503 at any moment; every 503 with Retry-After and the dependency's code."""
    wrong = [s for s in outage.samples if s.status not in (202, 503)]
    assert not wrong, f"{outage.summary()}\nanswers neither 202 nor 503: {wrong[:5]}"
    refused = [s for s in outage.samples if s.status == 503]
    bad = [s for s in refused if s.code != code or not s.retry_after or int(s.retry_after) <= 0]
    assert not bad, f"{outage.summary()}\n503s without Retry-After or not {code}: {bad[:5]}"


def unsettled(deployment: Deployment, ids: list[str]) -> dict[str, str]:
    """The images that have not reached success by SETTLE_TIMEOUT, each with its row as the catalog has it (one
    query for all of them every half second)."""
    catalog = Catalog.from_url(deployment.database_url)
    columns = [images_table.c[name] for name in ("id", "status", "attempts", "lease_owner", "lease_until",
                                                 "enqueued_at", "error")]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    try:
        while True:
            with catalog.engine.connect() as conn:
                rows = {row.id: row for row in conn.execute(sa.select(*columns).where(images_table.c.id.in_(ids)))}
            left = {i: str(rows[i]._asdict()) if i in rows else "no row" for i in ids
                    if i not in rows or rows[i].status != "success"}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)
    finally:
        catalog.engine.dispose()


def originals_and_rows(deployment: Deployment) -> tuple[set[str], set[str]]:
    """The image ids with an original in the bucket, and those with a row in the catalog."""
    client = deployment.servers["storage"].client()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=deployment.bucket, Prefix=f"{PREFIX}/{blob_keys.ORIGINALS}"
    )
    stored = {
        blob_keys.image_id_of(obj["Key"].removeprefix(f"{PREFIX}/")) for page in pages for obj in page.get("Contents", [])
    }
    catalog = Catalog.from_url(deployment.database_url)
    try:
        with catalog.engine.connect() as conn:
            rows = set(conn.scalars(sa.select(images_table.c.id)))
    finally:
        catalog.engine.dispose()
    return stored, rows


RECORD = re.compile(r"^\S+Z [A-Z]+ (\S+): ")  # the first line of a log record (and its logger), as apercu.logs writes it


def logged_tracebacks(service: Service, logger: str = "") -> list[str]:
    """The first line of every log record of the process that carries a traceback, from loggers whose name
    starts with `logger`."""
    heads, head, name = [], "", ""
    for line in service.log.read_text(errors="replace").splitlines():
        if record := RECORD.match(line):
            head, name = line[:300], record.group(1)
        elif line.startswith("Traceback (most recent call last):") and name.startswith(logger) and head not in heads:
            heads.append(head)
    return heads


@pytest.mark.parametrize(
    ("dependency", "code"),
    [("storage", "storage_unavailable"), ("catalog", "catalog_unavailable"), ("broker", None)],
)
def test_a_dependency_killed_under_load(deployment: Deployment, dependency: str, code: str | None) -> None:
    """SIGKILLed for OUTAGE seconds under load, then started again: refused as its outage (the broker's: still
    accepted), back within seconds, nothing lost, nothing half-stored, no traceback in the web's log."""
    outage = run_outage(deployment, dependency)
    summary = outage.summary()
    print(f"\n{summary}")
    statuses_are_outages(outage, code)
    assert not outage.refused_before_kill(), summary
    during = outage.during()
    expected = 503 if code else 202
    assert during and all(s.status == expected for s in during), f"{summary}\nnot all {expected}: {during[:5]}"
    recovery = outage.first_accepted_after_return()
    assert recovery is not None and recovery < RECOVERY_BOUND, summary

    accepted = [s.image_id for s in outage.samples if s.status == 202 and s.image_id]
    unfinished = unsettled(deployment, accepted)
    assert not unfinished, f"{summary}\n{len(unfinished)} of {len(accepted)} accepted never succeeded: {unfinished}"
    print(f"{dependency}: all {len(accepted)} accepted images succeeded {time.monotonic() - outage.back:.1f} s after "
          "its return at the latest")
    stored, rows = originals_and_rows(deployment)
    assert stored == rows, f"{summary}\noriginals without a row: {stored - rows}; rows without: {rows - stored}"
    assert set(accepted) <= rows
    assert not logged_tracebacks(deployment.web), f"{summary}\nthe web logged tracebacks"
    ours = logged_tracebacks(deployment.worker, "apercu")  # (Celery's own are its own: see the module docstring)
    assert not ours, f"{summary}\nthe worker logged tracebacks for an outage: {ours[:5]}"
