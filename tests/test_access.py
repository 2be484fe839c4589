"""Access, privacy and backpressure (issue 10): API keys, APERCU_GPS=drop, 503/507 before the body, and CORS.

The rule (`api.access.Gate`) is tested through the Flask test client, and again through the real server
(`apercu web`, raw sockets) where the point is what happens to a body: a refused upload's is never received.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import parse_json
from live import Service, read_response

from apercu.api import access, backpressure, create_app
from apercu.api.cors import TUS_REQUEST_HEADERS, TUS_RESPONSE_HEADERS
from apercu.config import Settings
from apercu.imaging.gps import without_location
from apercu.tasks import context_of

KEY, OTHER_KEY = "k3y-0ne_A", "second.key~2"
ORIGIN = "https://page.example"
HUGE_MB = 1 << 40  # more free space than any disk has: every upload is refused 507
ID_LIKE = "0123456789abcdef0123456789abcdef"


def client_for(settings: Settings, **overrides: Any) -> Any:
    app = create_app(settings.with_overrides(**overrides))
    app.config["TESTING"] = True
    return app.test_client()


def upload(client: Any, data: bytes | None = None, **kwargs: Any) -> Any:
    return client.post("/images", data={"file": (io.BytesIO(data or images.jpeg()), "photo.jpg")}, **kwargs)


def error_of(response: Any) -> tuple[int, str]:
    body = parse_json(response)
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return response.status_code, body["error"]["code"]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def stored_files(settings: Settings) -> tuple[list[Path], list[Path]]:
    """Upload staging files and originals: what a received body leaves on disk."""
    return files_under(settings.data_dir / "tmp"), files_under(settings.data_dir / "originals")


class UnreadableBody(io.RawIOBase):
    """A 50 MB request body that fails the test if anything reads it (its size may be asked, by seeking)."""

    size = 50_000_000

    def __init__(self) -> None:
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = offset + (self.size if whence == io.SEEK_END else 0)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body of a refused request was read")


def unread_upload(client: Any, **headers: str) -> Any:
    """A 50 MB multipart upload whose body must not be touched."""
    return client.post(
        "/images", input_stream=UnreadableBody(), content_type="multipart/form-data; boundary=x", headers=headers
    )


# -- API keys ---------------------------------------------------------------------------------------------------


def test_without_keys_everything_is_open(client: Any) -> None:
    assert upload(client).status_code == 202
    assert client.get("/images").status_code == 200


def test_a_key_is_accepted_in_either_header(settings: Settings) -> None:
    client = client_for(settings, api_keys=f"{KEY}, {OTHER_KEY}")
    for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {OTHER_KEY}"}, {"Authorization": f"bearer {KEY}"}):
        assert client.get("/images", headers=headers).status_code == 200, headers
    response = upload(client, headers={"X-API-Key": OTHER_KEY})
    assert response.status_code == 202
    assert client.get(response.headers["Location"], headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
     {"X-API-Key": KEY[:-1]}, {"X-API-Key": KEY + "x"}, {"Authorization": "Bearer"}],
    ids=["none", "wrong", "wrong-bearer", "basic", "prefix", "longer", "empty-bearer"],
)
def test_no_or_a_wrong_key_is_401_on_every_private_route(settings: Settings, headers: dict[str, str]) -> None:
    client = client_for(settings, api_keys=KEY)
    requests = [
        ("GET", "/images"), ("GET", f"/images/{ID_LIKE}"), ("DELETE", f"/images/{ID_LIKE}"),
        ("DELETE", f"/delete/{ID_LIKE}"), ("GET", f"/thumbnails/{ID_LIKE}.jpg"), ("GET", "/nowhere"),
        ("POST", "/images"),
    ]
    for method, path in requests:
        response = client.open(path, method=method, headers=headers)
        assert error_of(response) == (401, "unauthorized"), (method, path)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(upload(client, headers=headers)) == (401, "unauthorized")
    assert stored_files(settings) == ([], [])


def test_a_refused_upload_is_answered_before_its_body_is_read(settings: Settings) -> None:
    client = client_for(settings, api_keys=KEY)
    assert error_of(unread_upload(client)) == (401, "unauthorized")
    assert error_of(unread_upload(client, **{"X-API-Key": "nope"})) == (401, "unauthorized")
    assert stored_files(settings) == ([], [])


def test_public_paths_need_no_key(settings: Settings) -> None:
    client = client_for(settings, api_keys=KEY)
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    # Whether these exist depends on other parts of the app; none of them may ask for a key.
    for path in ("/readyz", "/metrics", "/docs", "/docs/swagger-ui.css", "/static/missing.css"):
        assert client.get(path).status_code != 401, path
    assert access.is_public("/static/a/b.js", access.PUBLIC_PATHS)
    assert not access.is_public("/staticfoo", access.PUBLIC_PATHS)
    assert not access.is_public("/healthz/x", access.PUBLIC_PATHS)


def test_paths_that_look_public_do_not_open_private_routes(settings: Settings) -> None:
    client = client_for(settings, api_keys=KEY, public_thumbnails=True)
    assert upload(client, headers={"X-API-Key": KEY}).status_code == 202
    for path in ("/static/../images", "/static/%2e%2e/images", "/thumbnails/../images", "//images", "/healthz/../images"):
        response = client.get(path)
        assert response.status_code in (401, 404, 308), (path, response.status_code)
        assert b"items" not in response.get_data(), path


@pytest.mark.parametrize("public", [True, False])
def test_public_thumbnails(settings: Settings, process: Any, public: bool) -> None:
    client = client_for(settings, api_keys=KEY, public_thumbnails=public)
    image_id = parse_json(upload(client, headers={"X-API-Key": KEY}))["id"]
    process(image_id)
    response = client.get(f"/thumbnails/{image_id}.jpg")
    if public:
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
        assert error_of(client.get(f"/images/{image_id}")) == (401, "unauthorized")  # the rest stays private
    else:
        assert error_of(response) == (401, "unauthorized")
        assert response.headers["Cache-Control"] == "no-store"
    keyed = client.get(f"/thumbnails/{image_id}.jpg", headers={"X-API-Key": KEY})
    assert keyed.status_code == 200
    # Public only when no key was needed: a shared cache must not hand a keyed answer to someone without one.
    assert keyed.cache_control.public is public and keyed.cache_control.private is not public
    assert keyed.cache_control.max_age == 86400
    again = client.get(f"/thumbnails/{image_id}.jpg", headers={"X-API-Key": KEY, "If-None-Match": keyed.headers["ETag"]})
    assert again.status_code == 304 and again.cache_control.private is not public
    variant = client.get(f"/thumbnails/{image_id}.webp?size=128", headers={"X-API-Key": KEY})
    assert variant.status_code == 409 and variant.headers["Cache-Control"] == "no-store"  # not rendered yet


def test_errors_are_never_stored_by_a_cache(settings: Settings) -> None:
    client = client_for(settings, api_keys=KEY)
    answers = [
        client.get("/images"),  # 401
        client.get("/no/such/route", headers={"X-API-Key": KEY}),  # 404
        client.get(f"/images/{ID_LIKE}", headers={"X-API-Key": KEY}),  # 404 for an image
        client.put("/images", headers={"X-API-Key": KEY}),  # 405
        client.get("/images?limit=0", headers={"X-API-Key": KEY}),  # 400
        upload(client, b"not an image", headers={"X-API-Key": KEY}),  # 415
    ]
    assert [a.status_code for a in answers] == [401, 404, 404, 405, 400, 415]
    assert all(a.headers.getlist("Cache-Control") == ["no-store"] for a in answers)


def test_key_file_with_comments_and_blank_lines(settings: Settings, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# apercu keys\n\n  {KEY}  \n# {OTHER_KEY} is commented out\nfile-key-2\n")
    client = client_for(settings, api_keys_file=str(keys), api_keys="env-key")
    for key in (KEY, "file-key-2", "env-key"):
        assert client.get("/images", headers={"X-API-Key": key}).status_code == 200, key
    for key in (OTHER_KEY, "# apercu keys", f"# {OTHER_KEY} is commented out"):
        assert client.get("/images", headers={"X-API-Key": key}).status_code == 401, key


@pytest.mark.parametrize(
    "overrides, complaint",
    [
        ({"api_keys_file": "/nonexistent/keys"}, "cannot be read"),
        ({"api_keys_file": "COMMENTS"}, "holds no key"),
        ({"api_keys": " , "}, "holds no key"),
        ({"api_keys": "has space"}, "visible ASCII"),
        ({"api_keys_file": "SPACED"}, "line 2"),
        ({"gps": "Drop"}, "APERCU_GPS"),
        ({"max_pending": -1}, "APERCU_MAX_PENDING"),
        ({"cors_origins": "https://a.example/"}, "not an origin"),
        ({"cors_origins": "*"}, "not an origin"),
    ],
    ids=["unreadable-file", "comments-only-file", "empty-list", "bad-key", "bad-key-in-file", "gps", "max-pending",
         "origin-with-path", "origin-star"],
)
def test_bad_settings_fail_at_start(
    settings: Settings, tmp_path: Path, overrides: dict[str, Any], complaint: str
) -> None:
    files = {"COMMENTS": "# only a comment\n\n", "SPACED": "# keys\nsecret with-space\n"}
    for name, value in overrides.items():
        if value in files:
            path = tmp_path / value
            path.write_text(files[value])
            overrides[name] = str(path)
    with pytest.raises(ValueError, match=complaint) as raised:
        create_app(settings.with_overrides(**overrides))
    assert "secret" not in str(raised.value)  # a key never appears in a message


def test_keys_are_compared_in_constant_time_with_every_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(settings, api_keys=f"{KEY},{OTHER_KEY},third-key")
    calls: list[tuple[bytes, bytes]] = []
    real = access.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", counting)
    assert client.get("/images", headers={"X-API-Key": KEY}).status_code == 200  # the first key: no early exit
    assert len(calls) == 3 and all(len(a) == len(b) == 32 for a, b in calls)  # digests: lengths tell nothing
    calls.clear()
    assert client.get("/images", headers={"X-API-Key": "wrong"}).status_code == 401
    assert len(calls) == 3


# -- APERCU_GPS=drop --------------------------------------------------------------------------------------------

XMP_WITH_GPS = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
    b' xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
    b' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
    b' exif:GPSLatitude="48,51.402N" exif:GPSLongitude="2,21.125E" exif:GPSAltitude="35/1"'
    b' xmp:Rating="4" photoshop:City="Paris">'
    b'<Iptc4xmpExt:LocationCreated rdf:parseType="Resource"><Iptc4xmpExt:GPSLatitude>48.8567</Iptc4xmpExt:GPSLatitude>'
    b"<Iptc4xmpExt:City>Paris</Iptc4xmpExt:City></Iptc4xmpExt:LocationCreated>"
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def jpeg_with_gps(size: tuple[int, int] = (320, 200)) -> bytes:
    return images.encode(images.gradient(size), "JPEG", quality=90, exif=images.exif_block(gps=True), xmp=XMP_WITH_GPS)


def location_in(metadata: dict[str, Any]) -> list[str]:
    """Every place a location shows in metadata: the gps block, GPS EXIF tags, XMP location properties."""
    found = ["gps"] if "gps" in metadata else []
    found += [f"exif:{name}" for name in metadata.get("exif", {}) if name.startswith("GPS")]
    found += [name for name in metadata.get("xmp", {}) if "GPS" in name]
    return found


def processed(client: Any, process: Any, data: bytes) -> tuple[str, dict[str, Any]]:
    image_id = parse_json(upload(client, data))["id"]
    process(image_id)
    return image_id, parse_json(client.get(f"/images/{image_id}"))


def test_the_test_image_has_gps_everywhere(client: Any, process: Any) -> None:
    """The control for the tests below: with the default (keep), every kind of location is there."""
    _, body = processed(client, process, jpeg_with_gps())
    assert set(location_in(body["metadata"])) >= {
        "gps", "exif:GPSLatitudeRef", "exif:GPSLatitude", "exif:GPSLongitude",  # the gps block, EXIF tags
        "exif:GPSAltitude", "Iptc4xmpExt:LocationCreatedGPSLatitude",  # XMP properties, a structure's field
    }


def test_gps_drop_stores_and_answers_no_location(settings: Settings) -> None:
    app = create_app(settings.with_overrides(gps="drop"))
    client = app.test_client()
    processor = context_of(app.extensions["apercu"].celery).processor
    image_id = parse_json(upload(client, jpeg_with_gps()))["id"]
    processor.process(image_id, owner="test")
    body = parse_json(client.get(f"/images/{image_id}"))
    stored = app.extensions["apercu"].storage.catalog.images.get(image_id).image_metadata
    for metadata in (body["metadata"], stored):  # dropped before storing, not only when answering
        assert location_in(metadata) == []
        assert not any("latitude" in name.lower() for name in metadata["xmp"])
        assert metadata["exif"]["Make"] == "Apercu Test Camera"  # the rest is kept
        assert metadata["xmp"]["xmp:Rating"] == "4" and metadata["xmp"]["photoshop:City"] == "Paris"
    assert body["status"] == "success" and body["thumbnail"]


def test_gps_drop_applies_to_failure_metadata(settings: Settings) -> None:
    app = create_app(settings.with_overrides(gps="drop"))
    client = app.test_client()
    truncated = jpeg_with_gps((1600, 1200))[:6000]
    image_id = parse_json(upload(client, truncated))["id"]
    context_of(app.extensions["apercu"].celery).processor.process(image_id, owner="test")
    row = app.extensions["apercu"].storage.catalog.images.get(image_id)
    assert row.status == "failure" and row.image_metadata["exif"]["Make"] == "Apercu Test Camera"
    assert location_in(row.image_metadata) == []


def test_an_image_stored_with_gps_is_served_without_it_under_drop(settings: Settings, process: Any, client: Any) -> None:
    image_id, kept = processed(client, process, jpeg_with_gps())
    assert "gps" in kept["metadata"]
    dropping = client_for(settings, gps="drop")  # the same catalog, the setting changed since
    body = parse_json(dropping.get(f"/images/{image_id}"))
    assert location_in(body["metadata"]) == [] and body["metadata"]["exif"]["Model"] == "Model 1"
    (item,) = parse_json(dropping.get("/images"))["items"]
    assert location_in(item["metadata"]) == []
    assert "gps" in parse_json(client.get(f"/images/{image_id}"))["metadata"]  # keep still shows it


def test_without_location_is_pure_and_thorough() -> None:
    metadata = {
        "format": "JPEG",
        "gps": {"latitude": 1.0, "longitude": 2.0},
        "exif": {"Make": "X", "GPSLatitude": 1.0, "GPSInfo": 26, "0x0020": 5, "0xc4a5": {"bytes": 3}},
        "xmp": {"exif:GPSLongitude": "2,1E", "drone-dji:GpsLatitude": "1", "Iptc4xmpExt:LocationShownGPSAltitude": 3,
                "xmp:Rating": 1, "photoshop:City": "Paris"},
        "iptc": {"City": "Paris"},
        "text": {"Comment": "a nice day", "Raw profile type xmp": "\nxmp\n 12\n3c3f78", "Where": "Latitude 43.4N"},
        "warnings": ["GPS latitude 123.0 is outside +-90; ignored", "EXIF IFD0 entries unreadable: 0x0110"],
    }
    before = json.dumps(metadata, sort_keys=True)
    assert without_location(metadata) == {
        "format": "JPEG",
        "exif": {"Make": "X", "0xc4a5": {"bytes": 3}},
        "xmp": {"xmp:Rating": 1, "photoshop:City": "Paris"},
        "iptc": {"City": "Paris"},
        "text": {"Comment": "a nice day"},
        "warnings": ["EXIF IFD0 entries unreadable: 0x0110"],
    }
    assert json.dumps(metadata, sort_keys=True) == before
    assert without_location({"exif": {"GPSVersionID": [2, 2, 0, 0]}, "warnings": ["GPS unreadable: x"]}) == {}


# -- backpressure -----------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check reads the queue and the disk again (in production a reading is reused for a second)."""
    monkeypatch.setattr(backpressure, "TTL", 0.0)


