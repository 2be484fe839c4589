"""apercu behind a reverse proxy (issue 21, item 4): `X-Forwarded-For/-Proto/-Host/-Prefix` honoured from
APERCU_TRUSTED_PROXIES only (`api.forwarded`), and /readyz about accepting uploads, the workers reported apart.

First through the Flask test client: the rule for the client's address, what a trusted proxy's headers change
(links, `Location`, the OpenAPI `servers`, the page, rate limits, the access log) and that an untrusted peer's
change nothing. Then for real: Debian's nginx, with TLS and deploy/nginx/apercu.conf (the file the deployment docs
give: request buffering on, a body limit, the prefix /images stripped and sent as X-Forwarded-Prefix), in front of
`apercu web` and a worker, reached as https://example.org:<port>/images/ (a self-signed certificate; Chromium maps
example.org to loopback). nginx connects to apercu from 127.0.0.2, the one trusted address; each client connects
from an address of its own on 127/8, so rate limits can tell them apart. Uploads, thumbnails, renditions, the
documents and the page in Chromium go through it; a request sent straight to apercu with forged headers is
answered as if they were absent. nginx and Chromium come from Debian (`make nginx`, `make browser`); without them
these tests skip, and fail where APERCU_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import io
import json
import os
import pwd
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import REQUIRE_SERVICES, parse_json, unavailable
from live import READY_TIMEOUT, Reply, Service, free_port, multipart
from own_servers import socket_to
from test_page import CHROMIUM, OUTPUT, TIMEOUT_MS, new_page, pick_files, sample_files, shown_tiles, wait_for_thumbnails

from apercu.api import create_app
from apercu.api.forwarded import Forwarded, client_address
from apercu.config import SettingError, Settings

SNIPPET = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "apercu.conf"
HOST, PREFIX = "example.org", "/images"
NGINX_PEER = "127.0.0.2"  # where nginx connects to apercu from: APERCU_TRUSTED_PROXIES
FORGED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
          "X-Forwarded-Prefix": "/evil"}
MIB = 1024 * 1024

# --- the rule, without a proxy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.0.0.1", "198.51.100.7", "198.51.100.7"),  # one trusted proxy: the address it saw
        ("10.0.0.1", "203.0.113.1, 198.51.100.7", "198.51.100.7"),  # what the client wrote itself is ignored
        ("10.0.0.1", "198.51.100.7, 10.0.0.9", "198.51.100.7"),  # two trusted proxies: the right-most untrusted
        ("10.0.0.1", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # all trusted: the farthest
        ("10.0.0.1", "198.51.100.7, not-an-address", "10.0.0.1"),  # garbage from the proxy: the proxy's own
        ("10.0.0.1", "[2001:db8::1]", "2001:db8::1"),
        ("10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7"),
        ("::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7"),  # an IPv4-mapped peer is its IPv4 address
        ("192.0.2.1", "198.51.100.7", "192.0.2.1"),  # an untrusted peer: its own address, whatever it says
        ("10.0.0.1", None, "10.0.0.1"),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(peer: str, forwarded_for: str | None, client: str) -> None:
    assert client_address(("10.0.0.0/8",), peer, forwarded_for) == client


def test_trusted_proxies_are_checked_with_the_settings() -> None:
    assert Settings.from_env({"APERCU_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1,fd00::/8"}).trusted_proxies == (
        "10.0.0.0/8", "127.0.0.1", "fd00::/8")
    with pytest.raises(SettingError, match=r"APERCU_TRUSTED_PROXIES address 2 \('nginx'\) is not an IP address"):
        Settings.from_env({"APERCU_TRUSTED_PROXIES": "10.0.0.1,nginx"})


def seen_by_app(peer: str, headers: dict[str, str]) -> dict[str, Any]:
    """The parts of the WSGI environ the middleware may change, as the app below it sees them."""
    seen: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.update({k: environ.get(k) for k in ("REMOTE_ADDR", "wsgi.url_scheme", "HTTP_HOST", "SCRIPT_NAME")})
        start_response("204 No Content", [])
        return []

    environ = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http", "HTTP_HOST": "10.0.0.5:5000", "SCRIPT_NAME": ""}
    environ |= {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    Forwarded(app, ("10.0.0.1",))(environ, lambda *_args: None)
    return seen


def test_a_trusted_proxys_headers_say_the_scheme_host_and_prefix_and_no_one_elses() -> None:
    sent = {**FORGED, "X-Forwarded-Host": "example.org", "X-Forwarded-Prefix": "/images/"}
    assert seen_by_app("10.0.0.1", sent) == {"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https",
                                             "HTTP_HOST": "example.org", "SCRIPT_NAME": "/images"}
    untouched = {"REMOTE_ADDR": "192.0.2.1", "wsgi.url_scheme": "http", "HTTP_HOST": "10.0.0.5:5000", "SCRIPT_NAME": ""}
    assert seen_by_app("192.0.2.1", sent) == untouched
    # Malformed values change nothing: a prefix that a browser would read as another host, markup, a bad scheme.
    for name, value in (("X-Forwarded-Prefix", "//evil.example"), ("X-Forwarded-Prefix", '/a"><script>'),
                        ("X-Forwarded-Host", "a b"), ("X-Forwarded-Proto", "gopher")):
        changed = seen_by_app("10.0.0.1", {name: value})
        assert changed == untouched | {"REMOTE_ADDR": "10.0.0.1"}, (name, value)
    # Several proxies: each header's last value is the nearest one's.
    assert seen_by_app("10.0.0.1", {"X-Forwarded-Proto": "http, https"})["wsgi.url_scheme"] == "https"


def upload_from(client: Any, peer: str, headers: dict[str, str] | None = None) -> Any:
    data = {"file": (io.BytesIO(images.jpeg((64, 48))), "p.jpg")}
    return client.post("/images", data=data, headers=headers or {}, environ_base={"REMOTE_ADDR": peer})


def test_links_page_and_rate_limits_follow_a_trusted_proxy_only(settings: Settings,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings.with_overrides(trusted_proxies=("10.0.0.1",), upload_rate_limit=1))
    client = app.test_client()
    proxied = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": HOST,
               "X-Forwarded-Prefix": PREFIX}
    with caplog.at_level("INFO", logger="apercu.access"):
        accepted = upload_from(client, "10.0.0.1", proxied)
    assert accepted.status_code == 202
    image_id = parse_json(accepted)["id"]
    assert accepted.headers["Location"] == f"{PREFIX}/images/{image_id}"
    assert parse_json(accepted)["links"] == {"self": f"{PREFIX}/images/{image_id}",
                                             "thumbnail": f"{PREFIX}/thumbnails/{image_id}.jpg"}
    assert any(isinstance(r.args, dict) and r.args.get("client") == "198.51.100.7" for r in caplog.records)
    shown = parse_json(client.get(f"/images/{image_id}", headers=proxied, environ_base={"REMOTE_ADDR": "10.0.0.1"}))
    assert all(url.startswith(f"{PREFIX}/r/unsafe/") for urls in shown["views"].values() for url in urls.values())
    doc = parse_json(client.get("/openapi.json", headers=proxied, environ_base={"REMOTE_ADDR": "10.0.0.1"}))
    assert doc["servers"] == [{"url": f"{PREFIX}/"}]
    html = client.get("/", headers=proxied | {"Accept": "text/html"}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    text = html.get_data(as_text=True)
    assert f'<script type="module" src="{PREFIX}/static/js/app.js">' in text
    assert f'<meta name="apercu-root" content="{PREFIX}">' in text
    # The upload rate limit counts the forwarded client, not the proxy: another client behind it still uploads,
    # and a client cannot buy itself a fresh count by writing X-Forwarded-For itself.
    again = upload_from(client, "10.0.0.1", proxied | {"X-Forwarded-For": "203.0.113.1, 198.51.100.7"})
    assert again.status_code == 429 and parse_json(again)["error"]["code"] == "rate_limited"
    assert upload_from(client, "10.0.0.1", proxied | {"X-Forwarded-For": "198.51.100.8"}).status_code == 202
    # Straight from elsewhere, the same headers are ignored: no prefix, and the peer itself is the one counted.
    direct = upload_from(client, "192.0.2.1", proxied)
    assert direct.status_code == 202 and direct.headers["Location"] == f"/images/{parse_json(direct)['id']}"
    assert upload_from(client, "192.0.2.1", proxied | {"X-Forwarded-For": "198.51.100.9"}).status_code == 429
    html = client.get("/", headers=proxied | {"Accept": "text/html"}, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert '<meta name="apercu-root" content="">' in html.get_data(as_text=True)


# --- nginx in front of apercu web --------------------------------------------------------------------------------

WRAPPER = """
user {user} {group};
pid {dir}/nginx.pid;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream apercu {{ server 127.0.0.1:{upstream}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {host};
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        proxy_bind {peer};  # (apercu tells nginx from its clients by this address here, all being on loopback)
        include {snippet};
    }}
}}
"""


def tools() -> tuple[str, str]:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    openssl = shutil.which("openssl")
    if nginx is None or openssl is None:
        unavailable("nginx or openssl not found (`make nginx` installs Debian's nginx and openssl)", REQUIRE_SERVICES)
    assert nginx is not None and openssl is not None
    return nginx, openssl


class Nginx:
    """Debian's nginx, in the foreground, with its own configuration, files and logs in `folder`."""

    def __init__(self, folder: Path, upstream: int) -> None:
        nginx, openssl = tools()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, free_port()
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
                        "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                       check=True, capture_output=True, timeout=60)
        conf = folder / "nginx.conf"
        conf.write_text(WRAPPER.format(user=pwd.getpwuid(os.getuid()).pw_name, group=grp.getgrgid(os.getgid()).gr_name,
                                       dir=folder, upstream=upstream, port=self.port, host=HOST, peer=NGINX_PEER,
                                       snippet=SNIPPET))
        self.log = folder / "error.log"
        self.process = subprocess.Popen([nginx, "-e", str(self.log), "-c", str(conf), "-p", str(folder), "-g",
                                         "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while self.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket_to(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"nginx is not listening on {self.port} (exit code {self.process.poll()}): "
                           f"{self.log.read_text()[-2000:]}")

    @property
    def base(self) -> str:
        return f"https://{HOST}:{self.port}{PREFIX}/"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def send(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         source: str = "127.0.0.1", tls: bool = True) -> Reply:
    """One request to 127.0.0.1:`port` from the address `source`; over TLS as to https://example.org:<port>."""
    where = ("127.0.0.1", port)
    connection: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the test's own self-signed certificate
        connection = http.client.HTTPSConnection(*where, context=context, timeout=60, source_address=(source, 0))
    else:
        connection = http.client.HTTPConnection(*where, timeout=60, source_address=(source, 0))
    try:
        connection.request(method, path, body, {"Host": f"{HOST}:{port}", **(headers or {})})
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def upload(port: int, data: bytes, source: str, headers: dict[str, str] | None = None, tls: bool = True,
           path: str = f"{PREFIX}/images") -> Reply:
    body, content_type = multipart(data, "proxied.jpg")
    return send(port, "POST", path, body, content_type | (headers or {}), source, tls)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Nginx]]:
    """`apercu web` and a worker (each client may upload once a minute), nginx in front."""
    tools()
    folder = tmp_path_factory.mktemp("proxied")
    env = {"APERCU_TRUSTED_PROXIES": NGINX_PEER, "APERCU_UPLOAD_RATE_LIMIT": "1", "APERCU_LOG_LEVEL": "INFO"}
    service = Service(folder / "data", env).start("web", "worker")
    try:
        nginx = Nginx(folder / "nginx", service.port)
        try:
            yield service, nginx
        finally:
            nginx.stop()
    finally:
        service.stop()


