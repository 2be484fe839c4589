"""The web during a dependency's outage (issue 17): 503 + Retry-After naming the dependency, never 500; while it is
known down, requests that need it are refused at once without trying it (`api.outage_breaker`), and no request
waits long on a server that never answers (bounded connect times); one log line when it goes and one when it is
back, no traceback; refusals counted; /readyz always checks; uploads accepted again by themselves."""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from pathlib import Path
from typing import Any

import images
import kombu.exceptions
import pytest
import sqlalchemy.exc
from conftest import parse_json
from own_servers import OwnPostgres, blackhole

from apercu import metrics
from apercu.api import create_app
from apercu.api.outage_breaker import PROBE_INTERVAL
from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.storage.catalog.engine import POSTGRES_TIMEOUTS
from apercu.tasks import context_of

RECOVERY_TIMEOUT = 10.0
SHORT_CIRCUIT = 0.25  # seconds a refusal without trying may cost, at most (~1 ms; a busy CI machine pauses)


def upload(client: Any) -> Any:
    return client.post("/images", data={"file": (io.BytesIO(images.jpeg()), "a.jpg")})


def refusals(dependency: str) -> float:
    value = metrics.REGISTRY.get_sample_value("apercu_dependency_refusals_total", {"dependency": dependency})
    return value or 0.0