def test_uploads_get_503_while_too_many_images_are_pending(settings: Settings, process: Any, fresh_readings: None) -> None:
    app = create_app(settings.with_overrides(max_pending=1))
    client = app.test_client()
    first, second = (parse_json(upload(client))["id"] for _ in range(2))  # 0, then 1 pending: not more than 1
    response = upload(client)
    assert error_of(response) == (503, "busy") and int(response.headers["Retry-After"]) > 0
    assert "2 images" in parse_json(response)["error"]["message"]
    assert error_of(unread_upload(client)) == (503, "busy")  # refused before the body is read
    assert len(stored_files(settings)[1]) == 2 and stored_files(settings)[0] == []
    assert client.get("/images").status_code == 200  # only uploads are refused
    context_of(app.extensions["apercu"].celery).processor.process(first, owner="test")
    assert upload(client).status_code == 202  # one pending again: taken


def test_uploads_get_507_when_the_data_disk_is_nearly_full(settings: Settings, fresh_readings: None) -> None:
    client = client_for(settings, min_free_mb=HUGE_MB)
    response = upload(client)
    assert error_of(response) == (507, "insufficient_storage")
    assert error_of(unread_upload(client)) == (507, "insufficient_storage")
    assert stored_files(settings) == ([], [])
    assert client.get("/images").status_code == 200
    assert upload(client_for(settings, min_free_mb=0)).status_code == 202  # 0: no floor


