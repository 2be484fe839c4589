"""The web during a dependency's outage (issue 17): 503 + Retry-After naming the dependency, never 500; one log
line when it goes and one when it is back, no traceback; refusals counted; uploads accepted again by themselves."""

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
from own_servers import OwnPostgres

from apercu import metrics
from apercu.api import create_app
from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.tasks import context_of

RECOVERY_TIMEOUT = 10.0


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


def test_storage_killed_then_back(
    tmp_path: Path, own_seaweedfs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """SeaweedFS SIGKILLed: an upload, a thumbnail and a delete are 503 storage_unavailable (the upload and the
    delete leave nothing half-done), logged once, counted; after its restart an upload is 202 within seconds."""
    settings = Settings(data_dir=tmp_path / "data", storage_url=own_seaweedfs.storage_url(),
                        s3_endpoint_url=own_seaweedfs.endpoint_url)
    app = create_app(settings)
    client, service = app.test_client(), app.extensions["apercu"]
    image_id = parse_json(upload(client))["id"]
    context_of(service.celery).processor.process(image_id, owner="test")
    assert client.get(f"/thumbnails/{image_id}.jpg").status_code == 200
    before, rows = refusals("storage"), service.storage.catalog.images.counts()

    own_seaweedfs.stop()
    with caplog.at_level(logging.INFO):
        assert_unavailable(upload(client), "storage_unavailable")
        assert_unavailable(client.get(f"/thumbnails/{image_id}.jpg"), "storage_unavailable")
        assert_unavailable(client.delete(f"/images/{image_id}"), "storage_unavailable")
        assert_unavailable(upload(client), "storage_unavailable")
        assert service.storage.catalog.images.counts() == rows  # the refused uploads recorded nothing
        assert client.get(f"/images/{image_id}").status_code == 200  # the refused delete removed nothing
        assert refusals("storage") - before == 4
        scraped = client.get("/metrics").get_data(as_text=True)
        assert 'apercu_dependency_refusals_total{dependency="storage"}' in scraped

        own_seaweedfs.restart()
        recovered = first_accepted(client, "store")
        time.sleep(1.1)  # one probe interval: the next request's check finds it back and says so
        assert client.get(f"/images/{image_id}").status_code == 200
    print(f"first 202 {recovered:.2f} s after the store's return")
    lines = [r.getMessage() for r in caplog.records if r.name == "apercu.api.outage_breaker"]
    assert len([m for m in lines if "storage unavailable" in m]) == 1, lines
    assert len([m for m in lines if "storage available again" in m and "requests refused" in m]) == 1, lines
    no_tracebacks(caplog)


def test_catalog_outage_is_a_503_and_a_bug_still_a_500(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog's OperationalError (what a lost PostgreSQL gives) is catalog_unavailable on a read, a list and
    an upload, counted, logged once; an exception of our own stays a 500 with its traceback."""
    app = create_app(settings)
    client, service = app.test_client(), app.extensions["apercu"]
    image_id = parse_json(upload(client))["id"]
    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    def gone(*_args: Any, **_kwargs: Any) -> Any:
        raise lost

    before, stored = refusals("catalog"), originals(service)
    monkeypatch.setattr(service.storage.catalog.images, "get", gone)
    monkeypatch.setattr(service.storage.catalog.images, "add", gone)
    monkeypatch.setattr(service.storage.catalog.images, "page", gone, raising=False)
    monkeypatch.setattr(service.storage.catalog, "ping", gone)
    with caplog.at_level(logging.INFO):
        assert_unavailable(client.get(f"/images/{image_id}"), "catalog_unavailable")
        assert_unavailable(upload(client), "catalog_unavailable")
        assert_unavailable(client.get(f"/images/{image_id}"), "catalog_unavailable")
    assert refusals("catalog") - before == 3
    assert originals(service) == stored  # the refused upload's file was removed
    lines = [r.getMessage() for r in caplog.records if "catalog unavailable" in r.getMessage()]
    assert len(lines) == 1 and "server closed" not in parse_json(client.get(f"/images/{image_id}"))["error"][
        "message"], lines
    no_tracebacks(caplog)

    def bug(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("ours")

    monkeypatch.setattr(service.storage.catalog.images, "get", bug)
    response = client.get(f"/images/{image_id}")
    assert response.status_code == 500 and parse_json(response)["error"]["code"] == "internal_error"


def test_postgres_killed_then_back(
    settings: Settings, own_postgres: OwnPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog's server SIGKILLed: a read, a list and an upload are 503 catalog_unavailable (the upload's
    stored file removed again), logged once; once it is back, the pool's dead connections are replaced and the
    same app answers again within seconds."""
    app = create_app(dataclasses.replace(settings, database_url=own_postgres.url))
    client, service = app.test_client(), app.extensions["apercu"]
    image_id = parse_json(upload(client))["id"]
    stored = originals(service)
    own_postgres.kill()
    with caplog.at_level(logging.INFO):
        assert_unavailable(client.get(f"/images/{image_id}"), "catalog_unavailable")
        assert_unavailable(client.get("/images"), "catalog_unavailable")
        assert_unavailable(upload(client), "catalog_unavailable")
        assert originals(service) == stored
        own_postgres.start()
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