def test_uploads_thumbnails_and_documents_through_nginx(proxied: tuple[Service, Nginx]) -> None:
    service, nginx = proxied
    accepted = upload(nginx.port, images.jpeg((800, 600)), source="127.0.0.5")
    assert accepted.status == 202, accepted.body
    image_id = accepted.json()["id"]
    assert accepted.headers["Location"] == f"{PREFIX}/images/{image_id}"  # the proxy's path, as the client asked it
    image = send(nginx.port, "GET", f"{accepted.headers['Location']}?wait=30").json()
    assert image["status"] == "success", image
    assert image["links"] == {"self": f"{PREFIX}/images/{image_id}", "thumbnail": f"{PREFIX}/thumbnails/{image_id}.jpg"}
    assert image["thumbnail"]["url"] == image["links"]["thumbnail"]
    thumbnail = send(nginx.port, "GET", image["links"]["thumbnail"])
    assert thumbnail.status == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
    assert thumbnail.body.startswith(b"\xff\xd8")
    variant = send(nginx.port, "GET", f"{image['links']['thumbnail'].removesuffix('.jpg')}.webp?size=128&wait=30")
    assert variant.status == 200 and variant.body[8:12] == b"WEBP"
    tile = image["views"]["tile"]["1x"]
    assert tile.startswith(f"{PREFIX}/r/unsafe/w:256/")
    rendition = send(nginx.port, "GET", tile, headers={"Accept": "image/webp"})
    assert rendition.status == 200 and rendition.headers["Content-Type"] == "image/webp"
    listed = send(nginx.port, "GET", f"{PREFIX}/images?limit=1").json()
    assert listed["items"][0]["links"]["self"].startswith(f"{PREFIX}/images/")
    if listed["next_cursor"]:
        assert listed["links"]["next"].startswith(f"{PREFIX}/images?limit=1&cursor=")
    assert send(nginx.port, "GET", f"{PREFIX}/openapi.json").json()["servers"] == [{"url": f"{PREFIX}/"}]
    docs = send(nginx.port, "GET", f"{PREFIX}/docs").body.decode()
    assert f"{PREFIX}/openapi.json" in docs and f'"{PREFIX}/docs/' in docs
    redirect = send(nginx.port, "GET", PREFIX)  # nginx's own: the prefix without its slash
    assert redirect.status == 301 and redirect.headers["Location"].endswith(f":{nginx.port}{PREFIX}/")
    ready = send(nginx.port, "GET", f"{PREFIX}/readyz")
    assert ready.status == 200 and ready.json()["workers"]["status"] == "ok"
    assert send(nginx.port, "GET", f"{PREFIX}/readyz/workers").json()["alive"] >= 1
    assert send(nginx.port, "DELETE", image["links"]["self"]).status == 204
    assert send(nginx.port, "GET", image["links"]["self"]).status == 404


