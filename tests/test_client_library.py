"""The client library (`clients/python`, package `apercu_client`) against a live `apercu serve`: every operation,
sync and async; API and URL keys; its errors; its retries; proxies from the environment and TLS settings passed
through to httpx; its signatures agreeing with the server's; and a distribution that needs httpx alone."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import importlib.metadata
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import apercu_client
import httpx
import images
import pytest
from apercu_client import (
    ApiError,
    AsyncClient,
    AuthenticationError,
    Client,
    Image,
    NotFound,
    Retries,
    SourceError,
    Unreachable,
)
from conftest import REQUIRE_SERVICES, unavailable
from live import Service
from test_upload_cli import Scripted, scripted  # noqa: F401 (the fixture)

from apercu import __version__, url_signing

pytestmark = pytest.mark.integration
API_KEY = "client-library-key"
URL_KEY = "u" * 40  # APERCU_URL_KEY: at least 32 bytes
NO_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "no_proxy")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("client") / "data").start("serve")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A deployment that requires API keys and signs rendition URLs with a URL key."""
    env = {"APERCU_API_KEYS": API_KEY, "APERCU_URL_KEY": URL_KEY}
    svc = Service(tmp_path_factory.mktemp("keyed") / "data", env).start("serve")
    yield svc
    svc.stop()