def test_the_key_is_checked_before_the_load(settings: Settings, fresh_readings: None) -> None:
    """A caller without a key learns nothing about the service's state."""
    client = client_for(settings, api_keys=KEY, min_free_mb=HUGE_MB)
    assert error_of(upload(client)) == (401, "unauthorized")
    assert error_of(upload(client, headers={"X-API-Key": KEY})) == (507, "insufficient_storage")


def test_readings_are_reused_for_a_second() -> None:
    now, reads = [0.0], []

    def read() -> int:
        reads.append(now[0])
        return len(reads)

    cached = backpressure.Cached(read, "test", clock=lambda: now[0])
    assert [cached.get(), cached.get()] == [1, 1]
    now[0] = backpressure.TTL + 0.01
    assert cached.get() == 2 and len(reads) == 2


def test_a_failed_reading_refuses_nothing() -> None:
    def broken() -> int:
        raise ConnectionError("catalog down")

    assert backpressure.Cached(broken, "test").get() is None


# -- CORS -------------------------------------------------------------------------------------------------------


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_cors_is_off_by_default(client: Any) -> None:
    response = client.get("/images", headers={"Origin": ORIGIN})
    assert cors_headers(response) == {} and "Origin" not in response.headers.get("Vary", "")


def test_an_allowed_origin_gets_cors_headers(settings: Settings) -> None:
    client = client_for(settings, cors_origins=f"https://other.example, {ORIGIN}", api_keys=KEY)
    response = upload(client, headers={"Origin": ORIGIN, "X-API-Key": KEY})
    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers["Vary"]
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"Location", "Retry-After", "ETag", "X-Request-ID", "Idempotent-Replayed", "RateLimit-Limit",
                       "RateLimit-Remaining", "RateLimit-Reset", *TUS_RESPONSE_HEADERS}  # (resumable uploads')
    refused = client.get("/images", headers={"Origin": ORIGIN})  # a page can read why it was refused
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_a_disallowed_origin_gets_no_cors_headers(settings: Settings) -> None:
    client = client_for(settings, cors_origins=ORIGIN)
    for origin in ("https://evil.example", "null", ORIGIN + ".evil.example", "http://page.example"):
        response = client.get("/images", headers={"Origin": origin})
        assert response.status_code == 200 and cors_headers(response) == {}, origin
        preflight = client.options("/images", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert cors_headers(preflight) == {}, origin
    assert "Origin" in client.get("/images").headers["Vary"]  # caches keep origins apart


def test_a_preflight_is_answered_204_without_a_key(settings: Settings) -> None:
    client = client_for(settings, cors_origins=ORIGIN, api_keys=KEY, min_free_mb=HUGE_MB)
    response = client.options(
        "/images",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-api-key, idempotency-key"},
    )
    assert response.status_code == 204 and response.get_data() == b""
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")} == {"GET", "POST", "DELETE",
                                                                                               "PATCH", "HEAD"}
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"content-type", "x-api-key", "authorization", "idempotency-key", "x-request-id",
                       *(name.lower() for name in TUS_REQUEST_HEADERS)}
    assert client.options("/images").status_code == 401  # a plain OPTIONS is no preflight
    preflight = {"Access-Control-Request-Method": "POST"}
    # Only a bodiless preflight from an allowed origin skips the key: anything else could carry an upload past it.
    assert client.options("/images", headers={**preflight, "Origin": "https://elsewhere.example"}).status_code == 401
    assert client.options("/images", headers={**preflight, "Origin": ORIGIN}, data=b"x" * 10).status_code == 401
    without_cors = client_for(settings, api_keys=KEY, min_free_mb=HUGE_MB)
    assert without_cors.options("/images", headers={**preflight, "Origin": ORIGIN}).status_code == 401