def test_body_limits_nginx_first_then_apercu(proxied: tuple[Service, Nginx]) -> None:
    """Past `client_max_body_size` nginx answers 413 from the head, before apercu hears of it; under it but with a
    file over APERCU_MAX_UPLOAD_BYTES (50 MiB), apercu answers its own 413, as JSON, through nginx."""
    _service, nginx = proxied
    declared = send(nginx.port, "POST", f"{PREFIX}/images", b"", {"Content-Length": str(51264 * 1024 + 1)}, "127.0.0.8")
    assert declared.status == 413 and b"nginx" in declared.body
    over = upload(nginx.port, b"\0" * (50 * MIB + 1), source="127.0.0.8")
    assert over.status == 413 and over.json()["error"]["code"] == "too_large"


def test_rate_limits_and_logs_name_the_client_behind_nginx(proxied: tuple[Service, Nginx]) -> None:
    """One upload a minute per client: nginx's clients are told apart by the address nginx forwards, and one
    cannot pass for another by writing X-Forwarded-For itself (nginx appends the address it saw). The refusal of a
    large body reaches the client as apercu's 429, not as nginx's 502 for a connection reset mid-body."""
    service, nginx = proxied
    for _attempt in range(3):  # a minute's window may turn between the two uploads: then once more
        minute = time.time() // 60
        first = upload(nginx.port, images.jpeg((64, 48)), source="127.0.0.3")
        second = upload(nginx.port, b"\0" * MIB, source="127.0.0.3", headers={"X-Forwarded-For": "203.0.113.1"})
        if time.time() // 60 == minute:
            break
    assert first.status in (202, 429) and second.status == 429 and second.json()["error"]["code"] == "rate_limited"
    assert upload(nginx.port, images.jpeg((64, 48)), source="127.0.0.4").status == 202  # another client
    deadline = time.monotonic() + 30
    while not re.search(r"POST /images 429 .* from 127\.0\.0\.3\b", service.log.read_text()):
        assert time.monotonic() < deadline, "no access line names the client"
        time.sleep(0.2)
    assert " from 127.0.0.2" not in service.log.read_text()  # never nginx's own address