@pytest.fixture(autouse=True)
def no_proxy_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx reads proxies from the environment (as it should): the tests set them themselves."""
    for name in NO_PROXY_ENV:
        monkeypatch.delenv(name, raising=False)


def url(service: Service) -> str:
    return f"http://127.0.0.1:{service.port}"


def raw_ids(service: Service, limit: int) -> list[str]:
    """Every image id of the service, newest first, read page by page over plain HTTP (not through the library)."""
    ids, cursor = [], ""
    while True:
        page = service.get(f"/images?limit={limit}&cursor={cursor}").json()
        ids += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return ids
        cursor = page["next_cursor"]


def unseekable(data: bytes) -> io.BufferedReader:
    """A pipe holding `data`: a stream that cannot seek, which the library reads whole so that a retry can resend
    it. (Small enough for the pipe's buffer, so that nothing has to write while the test reads.)"""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return open(read, "rb")  # noqa: SIM115 (closed by the test)


# Sync


def test_upload_from_a_path_bytes_and_file_objects_with_wait(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "from path.jpg"
    path.write_bytes(images.jpeg((321, 200)))
    told: list[tuple[int, int]] = []
    with Client(url(service)) as apercu:
        by_path = apercu.upload(path, wait=60, progress=lambda sent, size: told.append((sent, size)))
        by_bytes = apercu.upload(images.jpeg((322, 200)), filename="b.jpg", wait=60)
        with path.open("rb") as fp:
            by_file = apercu.upload(fp, wait=60)
        shifted = io.BytesIO(b"junk" + images.png_rgba())
        shifted.seek(4)  # sent from where it stands
        by_shifted = apercu.upload(shifted, filename="c.png", wait=60)
        with unseekable(images.jpeg((323, 200))) as stream:
            assert not stream.seekable()
            by_stream = apercu.upload(stream, wait=60)
    size = path.stat().st_size
    assert told[0] == (0, size) and told[-1] == (size, size)
    for upload, name, width in [(by_path, "from path.jpg", 321), (by_bytes, "b.jpg", 322),
                                (by_file, "from path.jpg", 321), (by_shifted, "c.png", 320),
                                (by_stream, "upload", 323)]:
        assert upload.image is not None and upload.image.status == upload.status == "success", upload
        stored = service.get(f"/images/{upload.id}").json()
        assert upload.image.id == upload.id == stored["id"] and upload.image.filename == stored["filename"] == name
        assert upload.image.metadata == stored["metadata"] and upload.image.metadata["width"] == width
        assert upload.image.thumbnail is not None and upload.image.thumbnail.url == stored["thumbnail"]["url"]
        assert upload.image.uploaded_at is not None and upload.image.final and not upload.replayed
    assert by_shifted.image is not None and by_shifted.image.raw["metadata"]["sha256"] == \
        hashlib.sha256(images.png_rgba()).hexdigest()


def test_upload_without_wait_then_get_and_wait(service: Service) -> None:
    with Client(url(service)) as apercu:
        upload = apercu.upload(images.jpeg((330, 200)), filename="later.jpg")
        assert upload.image is None and upload.status in ("pending", "processing", "success")
        assert upload.links.self == f"/images/{upload.id}"
        now = apercu.get(upload.id)
        assert now.id == upload.id and now.filename == "later.jpg"
        done = apercu.wait(upload.id, timeout=120)
        assert done.final and done.status == "success" and done.processed_at is not None
        assert apercu.get(upload.id, wait=30) == done
        broken = images.jpeg((800, 600))
        failed = apercu.upload(broken[: len(broken) // 3], wait=60).image
        assert failed is not None and failed.status == "failure" and failed.error


def test_an_idempotency_key_makes_a_retry_the_same_image(service: Service) -> None:
    with Client(url(service)) as apercu:
        first = apercu.upload(images.jpeg((331, 200)), idempotency_key="client-test-once")
        count = len(raw_ids(service, 100))
        again = apercu.upload(images.jpeg((331, 200)), idempotency_key="client-test-once", wait=60)
    assert again.id == first.id and again.replayed and not first.replayed
    assert len(raw_ids(service, 100)) == count


def test_list_iterates_over_pages(service: Service) -> None:
    with Client(url(service)) as apercu:
        for n in range(5):
            apercu.upload(images.jpeg((340 + n, 200)))
        expected = raw_ids(service, 100)
        pages = list(apercu.pages(page_size=2))
        listed = [image.id for image in apercu.list(page_size=3)]
        first = next(iter(apercu.list(page_size=1)))  # lazily: one page is enough for one image
    assert len(expected) >= 5 and listed == expected and first.id == expected[0]
    assert [image.id for page in pages for image in page.items] == expected
    assert all(len(page.items) == 2 and page.next_cursor for page in pages[:-1]) and pages[-1].next_cursor is None
    with Client(url(service)) as apercu:
        rest = [image.id for page in apercu.pages(page_size=2, cursor=pages[0].next_cursor) for image in page.items]
    assert rest == expected[2:]


def test_search_by_bytes_and_by_likeness(service: Service) -> None:
    data = images.jpeg((350, 200))
    with Client(url(service)) as apercu:
        upload = apercu.upload(data, wait=60)
        by_bytes = apercu.search(sha256=hashlib.sha256(data).hexdigest())
        alike = apercu.search(similar_to=upload.id, max_distance=4, limit=5)
        with pytest.raises(ValueError, match="one of"):
            apercu.search()
        with pytest.raises(ApiError) as bad:
            apercu.search(sha256="not-hex")
    assert [image.id for image in by_bytes] == [upload.id]
    assert alike[0].id == upload.id and alike[0].distance == 0 and all(isinstance(i, Image) for i in alike)
    assert all(image.distance is not None and image.distance <= 4 for image in alike)
    assert (bad.value.status, bad.value.code) == (400, "invalid_sha256")


def test_delete_and_the_errors_it_raises(service: Service) -> None:
    with Client(url(service)) as apercu:
        upload = apercu.upload(images.jpeg((360, 200)), wait=60)
        apercu.delete(upload.id)
        with pytest.raises(NotFound) as gone:
            apercu.get(upload.id)
        with pytest.raises(NotFound):
            apercu.delete(upload.id)
        with pytest.raises(ApiError) as refused:
            apercu.upload(b"not an image at all", filename="notes.txt")
        with pytest.raises(SourceError, match="cannot read"):
            apercu.upload(Path("/nonexistent/file.jpg"))
    assert (gone.value.status, gone.value.code) == (404, "not_found") and "no image" in gone.value.message
    assert service.get(f"/images/{upload.id}").status == 404
    assert (refused.value.status, refused.value.code) == (415, "unsupported_format")


def test_index_says_what_the_service_is(service: Service) -> None:
    with Client(url(service)) as apercu:
        info = apercu.index()
    assert (info.status, info.version, info.caller) == ("ok", __version__, None)
    assert any(e["path"] == "/images" for e in info.raw["endpoints"])


# Keys: API keys, signed rendition URLs


def fetch_rendition(address: str) -> httpx.Response:
    """GET a rendition URL with no key (the signature stands in for one), again while it is still rendering."""
    for _ in range(20):
        response = httpx.get(address, timeout=120)
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))
    return response


def test_api_key_and_signed_rendition_urls(keyed: Service) -> None:
    with Client(url(keyed)) as anonymous, pytest.raises(AuthenticationError) as refused:
        anonymous.upload(images.jpeg())
    assert refused.value.status == 401 and refused.value.code
    with Client(url(keyed), api_key=API_KEY, url_key=URL_KEY) as apercu:
        assert apercu.index().caller is not None
        upload = apercu.upload(images.jpeg((370, 200)), wait=60)
        address = apercu.rendition_url(upload.id, "w:64/h:64/fit:cover", "png")
        expired = apercu.rendition_url(upload.id, ["w:64"], "png", expires_in=-60)
    with Client(url(keyed), api_key=API_KEY, url_key="w" * 40) as wrong:
        forged = wrong.rendition_url(upload.id, "w:64/h:64/fit:cover", "png")
    path = "/w:64/h:64/fit:cover/" + f"{upload.id}.png"
    assert address == f"{url(keyed)}/r/{url_signing.sign(path, URL_KEY)}{path}"
    got = fetch_rendition(address)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content[:4] == b"\x89PNG"
    assert fetch_rendition(forged).json()["error"]["code"] == "bad_signature"
    assert fetch_rendition(expired).json()["error"]["code"] == "url_expired"


@pytest.mark.parametrize("path", ["/w:400/" + "a" * 32 + ".avif", "/p:card/" + "0" * 32 + ".auto", "/é/ü.png"])
@pytest.mark.parametrize("key", [URL_KEY, "k" * 32, "ключ-" * 8])
def test_the_client_signs_as_the_server_does(path: str, key: str) -> None:
    """The library repeats the server's signing function (it must not import the server): the same inputs give the
    same signature, and both refuse the same keys and paths."""
    assert apercu_client.sign(path, key) == url_signing.sign(path, key)
    assert url_signing.verify(apercu_client.sign(path, key), path, key)
    assert apercu_client.rendition_path(path[1:].rpartition(".")[0].rsplit("/", 1)[1], path.split("/")[1],
                                        path.rpartition(".")[2], key=key) == f"/r/{url_signing.sign(path, key)}{path}"
    for bad_key, bad_path in [("short", path), (key, path[1:])]:
        with pytest.raises(ValueError):
            url_signing.sign(bad_path, bad_key)
        with pytest.raises(ValueError):
            apercu_client.sign(bad_path, bad_key)


# Retries and the errors' Retry-After, against test_upload_cli's stand-in (503 with Retry-After: 1, then 202)


def test_busy_answers_are_retried_after_retry_after_with_one_key(scripted: str) -> None:  # noqa: F811
    Scripted.script = ["503", "202"]
    started = time.monotonic()
    with Client(scripted) as apercu:
        upload = apercu.upload(b"bytes")
    assert upload.id == "f" * 32 and time.monotonic() - started >= 1.0
    keys = {headers["Idempotency-Key"] for headers, _ in Scripted.posts}
    assert len(Scripted.posts) == 2 and len(keys) == 1 and keys.pop().startswith("apercu-client-")
    Scripted.script = ["503"] * 5
    with Client(scripted, retries=Retries(busy=0)) as impatient, pytest.raises(ApiError) as refused:
        impatient.upload(b"bytes", idempotency_key="mine")
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "unavailable", 1.0)
    assert Scripted.posts[-1][0]["Idempotency-Key"] == "mine"


def test_a_service_that_does_not_answer_is_unreachable_with_the_reason() -> None:
    with socket_closed() as port, Client(f"http://127.0.0.1:{port}", retries=Retries(connect=1)) as apercu:
        with pytest.raises(Unreachable, match="connection refused"):
            apercu.index()


class socket_closed:  # noqa: N801 (a context manager used as a phrase)
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *_: object) -> None:
        pass