def assert_unavailable(response: Any, code: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert int(response.headers["Retry-After"]) > 0
    error = parse_json(response)["error"]
    assert error["code"] == code and "unavailable" in error["message"]


def first_accepted(client: Any, what: str) -> float:
    """Upload until one is accepted (refused with 503 until then): the seconds it took."""
    back = time.monotonic()
    while (status := upload(client).status_code) != 202 and time.monotonic() - back < RECOVERY_TIMEOUT:
        assert status == 503
        time.sleep(0.1)
    recovered = time.monotonic() - back
    assert status == 202, f"no upload accepted {recovered:.1f} s after the {what} came back"
    return recovered


def originals(service: Any) -> list[str]:
    return sorted(service.storage.blobs.keys(blob_keys.ORIGINALS))


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


def timed(request: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


def refused_at_once(client: Any, paths: list[str], code: str) -> float:
    """Requests for `paths`, sent before the next probe is due: each refused without trying. The slowest's time."""
    slowest = 0.0
    for path in paths:
        response, seconds = timed(lambda path=path: client.get(path))
        assert_unavailable(response, code)
        slowest = max(slowest, seconds)
    assert slowest < SHORT_CIRCUIT, f"a refusal while known down took {slowest:.3f} s"
    return slowest


def assert_not_ready(response: Any, dependency: str) -> None:
    """/readyz's 503 names the dependency with a short reason: no address, no driver's text."""
    assert response.status_code == 503
    report = parse_json(response)
    assert report["status"] == "unavailable"
    reason = report["checks"][dependency]
    assert reason.startswith("unavailable (") and len(reason) < 60, reason
    assert "127.0.0.1" not in response.get_data(as_text=True)


def assert_ready(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)


def test_storage_killed_then_back(
    tmp_path: Path, own_seaweedfs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """SeaweedFS SIGKILLed: a delete is 503 storage_unavailable and removes nothing; then, the store known down,
    uploads and thumbnails are refused at once without trying it, while reads of the catalog and /healthz still
    answer; /readyz is 503 naming the store; logged once, counted; after its restart /readyz is 200 again and an
    upload is 202 within seconds."""
    settings = Settings(data_dir=tmp_path / "data", storage_url=own_seaweedfs.storage_url(),
                        s3_endpoint_url=own_seaweedfs.endpoint_url)
    app = create_app(settings)
    client, service = app.test_client(), app.extensions["apercu"]
    image_id = parse_json(upload(client))["id"]
    context_of(service.celery).processor.process(image_id, owner="test")
    assert client.get(f"/thumbnails/{image_id}.jpg").status_code == 200
    service.storage.catalog.workers.beat("w", "host/1", 1)  # /readyz wants a live worker too
    assert_ready(client)
    before, rows = refusals("storage"), service.storage.catalog.images.counts()

    own_seaweedfs.stop()
    with caplog.at_level(logging.INFO):
        assert_unavailable(client.delete(f"/images/{image_id}"), "storage_unavailable")
        assert_unavailable(upload(client), "storage_unavailable")
        refused_at_once(client, [f"/thumbnails/{image_id}.jpg", f"/thumbnails/{image_id}.webp"], "storage_unavailable")
        assert service.storage.catalog.images.counts() == rows  # the refused upload recorded nothing
        assert client.get(f"/images/{image_id}").status_code == 200  # the refused delete removed nothing
        assert client.get("/healthz").status_code == 200
        assert refusals("storage") - before == 4
        scraped = client.get("/metrics").get_data(as_text=True)
        assert 'apercu_dependency_refusals_total{dependency="storage"}' in scraped
        assert_not_ready(client.get("/readyz"), "storage")

        own_seaweedfs.restart()
        assert_ready(client)  # /readyz always checks: the store answers again, and its breaker closes
        recovered = first_accepted(client, "store")
    print(f"first 202 {recovered:.2f} s after the store's return")
    lines = [r.getMessage() for r in caplog.records if r.name == "apercu.api.outage_breaker"]
    assert len([m for m in lines if "storage unavailable" in m]) == 1, lines
    assert len([m for m in lines if "storage available again" in m and "requests refused" in m]) == 1, lines
    no_tracebacks(caplog)


def test_catalog_outage_is_a_503_and_a_bug_still_a_500(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog's OperationalError (what a lost PostgreSQL gives) is catalog_unavailable on an upload (its
    stored file removed again), then, known down, on reads refused at once; counted, logged once; /readyz finding
    it back closes the breaker; an exception of our own stays a 500 with its traceback."""
    app = create_app(settings)
    client, service = app.test_client(), app.extensions["apercu"]
    image_id = parse_json(upload(client))["id"]
    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    def gone(*_args: Any, **_kwargs: Any) -> Any:
        raise lost

    before, stored, ping = refusals("catalog"), originals(service), service.storage.catalog.ping
    monkeypatch.setattr(service.storage.catalog.images, "get", gone)
    monkeypatch.setattr(service.storage.catalog.images, "add", gone)
    monkeypatch.setattr(service.storage.catalog.images, "page", gone, raising=False)
    monkeypatch.setattr(service.storage.catalog, "ping", gone)
    with caplog.at_level(logging.INFO):
        assert_unavailable(upload(client), "catalog_unavailable")
        refused_at_once(client, [f"/images/{image_id}", "/images"], "catalog_unavailable")
        assert_not_ready(client.get("/readyz"), "catalog")
    assert refusals("catalog") - before == 3
    assert originals(service) == stored  # the refused upload's file was removed
    lines = [r.getMessage() for r in caplog.records if "catalog unavailable" in r.getMessage()]
    assert len(lines) == 1 and "server closed" not in parse_json(client.get(f"/images/{image_id}"))["error"][
        "message"], lines
    no_tracebacks(caplog)

    def bug(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("ours")

    monkeypatch.setattr(service.storage.catalog, "ping", ping)
    client.get("/readyz")  # its catalog check passes: the breaker closes
    monkeypatch.setattr(service.storage.catalog.images, "get", bug)
    response = client.get(f"/images/{image_id}")
    assert response.status_code == 500 and parse_json(response)["error"]["code"] == "internal_error"


def test_postgres_killed_then_back(
    settings: Settings, own_postgres: OwnPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog's server SIGKILLed: an upload is 503 catalog_unavailable (its stored file removed again), then
    a read and a list, known down, are refused at once; /readyz is 503 naming the catalog. Once it is back,
    /readyz is 200, the pool's dead connections are replaced and the same app answers again within seconds."""
    app = create_app(dataclasses.replace(settings, database_url=own_postgres.url))
    client, service = app.test_client(), app.extensions["apercu"]
    image_id = parse_json(upload(client))["id"]
    stored = originals(service)
    own_postgres.kill()
    with caplog.at_level(logging.INFO):
        assert_unavailable(upload(client), "catalog_unavailable")
        refused_at_once(client, [f"/images/{image_id}", "/images"], "catalog_unavailable")
        assert originals(service) == stored
        assert_not_ready(client.get("/readyz"), "catalog")
        own_postgres.start()
        service.storage.catalog.workers.beat("w", "host/1", 1)  # /readyz wants a live worker too
        assert_ready(client)
        recovered = first_accepted(client, "catalog")
        assert client.get(f"/images/{image_id}").status_code == 200
    print(f"first 202 {recovered:.2f} s after the catalog's return")
    lines = [r.getMessage() for r in caplog.records if "catalog unavailable" in r.getMessage()]
    assert len(lines) == 1, lines
    no_tracebacks(caplog)


def test_broker_away_still_accepts_uploads_quietly(
    app: Any, client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker down: the upload is still 202 (recorded, left to the recovery sweep), logged without a
    traceback, and no refusal is counted."""
    def refused(*_args: Any, **_kwargs: Any) -> None:
        raise kombu.exceptions.OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr("apercu.service.enqueue", refused)
    before = refusals("broker")
    with caplog.at_level(logging.INFO):
        response = upload(client)
    assert response.status_code == 202
    image = app.extensions["apercu"].storage.catalog.images.get(parse_json(response)["id"])
    assert image is not None
    assert [r for r in caplog.records if "broker unavailable" in r.getMessage()]
    assert refusals("broker") == before
    no_tracebacks(caplog)


def test_postgres_blackholed_costs_one_connect_timeout_then_nothing(
    settings: Settings, own_postgres: OwnPostgres
) -> None:
    """The catalog's server gone and its port blackholed (connecting never completes, as behind a firewall): the
    first request is refused after the connect timeout (a few seconds, not the kernel's two minutes of SYN
    retries), the next ones at once without trying it, and /healthz is not held up at all."""
    app = create_app(dataclasses.replace(settings, database_url=own_postgres.url))
    client = app.test_client()
    image_id = parse_json(upload(client))["id"]
    own_postgres.kill()
    with blackhole(own_postgres.port):
        first, opening = timed(lambda: client.get(f"/images/{image_id}"))
        assert_unavailable(first, "catalog_unavailable")
        assert opening < POSTGRES_TIMEOUTS["connect_timeout"] + 2, f"{opening:.1f} s to refuse the first request"
        slowest = refused_at_once(client, [f"/images/{image_id}", "/images", f"/thumbnails/{image_id}.jpg"],
                                  "catalog_unavailable")
        health, healthz = timed(lambda: client.get("/healthz"))
        assert health.status_code == 200 and healthz < SHORT_CIRCUIT
    print(f"blackholed catalog: first refusal {opening:.2f} s, then {slowest * 1000:.1f} ms at most")
    own_postgres.start()
    time.sleep(PROBE_INTERVAL)
    assert client.get(f"/images/{image_id}").status_code == 200  # this request's probe finds it back


def test_broker_blackholed_upload_accepted_within_seconds(settings: Settings) -> None:
    """A Redis broker whose address never answers: an upload is still 202 (recorded, left to the recovery
    sweep), within a couple of seconds rather than the kernel's SYN retries for each publish attempt."""
    with blackhole() as port:
        app = create_app(dataclasses.replace(settings, broker_url=f"redis://127.0.0.1:{port}/0"))
        response, seconds = timed(lambda: upload(app.test_client()))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert seconds < 3.0, f"an upload took {seconds:.1f} s with the broker blackholed"
    assert app.extensions["apercu"].storage.catalog.images.get(parse_json(response)["id"]) is not None
    print(f"blackholed broker: upload answered 202 in {seconds:.2f} s")


def test_breaker_probes_once_per_interval_and_never_twice_at_once() -> None:
    """While open, every request is refused at once but one per PROBE_INTERVAL (counted from the last probe's
    end), which asks the dependency: with the probe slow (a server that does not answer), the requests meanwhile
    are not held up behind it and no second probe starts; once a probe succeeds the requests go on."""
    from concurrent.futures import ThreadPoolExecutor

    from apercu.api.outage_breaker import Breaker, KnownDown

    calls: list[float] = []
    back = {"yet": False}

    def probe() -> None:
        calls.append(time.monotonic())
        time.sleep(0.5)
        if not back["yet"]:
            raise ConnectionRefusedError("still down")

    breaker = Breaker("storage", probe)
    breaker.refuse(ConnectionRefusedError("gone"))

    def admitted(_: int = 0) -> tuple[bool, float]:
        started = time.monotonic()
        try:
            breaker.admit()
        except KnownDown:
            return False, time.monotonic() - started
        return True, time.monotonic() - started

    def burst() -> list[tuple[bool, float]]:
        with ThreadPoolExecutor(8) as pool:
            return sorted(pool.map(admitted, range(8)), key=lambda result: result[1])

    assert admitted()[0] is False and not calls  # within the interval: refused without asking
    time.sleep(PROBE_INTERVAL)
    refused = burst()
    assert len(calls) == 1 and not any(ok for ok, _seconds in refused)
    assert refused[-2][1] < SHORT_CIRCUIT <= refused[-1][1]  # all but the one that asked: at once
    assert admitted()[0] is False and len(calls) == 1  # the interval counts from the probe's end

    back["yet"] = True
    time.sleep(PROBE_INTERVAL)
    after = burst()
    assert len(calls) == 2 and after[-1][0] is True  # the one that asked found it back, and went on
    assert breaker.down_since is None and admitted() == (True, pytest.approx(0, abs=SHORT_CIRCUIT))