def test_forged_headers_sent_straight_to_apercu_are_ignored(proxied: tuple[Service, Nginx]) -> None:
    service, _nginx = proxied
    accepted = upload(service.port, images.jpeg((64, 48)), source="127.0.0.6", headers=FORGED, tls=False,
                      path="/images")
    assert accepted.status == 202
    assert accepted.headers["Location"] == f"/images/{accepted.json()['id']}"  # no /evil prefix
    forged_again = FORGED | {"X-Forwarded-For": "203.0.113.10"}
    refused = upload(service.port, images.jpeg((64, 48)), "127.0.0.6", forged_again, tls=False, path="/images")
    assert refused.status == 429  # counted as 127.0.0.6 both times, whatever it claims to forward
    page = send(service.port, "GET", "/", headers=FORGED | {"Accept": "text/html"}, source="127.0.0.6", tls=False)
    assert '<meta name="apercu-root" content="">' in page.body.decode()
    assert json.loads(send(service.port, "GET", "/openapi.json", headers=FORGED, tls=False).body)["servers"] == [
        {"url": "/"}]


def test_the_page_through_nginx_in_chromium(proxied: tuple[Service, Nginx], tmp_path: Path) -> None:
    """The page at https://example.org:<port>/images/: its assets, its API calls and the pictures all under the
    prefix, over TLS; an upload, the gallery's tiles, one image's page, a delete."""
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM} (`make browser` installs it)", REQUIRE_SERVICES)
    from playwright.sync_api import expect, sync_playwright

    _service, nginx = proxied
    jpeg, _png = sample_files(tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=[f"--host-resolver-rules=MAP {HOST} 127.0.0.1"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
            page = new_page(context)
            asked: list[str] = []
            problems: list[str] = []
            page.on("request", lambda req: asked.append(req.url))
            page.on("response", lambda res: problems.append(f"{res.status} {res.url}") if res.status >= 400 else None)
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(nginx.base)
            expect(page.get_by_role("heading", name="Images", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            pick_files(page, [jpeg])
            expect(page.locator('.upload[data-status="success"]')).to_have_count(1, timeout=TIMEOUT_MS)
            page.locator("#gallery").get_by_role("link", name="lighthouse.jpg").wait_for()
            count = page.locator("#gallery .card").count()
            wait_for_thumbnails(page, count)
            assert all(tile["src"].startswith(f"{nginx.base}r/") for tile in shown_tiles(page))
            page.locator("#gallery").get_by_role("link", name="lighthouse.jpg").first.click()
            page.wait_for_function("() => document.querySelector('.preview__img')?.naturalWidth > 0")
            assert page.eval_on_selector(".preview__img", "img => img.currentSrc").startswith(f"{nginx.base}r/")
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "proxied-detail.png"), full_page=True)
            page.get_by_role("button", name="Delete…").click()
            page.get_by_role("dialog", name="Delete this image?").get_by_role("button", name="Delete", exact=True).click()
            expect(page).to_have_url(f"{nginx.base}#/")
            expect(page.locator("#gallery .card")).to_have_count(count - 1, timeout=TIMEOUT_MS)
            context.close()
        finally:
            browser.close()
    assert asked and all(url.startswith(nginx.base) or url.startswith(("blob:", "data:")) for url in asked), asked
    assert problems == []


def test_readyz_stays_ready_without_a_worker(tmp_path: Path) -> None:
    """The worker killed: /readyz stays 200 (this web still accepts and keeps uploads, and does: 202), and says
    `workers: none`; /readyz/workers turns 503 and `apercu_workers_alive` 0 once its heartbeat is old."""
    service = Service(tmp_path / "data").start("web", "worker")
    try:
        service.crash(1)  # the worker, as a power cut would
        deadline = time.monotonic() + READY_TIMEOUT
        while service.get("/readyz/workers").status != 503:
            assert time.monotonic() < deadline, "the dead worker still counts as alive"
            time.sleep(0.5)
        ready = service.get("/readyz")
        assert ready.status == 200 and ready.json()["workers"] == {
            "status": "none", "alive": 0, "message": ready.json()["workers"]["message"]}
        assert "apercu_workers_alive 0.0" in service.get("/metrics").body.decode()
        accepted = service.upload(images.jpeg((64, 48)))
        assert accepted.status == 202 and service.get(f"/images/{accepted.json()['id']}").json()["status"] == "pending"
    finally:
        service.stop()
