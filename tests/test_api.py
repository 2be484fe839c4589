"""API tests through the Flask test client, on a real SQLite catalog and embedded broker, each on both blob
stores: the data directory, and a bucket of a real S3 server (SeaweedFS).

Processing runs in-process through the worker's own code (the `process` fixture) so each test controls when
an image is processed; the real worker process is exercised in test_service.py.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import parse_json
from PIL import Image

from apercu.api.operation import declared_methods
from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.tasks import context_of

ID_LIKE = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Every API test on both blob stores: the data directory, and a bucket of a real S3 server (SeaweedFS)."""
    settings = Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}")
    if request.param == "s3":
        seaweedfs = request.getfixturevalue("seaweedfs")
        return settings.with_overrides(storage_url=seaweedfs.storage_url(prefix="api"),
                                       s3_endpoint_url=seaweedfs.endpoint_url)
    return settings


def stored_keys(app: Any, image_id: str) -> list[str]:
    """What the blob store holds for this image."""
    blobs = app.extensions["apercu"].storage.blobs
    return [k for prefix in (blob_keys.ORIGINALS, blob_keys.THUMBNAILS) for k in blobs.keys(prefix) if image_id in k]


def upload(client: Any, data: bytes, filename: str = "photo.jpg", **kwargs: Any) -> Any:
    return client.post("/images", data={"file": (io.BytesIO(data), filename)}, **kwargs)


def error_code(response: Any) -> str:
    body = parse_json(response)
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return body["error"]["code"]


def test_index_lists_every_route(client: Any, app: Any) -> None:
    body = parse_json(client.get("/"))
    assert body["status"] == "ok" and body["message"] == "Server is up and running" and body["version"]
    listed = {(e["method"], e["path"].replace("{id}", "<image_id>").replace("{asset}", "<asset>")
              .replace("{signature}", "<signature>").replace("{rendition}", "<path:rendition>")
              .replace("{upload_id}", "<upload_id>"))
              for e in body["endpoints"]}
    routed = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in declared_methods(rule)  # (a HEAD or OPTIONS of its own: the resumable uploads')
    }
    assert listed == routed