# -- through the real server: refused before the body is received -----------------------------------------------

DECLARED = 50_000_000


def guarded_service(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Service]:
    """`apercu web` alone (no worker: uploads stay pending), with the given settings."""
    svc = Service(tmp_path_factory.mktemp("access") / "data", env).start("web")
    try:
        yield svc
    finally:
        assert svc.stop() == [0], svc.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def keyed_full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {"APERCU_API_KEYS": KEY, "APERCU_MIN_FREE_MB": str(HUGE_MB), "APERCU_CORS_ORIGINS": ORIGIN}
    yield from guarded_service(tmp_path_factory, env)


@pytest.fixture(scope="module")
def small_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from guarded_service(tmp_path_factory, {"APERCU_MAX_PENDING": "1", "APERCU_MIN_FREE_MB": "0"})


def raw_upload_head(extra: str = "", length: int = DECLARED) -> bytes:
    return (
        f"POST /images HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()




def on_disk(svc: Service) -> tuple[list[Path], list[Path]]:
    return files_under(svc.data_dir / "tmp"), files_under(svc.data_dir / "originals")


def refused_mid_upload(svc: Service, extra: str = "") -> tuple[int, dict[str, str], str]:
    """Send the head of a 50 MB upload and 64 KiB of its body, then wait for the answer: it must come although
    the body is far from complete (the server answered from the head), within a second."""
    before = on_disk(svc)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
        sock.sendall(raw_upload_head(extra) + b"--b\r\n" + b"\xff" * 65536)
        started = time.monotonic()
        status, headers, body = read_response(sock)
        assert time.monotonic() - started < 1.0
        assert headers["connection"] == "close"
    assert on_disk(svc) == before  # not a byte of it was written
    return status, headers, json.loads(body)["error"]["code"]


@pytest.mark.integration
def test_server_refuses_an_unauthenticated_upload_before_its_body(keyed_full_disk: Service) -> None:
    status, headers, code = refused_mid_upload(keyed_full_disk)
    assert (status, code) == (401, "unauthorized") and headers["www-authenticate"] == "Bearer"
    assert headers["cache-control"] == "no-store"  # the server's own answer, as the app's
    status, headers, code = refused_mid_upload(keyed_full_disk, "X-API-Key: wrong\r\n")
    assert (status, code) == (401, "unauthorized")
    status, headers, code = refused_mid_upload(keyed_full_disk, f"Origin: {ORIGIN}\r\n")
    assert headers["access-control-allow-origin"] == ORIGIN  # a page can read the refusal


@pytest.mark.integration
def test_server_refuses_without_inviting_the_body(keyed_full_disk: Service) -> None:
    """With Expect: 100-continue the refusal comes instead of 100 Continue: the client never sends the body."""
    with socket.create_connection(("127.0.0.1", keyed_full_disk.port), timeout=10) as sock:
        sock.sendall(raw_upload_head("Expect: 100-continue\r\n"))
        status, _, body = read_response(sock)
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"


@pytest.mark.integration
def test_server_refuses_an_upload_with_507_before_its_body(keyed_full_disk: Service) -> None:
    status, _, code = refused_mid_upload(keyed_full_disk, f"X-API-Key: {KEY}\r\n")
    assert (status, code) == (507, "insufficient_storage")
    status, _, code = refused_mid_upload(keyed_full_disk, f"Authorization: Bearer {KEY}\r\n")
    assert (status, code) == (507, "insufficient_storage")


@pytest.mark.integration
def test_server_applies_the_rule_to_bodiless_requests_through_the_app(keyed_full_disk: Service) -> None:
    svc = keyed_full_disk
    refused = svc.get("/images")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert svc.get("/images", headers={"X-API-Key": KEY}).status == 200
    assert svc.get("/healthz").status == 200
    assert svc.get("/openapi.json").status == 200


@pytest.mark.integration
def test_server_refuses_an_upload_with_503_before_its_body(small_queue: Service) -> None:
    svc = small_queue
    for _ in range(2):  # nothing processes them: 0, then 1 pending when each is checked
        assert svc.upload(images.jpeg()).status == 202
    time.sleep(backpressure.TTL + 0.2)  # the web process reads the queue again
    status, headers, code = refused_mid_upload(svc)
    assert (status, code) == (503, "busy") and int(headers["retry-after"]) > 0
    assert svc.get("/images").status == 200
