"""Upload by URL (`POST /images` with `url`): refused at once when the URL's text alone says it may not be fetched
(no connection is attempted), else recorded and fetched by the worker under the outbound policy, then processed as
any upload; every way a fetch fails ends the image as `failure` saying why. Only loopback is ever called: the
images are served by a local server, 127.0.0.1 being allowed by `APERCU_FETCH_ALLOWED_HOSTS` where a test needs it.
"""

from __future__ import annotations

import http.server
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import images
import pytest
from live import Service as LiveService
from test_metrics import scrape, value

from apercu.api import create_app
from apercu.config import Settings
from apercu.storage.catalog import utcnow

JPEG = images.jpeg()
SENT_BEYOND_LIMIT = 8 * 1024 * 1024  # what the endless body may have sent before the fetch hung up


class Origin(http.server.ThreadingHTTPServer):
    """A local server of images and of every bad answer: `/image.jpg`, `/missing`, `/text`, `/endless` (no
    Content-Length, never ends: counts what it sent), `/declared-big`, `/silent` (never answers), `/hop/<n>` (n
    redirects, then the image), `/to/<url>` (a redirect there)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OriginHandler)
        self.endless_sent = 0
        self.endless_done = threading.Event()
        self.requests: list[str] = []  # the paths asked for, in order
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class OriginHandler(http.server.BaseHTTPRequestHandler):
    server: Origin

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        path = self.path.split("?", 1)[0]
        if path == "/image.jpg":
            self.answer(200, JPEG, "image/jpeg")
        elif path == "/text":
            self.answer(200, b"<html>not an image</html>", "text/html")
        elif path == "/declared-big":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif path == "/endless":
            self.endless()
        elif path == "/silent":
            time.sleep(5)
        elif path == "/trickle":
            self.trickle()
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(f"/hop/{left - 1}" if left > 0 else "/image.jpg")
        elif path.startswith("/to/"):
            self.redirect(path[len("/to/"):])
        else:
            self.answer(404, b"no such thing", "text/plain")

    def answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        chunk = JPEG[:2] + bytes(64 * 1024 - 2)
        try:
            while self.server.endless_sent < 10 * SENT_BEYOND_LIMIT:
                self.wfile.write(chunk)
                self.server.endless_sent += len(chunk)
        except OSError:
            pass
        finally:
            self.server.endless_done.set()

    def trickle(self) -> None:
        """An image's first bytes, then a byte every 0.1 s: each read in time, the whole never."""
        self.send_response(200)
        self.end_headers()
        try:
            self.wfile.write(JPEG[:1024])
            for byte in JPEG[1024:]:
                self.wfile.write(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """127.0.0.1 allowed (the origin); short timeouts, and a limit the endless body passes quickly."""
    return Settings(data_dir=tmp_path / "data", fetch_allowed_hosts=frozenset({"127.0.0.1"}), fetch_timeout=0.5,
                    fetch_deadline=3.0, max_upload_bytes=1024 * 1024)


def by_url(client: Any, url: str, as_json: bool = False, headers: dict[str, str] | None = None) -> Any:
    if as_json:
        return client.post("/images", json={"url": url}, headers=headers or {})
    return client.post("/images", data={"url": url}, headers=headers or {})


def fetched(client: Any, process: Any, url: str) -> dict[str, Any]:
    """The image of an upload by URL once the worker's code has fetched and processed it."""
    response = by_url(client, url)
    assert response.status_code == 202, response.json
    assert response.json["status"] == "pending"
    process(response.json["id"])
    body: dict[str, Any] = client.get(f"/images/{response.json['id']}").json
    assert body["source_url"] == url
    return body


# -- refused at once, nothing connected to ------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on loopback that no refused URL may reach (its port is the one the URLs name)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


REFUSED = [
    "ftp://127.0.0.1:{port}/x.jpg", "file:///etc/passwd", "gopher://127.0.0.1:{port}/", "javascript:alert(1)",
    "/relative/x.jpg", "not a url", "http://user:secret@example.com/x.jpg", "http://user@example.com/x.jpg",
    "http://127.0.0.1:{port}/x.jpg", "http://127.1.2.3:{port}/", "http://localhost:{port}/", "http://LOCALHOST:{port}/",
    "http://img.localhost:{port}/", "http://0.0.0.0:{port}/", "http://10.0.0.1/", "http://172.16.5.4/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://224.0.0.1/",
    "http://240.0.0.1/", "http://255.255.255.255/", "http://[::1]:{port}/", "http://[::]:{port}/",
    "http://[fe80::1]/", "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:169.254.169.254]/",
    "http://example.com:99999/", "http://exa mple.com/",
]


@pytest.fixture
def strict_client(tmp_path: Path) -> Any:
    """A service with no allowed hosts: the defaults."""
    return create_app(Settings(data_dir=tmp_path / "strict")).test_client()


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
@pytest.mark.parametrize("template", REFUSED)
def test_a_url_refused_by_its_text_is_a_400_with_no_connection(
    strict_client: Any, listener: socket.socket, template: str, as_json: bool
) -> None:
    url = template.format(port=listener.getsockname()[1])
    response = by_url(strict_client, url, as_json)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_url"
    assert response.json["error"]["message"].startswith("url: ")
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing connected
    assert strict_client.get("/images").json["items"] == []  # and nothing recorded


def test_a_url_with_a_file_or_a_non_string_is_refused(client: Any, origin: Origin) -> None:
    both = client.post("/images", data={"url": origin.url + "/image.jpg", "file": (io.BytesIO(JPEG), "x.jpg")})
    assert both.status_code == 400 and both.json["error"]["code"] == "invalid_url"
    wrong = client.post("/images", json={"url": 42})
    assert wrong.status_code == 400 and wrong.json["error"]["code"] == "bad_request"
    neither = client.post("/images", json={"callback_url": "https://example.com/"})
    assert neither.status_code == 400 and neither.json["error"]["code"] == "missing_file"
    assert origin.requests == []


# -- fetched and processed -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_an_image_at_a_url_becomes_an_image(client: Any, process: Any, origin: Origin, as_json: bool) -> None:
    url = origin.url + "/image.jpg?v=1"
    response = by_url(client, url, as_json)
    assert response.status_code == 202 and response.headers["Location"] == f"/images/{response.json['id']}"
    assert origin.requests == []  # the web only recorded it: the worker fetches
    process(response.json["id"])
    body = client.get(f"/images/{response.json['id']}").json
    assert body["status"] == "success", body["error"]
    assert body["source_url"] == url and body["filename"] == "image.jpg"
    assert body["metadata"]["format"] == "JPEG" and body["metadata"]["width"] == 320
    assert client.get(f"/thumbnails/{body['id']}.jpg").status_code == 200
    assert origin.requests == ["/image.jpg?v=1"]


def test_a_plain_upload_shows_no_source_url(client: Any, process: Any) -> None:
    response = client.post("/images", data={"file": (io.BytesIO(JPEG), "x.jpg")})
    process(response.json["id"])
    assert "source_url" not in client.get(f"/images/{response.json['id']}").json


def test_an_idempotency_key_answers_the_first_upload_by_url(client: Any, origin: Origin) -> None:
    first = by_url(client, origin.url + "/image.jpg", headers={"Idempotency-Key": "k1"})
    again = by_url(client, origin.url + "/image.jpg", headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/images").json["items"]) == 1


def test_three_redirects_are_followed(client: Any, process: Any, origin: Origin) -> None:
    assert fetched(client, process, origin.url + "/hop/2")["status"] == "success"  # 3 redirects
    assert origin.requests == ["/hop/2", "/hop/1", "/hop/0", "/image.jpg"]


def test_keys_scopes_and_tenants_apply_as_to_an_upload(
    settings: Settings, tmp_path: Path, origin: Origin
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("front acme read r3ader-key\ningest acme write,read wr1ter-key\nother zeta read,write 0ther-key\n")
    client = create_app(settings.with_overrides(api_keys_file=str(keys))).test_client()
    url = origin.url + "/image.jpg"
    assert by_url(client, url).status_code == 401
    assert by_url(client, url, headers={"X-API-Key": "r3ader-key"}).status_code == 403
    accepted = by_url(client, url, headers={"X-API-Key": "wr1ter-key"})
    assert accepted.status_code == 202
    path = f"/images/{accepted.json['id']}"
    assert client.get(path, headers={"X-API-Key": "r3ader-key"}).json["source_url"] == url  # acme's image
    assert client.get(path, headers={"X-API-Key": "0ther-key"}).status_code == 404  # not zeta's
    assert origin.requests == []


def test_an_attempt_that_died_mid_fetch_is_fetched_again(app: Any, client: Any, process: Any, origin: Origin) -> None:
    """A worker that died while fetching stored nothing and holds a lease that runs out: the next attempt (the
    recovery sweep's) fetches from the start and processes the image."""
    image_id = by_url(client, origin.url + "/image.jpg").json["id"]
    leases = app.extensions["apercu"].storage.catalog.leases
    assert leases.claim(image_id, "died", -1, 3).outcome.name == "CLAIMED"  # a lease that has run out already
    assert client.get(f"/images/{image_id}").json["status"] == "processing"
    process(image_id)
    body = client.get(f"/images/{image_id}").json
    assert body["status"] == "success" and origin.requests == ["/image.jpg"]
    assert app.extensions["apercu"].storage.catalog.images.get(image_id).attempts == 2


# -- every way a fetch fails -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "error"), [
    ("/missing", "HTTP 404"),
    ("/text", "not an image"),
    ("/declared-big", "larger than the maximum upload size"),
    ("/hop/3", "more than 3 redirects"),
    ("/to/http://10.0.0.1/x.jpg", "10.0.0.1 is not a public address"),
    ("/to/http://localhost:1/x.jpg", "localhost is this machine"),
    ("/to/ftp://127.0.0.1/x.jpg", "only http and https"),
])
def test_a_fetch_that_fails_ends_the_image_saying_why(
    client: Any, process: Any, origin: Origin, path: str, error: str
) -> None:
    before = scrape(client)
    body = fetched(client, process, origin.url + path)
    assert body["status"] == "failure" and body["error"].startswith("could not fetch the image: ")
    assert error in body["error"], body["error"]
    assert value(scrape(client), "apercu_failures_total", reason="fetch") - value(
        before, "apercu_failures_total", reason="fetch") == 1


def test_a_body_beyond_the_limit_is_not_read_to_its_end(client: Any, process: Any, origin: Origin) -> None:
    body = fetched(client, process, origin.url + "/endless")
    assert body["status"] == "failure" and "larger than the maximum upload size of 1048576" in body["error"]
    assert origin.endless_done.wait(10)  # the origin's writes failed: the fetch hung up...
    assert origin.endless_sent < SENT_BEYOND_LIMIT  # ...soon after the limit (socket buffers aside)


def test_a_server_that_never_answers_times_out(client: Any, process: Any, origin: Origin) -> None:
    started = time.monotonic()
    body = fetched(client, process, origin.url + "/silent")
    assert body["status"] == "failure" and "did not answer in time" in body["error"]
    assert time.monotonic() - started < 3  # the read timeout (0.5 s), not the server's 5 s


def test_a_server_trickling_its_body_is_cut_at_the_deadline(client: Any, process: Any, origin: Origin) -> None:
    """No read waits longer than its timeout, and the body has no Content-Length: the deadline (3 s) still ends
    it, and what came before it is not taken for the whole."""
    started = time.monotonic()
    body = fetched(client, process, origin.url + "/trickle")
    assert body["status"] == "failure" and "longer than its deadline" in body["error"], body["error"]
    assert time.monotonic() - started < 5


def test_fetches_are_counted_by_outcome(client: Any, process: Any, origin: Origin) -> None:
    before = scrape(client)
    fetched(client, process, origin.url + "/image.jpg")
    fetched(client, process, origin.url + "/missing")
    after = scrape(client)
    for outcome in ("success", "http_status"):
        moved = value(after, "apercu_url_fetches_total", outcome=outcome) - value(
            before, "apercu_url_fetches_total", outcome=outcome)
        assert moved == 1, outcome
    assert ("apercu_url_fetches_total", frozenset({("outcome", "timeout")})) in after  # every series from the start


def test_a_failed_fetch_is_no_orphan_for_the_sweep(app: Any, client: Any, process: Any, origin: Origin) -> None:
    """An upload by URL that failed never had an original: the sweep of rows without originals leaves it."""
    failed = fetched(client, process, origin.url + "/missing")["id"]
    succeeded = fetched(client, process, origin.url + "/image.jpg")["id"]
    catalog = app.extensions["apercu"].storage.catalog
    candidates = catalog.images.ids_uploaded_before(utcnow() + timedelta(seconds=1), "", 100)
    assert succeeded in candidates and failed not in candidates


def test_the_openapi_document_describes_the_url(client: Any) -> None:
    operation = client.get("/openapi.json").json["paths"]["/images"]["post"]
    content = operation["requestBody"]["content"]
    assert content["application/json"]["schema"]["required"] == ["url"]
    assert "url" in content["multipart/form-data"]["schema"]["properties"]
    bad_request = client.get("/openapi.json").json["components"]["responses"]["BadRequest"]["description"]
    assert "`invalid_url`" in bad_request


# -- on PostgreSQL and Redis, with a real worker ---------------------------------------------------------------------


def test_an_upload_by_url_on_postgres_and_redis(
    tmp_path: Path, origin: Origin, postgres_url: str, redis_url: str
) -> None:
    env = {"APERCU_DATABASE_URL": postgres_url, "APERCU_BROKER_URL": redis_url,
           "APERCU_FETCH_ALLOWED_HOSTS": "127.0.0.1"}
    svc = LiveService(tmp_path / "data", env).start("web", "worker")
    try:
        sent = json.dumps({"url": origin.url + "/image.jpg"}).encode()
        accepted = svc.request("POST", "/images", sent, {"Content-Type": "application/json"})
        assert accepted.status == 202, accepted.body
        body = svc.wait_final(accepted.json()["id"])
        assert body["status"] == "success" and body["source_url"] == origin.url + "/image.jpg"
        missing = svc.request("POST", "/images", json.dumps({"url": origin.url + "/missing"}).encode(),
                              {"Content-Type": "application/json"})
        failed = svc.wait_final(missing.json()["id"])
        assert failed["status"] == "failure" and "HTTP 404" in failed["error"]
    finally:
        codes = svc.stop()
    assert codes == [0, 0], svc.log.read_text()[-3000:]