def test_upload_poll_thumbnail_delete(client: Any, process: Any, app: Any) -> None:
    response = upload(client, images.jpeg((1024, 768), orientation=6, gps=True), filename="../../etc/passwd")
    assert response.status_code == 202
    body = parse_json(response)
    image_id = body["id"]
    assert body["status"] == "pending"
    assert body["links"] == {"self": f"/images/{image_id}", "thumbnail": f"/thumbnails/{image_id}.jpg"}
    assert response.headers["Location"] == f"/images/{image_id}"

    pending = parse_json(client.get(f"/images/{image_id}"))
    assert pending["status"] == "pending" and "metadata" not in pending and pending["processed_at"] is None
    thumb = client.get(f"/thumbnails/{image_id}.jpg")
    assert thumb.status_code == 409 and thumb.headers["Retry-After"] and error_code(thumb) == "not_ready"

    process(image_id)
    done = parse_json(client.get(f"/images/{image_id}"))
    assert done["status"] == "success" and done["error"] is None
    assert done["filename"] == "../../etc/passwd"  # kept as information, never used as a path
    assert done["uploaded_at"].endswith("Z") and done["processed_at"].endswith("Z")
    meta = done["metadata"]
    assert (meta["width"], meta["height"], meta["raw_width"], meta["raw_height"]) == (768, 1024, 1024, 768)
    assert meta["orientation"] == 6 and meta["exif"]["Make"] == "Apercu Test Camera"
    assert len(meta["sha256"]) == 64 and meta["frames"] == 1 and meta["has_alpha"] is False
    assert done["thumbnail"]["url"] == f"/thumbnails/{image_id}.jpg"
    assert (done["thumbnail"]["width"], done["thumbnail"]["height"]) == (192, 256)

    thumb = client.get(f"/thumbnails/{image_id}.jpg")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert len(thumb.data) == done["thumbnail"]["bytes"] and thumb.data[:3] == b"\xff\xd8\xff"
    assert thumb.cache_control.public and thumb.cache_control.max_age == 86400  # no key needed: public
    etag = thumb.headers["ETag"]
    assert client.get(f"/thumbnails/{image_id}.jpg", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/thumbnails/{image_id}.jpg", headers={"If-None-Match": '"other"'}).status_code == 200

    assert client.delete(f"/delete/{image_id}").status_code == 204
    assert client.get(f"/images/{image_id}").status_code == 404
    assert client.get(f"/thumbnails/{image_id}.jpg").status_code == 404
    assert client.delete(f"/delete/{image_id}").status_code == 404
    assert stored_keys(app, image_id) == []
    assert not list(app.extensions["apercu"].settings.data_dir.glob(f"**/{image_id}*"))


def test_delete_via_images_path(client: Any) -> None:
    image_id = parse_json(upload(client, images.png_rgba()))["id"]
    assert client.delete(f"/images/{image_id}").status_code == 204
    assert client.delete(f"/images/{image_id}").status_code == 404


def test_missing_file_field(client: Any) -> None:
    response = client.post("/images", data={"other": "x"})
    assert response.status_code == 400 and error_code(response) == "missing_file"


def test_empty_file(client: Any) -> None:
    response = upload(client, b"")
    assert response.status_code == 400 and error_code(response) == "empty_file"


@pytest.mark.parametrize("data", [b"just text", b"%PDF-1.7\n" + b"x" * 2000, b"\xff\xd8\xff" + b"\x00" * 10])
def test_not_an_image_is_415_whatever_its_name_and_type(client: Any, data: bytes) -> None:
    response = client.post(
        "/images", data={"file": (io.BytesIO(data), "photo.jpg", "image/jpeg")}, content_type="multipart/form-data"
    )
    assert response.status_code == 415 and error_code(response) == "unsupported_format"


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary*=UTF-8''%E2%82%AC"])
def test_a_multipart_body_without_a_usable_boundary_is_400(client: Any, content_type: str) -> None:
    response = client.post("/images", data=b"--x\r\n", content_type=content_type)
    assert response.status_code == 400 and error_code(response) == "malformed_body"


def test_oversize_is_413_before_the_body_is_read(settings: Any) -> None:
    from apercu.api import create_app

    small = create_app(settings.with_overrides(max_upload_bytes=10_000)).test_client()
    response = upload(small, images.encode(images.gradient((400, 400)), "BMP"))
    assert response.status_code == 413 and error_code(response) == "too_large"
    # Declared too large: refused from the header alone, the body stream is never consumed.
    response = small.post(
        "/images",
        input_stream=io.BytesIO(b""),
        content_type="multipart/form-data; boundary=x",
        environ_overrides={"CONTENT_LENGTH": str(10**9)},
    )
    assert response.status_code == 413 and error_code(response) == "too_large"


def test_just_under_the_limit_is_accepted(settings: Any) -> None:
    from apercu.api import create_app

    data = images.encode(images.gradient((100, 100)), "BMP")
    small = create_app(settings.with_overrides(max_upload_bytes=len(data))).test_client()
    assert upload(small, data).status_code == 202


def test_corrupt_body_with_valid_header_is_accepted_then_fails(client: Any, process: Any) -> None:
    data = images.jpeg((1200, 900))
    image_id = parse_json(upload(client, data[: len(data) // 2]))["id"]
    process(image_id)
    body = parse_json(client.get(f"/images/{image_id}"))
    assert body["status"] == "failure" and "cannot decode" in body["error"]
    response = client.get(f"/thumbnails/{image_id}.jpg")
    assert response.status_code == 404 and error_code(response) == "no_thumbnail"


@pytest.mark.parametrize("path", ["/images/nothex", "/images/" + ID_LIKE, "/images/" + ID_LIKE.upper()])
def test_unknown_or_malformed_ids_are_404(client: Any, path: str) -> None:
    for response in (client.get(path), client.delete(path), client.get(path.replace("images", "thumbnails") + ".jpg")):
        assert response.status_code == 404 and error_code(response) == "not_found"


def test_unknown_route_and_wrong_method_are_json(client: Any) -> None:
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    wrong = client.put("/images")
    assert wrong.status_code == 405 and error_code(wrong) == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


def test_wait_returns_as_soon_as_processing_ends(client: Any, process: Any) -> None:
    image_id = parse_json(upload(client, images.jpeg()))["id"]
    timer = threading.Timer(0.3, process, args=[image_id])
    timer.start()
    body = parse_json(client.get(f"/images/{image_id}?wait=10"))
    timer.join()
    assert body["status"] == "success"
    assert client.get(f"/thumbnails/{image_id}.jpg?wait=1").status_code == 200


def test_wait_times_out_with_the_current_state(client: Any) -> None:
    image_id = parse_json(upload(client, images.jpeg()))["id"]
    assert parse_json(client.get(f"/images/{image_id}?wait=0.2"))["status"] == "pending"


@pytest.mark.parametrize("wait", ["-1", "31", "soon"])
def test_wait_out_of_range_is_400(client: Any, wait: str) -> None:
    image_id = parse_json(upload(client, images.jpeg()))["id"]
    response = client.get(f"/images/{image_id}?wait={wait}")
    assert response.status_code == 400 and error_code(response) == "invalid_wait"


def test_list_is_newest_first_with_cursor_pagination(client: Any, process: Any) -> None:
    ids = [parse_json(upload(client, images.jpeg(camera=False)))["id"] for _ in range(5)]
    process(ids[0])
    seen, cursor = [], None
    while True:
        page = parse_json(client.get("/images?limit=2" + (f"&cursor={cursor}" if cursor else "")))
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert page["links"]["next"].endswith(cursor)
    assert seen == list(reversed(ids))
    first = next(i for i in parse_json(client.get("/images?limit=100"))["items"] if i["id"] == ids[0])
    assert first["status"] == "success" and "metadata" in first


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "cursor=bm90LWEtY3Vyc29y", "cursor=%%%"])
def test_list_rejects_bad_parameters(client: Any, query: str) -> None:
    response = client.get(f"/images?{query}")
    assert response.status_code == 400


def test_health_and_readiness(client: Any, app: Any) -> None:
    """/readyz: can this process accept and keep uploads (no worker needed for that); the workers are reported in
    its body, and alone by /readyz/workers (503 while none is alive) and `apercu_workers_alive`."""
    assert parse_json(client.get("/healthz"))["status"] == "ok"
    no_worker = client.get("/readyz")
    assert no_worker.status_code == 200
    assert parse_json(no_worker)["checks"] == {"catalog": "ok", "storage": "ok", "broker": "ok"}
    assert parse_json(no_worker)["workers"]["status"] == "none" and parse_json(no_worker)["workers"]["alive"] == 0
    workers = client.get("/readyz/workers")
    assert workers.status_code == 503 and "no worker" in parse_json(workers)["message"]
    assert "apercu_workers_alive 0.0" in client.get("/metrics").get_data(as_text=True)
    catalog = app.extensions["apercu"].storage.catalog
    catalog.workers.beat("w", "host/1", 1)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and parse_json(ready)["workers"] == {"status": "ok", "alive": 1}
    assert parse_json(client.get("/readyz/workers")) == {"status": "ok", "alive": 1}
    assert "apercu_workers_alive 1.0" in client.get("/metrics").get_data(as_text=True)
    catalog.workers.forget("w")
    assert client.get("/readyz").status_code == 200
    assert client.get("/readyz/workers").status_code == 503


def test_readiness_fails_when_the_broker_is_down(settings: Any) -> None:
    from apercu.api import create_app

    app = create_app(settings.with_overrides(broker_url="redis://127.0.0.1:1/0"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert parse_json(response)["checks"]["broker"] != "ok"


def test_upload_survives_a_broker_outage(settings: Any) -> None:
    """Accepted means durable: with the broker down the image is still stored, recorded and answered 202."""
    from apercu.api import create_app

    app = create_app(settings.with_overrides(broker_url="redis://127.0.0.1:1/0"))
    app.extensions["apercu"].celery.conf.broker_connection_max_retries = 0
    app.extensions["apercu"].celery.conf.task_publish_retry = False
    response = upload(app.test_client(), images.jpeg())
    assert response.status_code == 202
    image_id = parse_json(response)["id"]
    assert app.extensions["apercu"].storage.catalog.images.get(image_id).status == "pending"
    # The worker's next sweep sends it, without waiting out the grace period meant for queued work.
    assert image_id in context_of(app.extensions["apercu"].celery).processor.mark_lost_as_resent(300)


def test_openapi_document_describes_every_endpoint(client: Any) -> None:
    doc = parse_json(client.get("/openapi.json"))
    index = parse_json(client.get("/"))
    for endpoint in index["endpoints"]:
        assert endpoint["method"].lower() in doc["paths"][endpoint["path"]]


@pytest.mark.parametrize("name", sorted(images.FACTORIES))
def test_every_format_through_the_api(client: Any, process: Any, name: str) -> None:
    response = upload(client, images.FACTORIES[name](), filename=f"x.{name.lower()}")
    assert response.status_code == 202, response.data
    image_id = parse_json(response)["id"]
    process(image_id)
    body = parse_json(client.get(f"/images/{image_id}"))
    assert body["status"] == "success", body["error"]
    assert body["metadata"]["format"] == images.EXPECTED_FORMAT[name]
    assert client.get(f"/thumbnails/{image_id}.jpg").status_code == 200


def test_thumbnail_sizes_and_webp_are_rendered_once_and_deleted_with_the_image(
    client: Any, process: Any, render: Any, app: Any
) -> None:
    image_id = parse_json(upload(client, images.jpeg((1600, 1200), orientation=6)))["id"]
    process(image_id)
    for _ in range(3):  # a worker renders it; every request meanwhile is told to come back, one render queued
        early = client.get(f"/thumbnails/{image_id}.jpg?size=512")
        assert early.status_code == 409 and early.headers["Retry-After"] == "1" and error_code(early) == "not_ready"
    assert render(image_id) == [(512, "jpg")]
    big = client.get(f"/thumbnails/{image_id}.jpg?size=512")
    assert big.status_code == 200 and big.mimetype == "image/jpeg"

    assert Image.open(io.BytesIO(big.data)).size == (384, 512)
    assert app.extensions["apercu"].storage.blobs.exists(blob_keys.thumbnail(image_id, 512, "jpg"))
    again = client.get(f"/thumbnails/{image_id}.jpg?size=512", headers={"If-None-Match": big.headers["ETag"]})
    assert again.status_code == 304
    client.get(f"/thumbnails/{image_id}.webp")
    client.get(f"/thumbnails/{image_id}.webp?size=128")
    assert sorted(render(image_id)) == [(128, "webp"), (256, "webp")]
    webp = client.get(f"/thumbnails/{image_id}.webp")
    assert webp.status_code == 200 and webp.mimetype == "image/webp"
    assert Image.open(io.BytesIO(webp.data)).format == "WEBP"
    small_webp = client.get(f"/thumbnails/{image_id}.webp?size=128")
    assert max(Image.open(io.BytesIO(small_webp.data)).size) == 128
    bad = client.get(f"/thumbnails/{image_id}.jpg?size=300")
    assert bad.status_code == 400 and error_code(bad) == "invalid_size"
    assert client.delete(f"/images/{image_id}").status_code == 204
    assert stored_keys(app, image_id) == []
    assert client.get(f"/thumbnails/{image_id}.webp").status_code == 404


def test_an_image_processed_before_blob_keys_gets_its_thumbnail_rendered_again(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    """Rows written before thumbnails had keys do not say where their thumbnail is: it is rendered again."""
    from apercu.storage.catalog.tables import images as table

    image_id = parse_json(upload(client, images.jpeg((1200, 900))))["id"]
    process(image_id)
    storage = app.extensions["apercu"].storage
    storage.blobs.delete(blob_keys.thumbnail(image_id, 256, "jpg"))  # it was elsewhere then
    catalog = storage.catalog
    row = catalog.images.get(image_id)
    with catalog.engine.begin() as conn:
        old = {k: v for k, v in row.thumbnail.items() if k != "key"}
        conn.execute(table.update().where(table.c.id == image_id).values(thumbnail=old))
    assert client.get(f"/thumbnails/{image_id}.jpg").status_code == 409
    assert render(image_id) == [(256, "jpg")]
    again = client.get(f"/thumbnails/{image_id}.jpg")
    assert again.status_code == 200 and max(Image.open(io.BytesIO(again.data)).size) == 256


def test_many_first_requests_for_a_variant_make_one_render(app: Any, client: Any, process: Any, render: Any) -> None:
    image_id = parse_json(upload(client, images.jpeg((1200, 900))))["id"]
    process(image_id)
    answers: list[int] = []

    def ask() -> None:
        answers.append(app.test_client().get(f"/thumbnails/{image_id}.webp?size=512").status_code)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [409] * 12
    assert render(image_id) == [(512, "webp")]


@contextlib.contextmanager
def rendering(render: Any, image_id: str) -> Iterator[dict[str, float]]:
    """A worker in a thread, rendering as soon as a request within has queued the render; says when it ended."""
    ended: dict[str, float] = {}

    def worker_renders() -> None:
        deadline = time.monotonic() + 8
        while not render(image_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        ended["at"] = time.monotonic()

    worker = threading.Thread(target=worker_renders)
    worker.start()
    try:
        yield ended
    finally:
        worker.join()


def test_a_request_that_waits_gets_the_variant_once_rendered(client: Any, process: Any, render: Any) -> None:
    image_id = parse_json(upload(client, images.jpeg((1200, 900))))["id"]
    process(image_id)
    with rendering(render, image_id) as ended:
        waited = client.get(f"/thumbnails/{image_id}.jpg?size=128&wait=10")
        answered = time.monotonic()
    assert waited.status_code == 200 and waited.mimetype == "image/jpeg"
    assert waited.headers["Content-Length"] == str(len(waited.data)) and waited.headers["ETag"]
    assert answered - ended["at"] < 1  # woken by the render's end, not by the end of its wait


def test_a_request_that_waits_for_a_variant_that_cannot_be_rendered_is_told_why_at_once(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    image_id = parse_json(upload(client, images.jpeg((1200, 900))))["id"]
    process(image_id)
    app.extensions["apercu"].storage.blobs.put(blob_keys.original(image_id), images.jpeg()[:200])  # damaged since
    with rendering(render, image_id) as ended:
        failed = client.get(f"/thumbnails/{image_id}.jpg?size=512&wait=10")
        answered = time.monotonic()
    assert failed.status_code == 404 and error_code(failed) == "no_thumbnail"
    assert "decode" in parse_json(failed)["error"]["message"] or "read" in parse_json(failed)["error"]["message"]
    assert answered - ended["at"] < 1  # not at the end of its 10 s


def test_a_variant_that_cannot_be_rendered_says_why(app: Any, client: Any, process: Any, render: Any) -> None:
    image_id = parse_json(upload(client, images.jpeg((1200, 900))))["id"]
    process(image_id)
    app.extensions["apercu"].storage.blobs.put(blob_keys.original(image_id), images.jpeg()[:200])  # damaged since
    assert client.get(f"/thumbnails/{image_id}.jpg?size=512").status_code == 409
    assert render(image_id) == [(512, "jpg")]
    failed = client.get(f"/thumbnails/{image_id}.jpg?size=512")
    assert failed.status_code == 404 and error_code(failed) == "no_thumbnail"
    assert "decode" in parse_json(failed)["error"]["message"] or "read" in parse_json(failed)["error"]["message"]
    assert client.get(f"/thumbnails/{image_id}.jpg").status_code == 200  # the stored thumbnail is unaffected
    assert render(image_id) == []  # nothing sent again


def test_invalid_thumbnail_settings_fail_at_start(settings: Any) -> None:
    from apercu.api import create_app

    with pytest.raises(ValueError, match="THUMBNAIL_BACKGROUND"):
        create_app(settings.with_overrides(thumbnail_background="white"))
    with pytest.raises(ValueError, match="THUMBNAIL_SIZES"):
        create_app(settings.with_overrides(thumbnail_sizes="128,big"))


def originals(app: Any) -> list[Any]:
    return list(app.extensions["apercu"].storage.blobs.keys(blob_keys.ORIGINALS))


def test_an_idempotency_key_makes_a_retried_upload_return_the_first_image(client: Any, app: Any) -> None:
    first = upload(client, images.jpeg(), headers={"Idempotency-Key": "order-42"})
    again = upload(client, images.jpeg(), headers={"Idempotency-Key": "order-42"})
    other = upload(client, images.jpeg(), headers={"Idempotency-Key": "order-43"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert parse_json(again)["id"] == parse_json(first)["id"] != parse_json(other)["id"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(originals(app)) == 2
    # Once its image is deleted, the key is free again.
    assert client.delete(f"/images/{parse_json(first)['id']}").status_code == 204
    after = upload(client, images.jpeg(), headers={"Idempotency-Key": "order-42"})
    assert parse_json(after)["id"] != parse_json(first)["id"] and "Idempotent-Replayed" not in after.headers


def test_concurrent_uploads_with_one_key_make_one_image(client: Any, app: Any) -> None:
    results: list[Any] = []

    def send() -> None:
        results.append(upload(app.test_client(), images.jpeg(), headers={"Idempotency-Key": "burst"}))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status_code for r in results} == {202}
    assert len({parse_json(r)["id"] for r in results}) == 1
    assert len(originals(app)) == 1
    assert len(parse_json(client.get("/images"))["items"]) == 1


def test_an_idempotency_key_expires(settings: Any) -> None:
    from apercu.api import create_app

    app = create_app(settings.with_overrides(idempotency_ttl=0))
    client = app.test_client()
    first = parse_json(upload(client, images.jpeg(), headers={"Idempotency-Key": "k"}))["id"]
    assert parse_json(upload(client, images.jpeg(), headers={"Idempotency-Key": "k"}))["id"] != first


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
def test_a_malformed_idempotency_key_is_400(client: Any, key: str) -> None:
    response = upload(client, images.jpeg(), headers={"Idempotency-Key": key})
    assert response.status_code == 400 and error_code(response) == "invalid_idempotency_key"


def test_many_waiters_share_one_poller(client: Any, app: Any, process: Any) -> None:
    """20 requests waiting at once cost one catalog query per poll interval, not one each."""
    catalog = app.extensions["apercu"].storage.catalog
    ids = [parse_json(upload(client, images.jpeg()))["id"] for _ in range(20)]
    calls = []
    real = type(catalog.settling).settled_among

    def counted(self: Any, pending: list[str]) -> set[str]:
        calls.append(len(pending))
        return real(self, pending)

    type(catalog.settling).settled_among = counted  # type: ignore[method-assign]
    try:
        results: dict[str, Any] = {}
        waiters = [
            threading.Thread(target=lambda i=i: results.update({i: app.test_client().get(f"/images/{i}?wait=5")}))
            for i in ids
        ]
        for waiter in waiters:
            waiter.start()
        threading.Event().wait(0.5)
        for image_id in ids:
            process(image_id)
        for waiter in waiters:
            waiter.join()
    finally:
        type(catalog.settling).settled_among = real  # type: ignore[method-assign]
    assert {parse_json(r)["status"] for r in results.values()} == {"success"}
    print(f"{len(calls)} polls for 20 waiters")
    assert sum(calls) / len(calls) >= 5  # each poll asked about many waiters at once


def test_thumbnails_from_s3_can_be_redirects_to_presigned_urls(tmp_path: Path, seaweedfs: Any) -> None:
    """With APERCU_S3_PRESIGN the thumbnail is a 302 to S3 (cached for less than the URL lives), whose bytes
    are the same as streamed; a 304 still needs no trip to S3."""
    import urllib.request

    from apercu.api import create_app

    base = Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}",
                    storage_url=seaweedfs.storage_url(), s3_endpoint_url=seaweedfs.endpoint_url)
    streaming = create_app(base)
    presigning = create_app(base.with_overrides(s3_presign=600))
    image_id = parse_json(upload(streaming.test_client(), images.jpeg((800, 600))))["id"]
    context_of(streaming.extensions["apercu"].celery).processor.process(image_id, owner="test")

    streamed = streaming.test_client().get(f"/thumbnails/{image_id}.jpg")
    redirected = presigning.test_client().get(f"/thumbnails/{image_id}.jpg")
    assert redirected.status_code == 302 and redirected.headers["ETag"] == streamed.headers["ETag"]
    assert "max-age=300" in redirected.headers["Cache-Control"]
    with urllib.request.urlopen(redirected.headers["Location"], timeout=10) as fetched:
        assert fetched.read() == streamed.data
    not_modified = presigning.test_client().get(f"/thumbnails/{image_id}.jpg",
                                                headers={"If-None-Match": streamed.headers["ETag"]})
    assert not_modified.status_code == 304