# Proxies (from the environment, as httpx reads it, or given) and TLS settings


class Relay(BaseHTTPRequestHandler):
    """A forward proxy (a request for an absolute URL: sent on to it) or, with `upstream`, a reverse proxy (every
    request sent to that port): each request line is recorded in `seen`."""

    protocol_version = "HTTP/1.1"
    upstream: int | None = None
    prefix = ""  # with upstream: a path prefix taken off before the request goes on (a reverse proxy's location)
    seen: list[str] = []

    def relay(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        host, port = ("127.0.0.1", self.upstream) if self.upstream else (target.hostname, target.port)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hop = {"proxy-connection", "connection", "keep-alive", "proxy-authorization"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        conn = http.client.HTTPConnection(host or "127.0.0.1", port, timeout=120)
        path = target.path.removeprefix(self.prefix) + (f"?{target.query}" if target.query else "")
        conn.request(self.command, path, body=body or None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_HEAD = do_PATCH = relay  # (HEAD, PATCH: resumable uploads)

    def log_message(self, *args: Any) -> None:
        pass


def start_relay(
    upstream: int | None = None, tls: ssl.SSLContext | None = None, prefix: str = ""
) -> tuple[ThreadingHTTPServer, list[str]]:
    handler = type("OneRelay", (Relay,), {"upstream": upstream, "seen": [], "prefix": prefix})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler.seen


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    server, seen = start_relay()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_proxy_from_the_environment_or_given_is_used(
    service: Service, proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", address)
    with Client(url(service)) as apercu:
        upload = apercu.upload(images.jpeg((380, 200)), wait=60)
    assert f"POST {url(service)}/images" in seen and f"GET {url(service)}/images/{upload.id}?wait=30" in seen
    with Client(url(service), trust_env=False) as direct:
        seen.clear()
        direct.get(upload.id)
    assert seen == []
    monkeypatch.delenv("HTTP_PROXY")
    with Client(url(service), proxy=address) as given:
        given.delete(upload.id)
    assert seen == [f"DELETE {url(service)}/images/{upload.id}"]


def test_apercu_upload_goes_through_https_proxy_settings(service: Service, proxy: tuple[str, list[str]],
                                                         tmp_path: Path) -> None:
    """The command honours the proxy variables, as the library it is built on does."""
    address, seen = proxy
    (tmp_path / "a.jpg").write_bytes(images.jpeg((390, 200)))
    env = {k: v for k, v in os.environ.items() if k not in (*NO_PROXY_ENV, "APERCU_API_KEY", "APERCU_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "apercu", "upload", str(tmp_path), "--url", url(service), "--json"],
        capture_output=True, text=True, timeout=180, env=env | {"HTTP_PROXY": address},
    )
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["status"] == "success" and f"POST {url(service)}/images" in seen
    assert f"GET {url(service)}/" in seen  # the first contact too


def test_a_base_url_with_a_path_prefix(service: Service) -> None:
    """Behind a reverse proxy that serves the API under a path, every call is made under it."""
    server, seen = start_relay(service.port, prefix="/images-api")
    base = f"http://127.0.0.1:{server.server_address[1]}/images-api/"
    try:
        with Client(base) as apercu:
            upload = apercu.upload(images.jpeg((395, 200)), wait=60)
            listed = next(iter(apercu.list(page_size=1)))
            address = apercu.rendition_url(upload.id, "w:32", "png")
    finally:
        server.shutdown()
        server.server_close()
    assert upload.image is not None and upload.image.status == "success" and listed.id == upload.id
    assert "POST /images-api/images" in seen and f"GET /images-api/images/{upload.id}?wait=30" in seen
    assert "GET /images-api/images?limit=1" in seen
    assert address == f"{base}r/unsafe/w:32/{upload.id}.png"


def test_a_transport_given_is_the_one_used() -> None:
    """httpx's `transport=` reaches httpx (here its in-process one, answering as a service that has no such image)."""
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no image with this id"}})

    with Client("http://apercu.invalid", api_key="k", transport=httpx.MockTransport(answer)) as apercu:
        with pytest.raises(NotFound):
            apercu.get("a" * 32)
    assert [str(r.url) for r in asked] == ["http://apercu.invalid/images/" + "a" * 32]
    assert asked[0].headers["X-API-Key"] == "k" and asked[0].headers["User-Agent"].startswith("apercu-client/")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (Debian's openssl)."""
    if shutil.which("openssl") is None:
        unavailable("openssl not found: the TLS test needs it to make a certificate", REQUIRE_SERVICES)
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def test_tls_settings_are_httpx_s(service: Service, certificate: tuple[Path, Path]) -> None:
    """Behind TLS with a certificate of its own CA: refused by default, accepted with `verify=` that CA."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server, seen = start_relay(service.port, context)
    https = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        with Client(https, retries=Retries(connect=0)) as default, pytest.raises(Unreachable) as refused:
            default.index()
        assert "certificate verify failed" in str(refused.value).lower()
        with Client(https, verify=ssl.create_default_context(cafile=str(cert))) as trusting:
            upload = trusting.upload(images.jpeg((400, 200)), wait=60)
        assert upload.image is not None and upload.image.status == "success" and "POST /images" in seen

        async def over_tls() -> str:
            async with AsyncClient(https, verify=ssl.create_default_context(cafile=str(cert))) as apercu:
                return (await apercu.get(upload.id)).status

        assert asyncio.run(over_tls()) == "success"
    finally:
        server.shutdown()
        server.server_close()


# Async: every operation again, through the same core


def test_async_client_does_every_operation(service: Service, tmp_path: Path, proxy: tuple[str, list[str]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "async.jpg"
    path.write_bytes(images.jpeg((410, 200)))
    data = images.jpeg((411, 200))

    async def everything() -> dict[str, Any]:
        async with AsyncClient(url(service)) as apercu:
            info = await apercu.index()
            by_path, by_bytes, by_file = await asyncio.gather(
                apercu.upload(path, wait=60), apercu.upload(data, filename="b.jpg", idempotency_key="async-once"),
                apercu.upload(io.BytesIO(images.png_rgba()), filename="c.png", wait=60),
            )
            replayed = await apercu.upload(data, idempotency_key="async-once")
            waited = await apercu.wait(by_bytes.id, timeout=120)
            got = await apercu.get(by_path.id, wait=5)
            pages = [page async for page in apercu.pages(page_size=2)]
            listed = [image.id async for image in apercu.list(page_size=3)]
            found = await apercu.search(sha256=hashlib.sha256(data).hexdigest())
            alike = await apercu.search(similar_to=by_path.id, max_distance=0)
            await apercu.delete(by_file.id)
            try:
                await apercu.get(by_file.id)
                missing = None
            except NotFound as exc:
                missing = exc
            return locals()

    done = asyncio.run(everything())
    assert done["info"].version == __version__
    assert done["by_path"].image.status == "success" and done["by_path"].image.filename == "async.jpg"
    assert done["by_file"].image.metadata["format"] == "PNG"
    assert done["replayed"].id == done["by_bytes"].id and done["replayed"].replayed
    assert done["waited"].final and done["waited"].metadata["width"] == 411
    assert done["got"] == done["by_path"].image
    expected = raw_ids(service, 100)
    assert done["by_file"].id not in expected  # deleted since the list was read
    assert [i.id for p in done["pages"] for i in p.items] == done["listed"]
    assert [i for i in done["listed"] if i != done["by_file"].id] == expected
    assert all(len(p.items) == 2 for p in done["pages"][:-1]) and done["pages"][-1].next_cursor is None
    assert [image.id for image in done["found"]] == [done["by_bytes"].id]
    assert done["by_path"].id in [image.id for image in done["alike"]]
    assert done["missing"] is not None and done["missing"].status == 404

    # A proxy from the environment, as the sync client.
    monkeypatch.setenv("HTTP_PROXY", proxy[0])

    async def through_proxy() -> str:
        async with AsyncClient(url(service)) as apercu:
            return (await apercu.get(done["by_path"].id)).id

    assert asyncio.run(through_proxy()) == done["by_path"].id
    assert proxy[1] == [f"GET {url(service)}/images/{done['by_path'].id}"]


# The distribution


def test_the_distribution_needs_httpx_alone_and_never_the_server() -> None:
    assert importlib.metadata.requires("apercu-client") == ["httpx==0.28.1"]
    assert "apercu-client==0.1.0" in (importlib.metadata.requires("apercu") or [])
    assert importlib.metadata.version("apercu-client") == apercu_client.__version__ == "0.1.0"
    code = ("import sys, apercu_client, apercu_client.signing, apercu_client.bodies; "
            "print([m for m in sys.modules if m == 'apercu' or m.startswith(('apercu.', 'flask', 'celery'))])")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert imported.stdout.strip() == "[]"
    package = Path(apercu_client.__file__).parent
    assert (package / "py.typed").is_file()
    assert not any("import apercu\n" in p.read_text() or "from apercu " in p.read_text() or "from apercu." in
                   p.read_text() for p in package.glob("*.py"))
