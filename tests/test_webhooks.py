"""Webhook delivery: signed POSTs to a real local receiver, which verifies each with the Standard Webhooks library
as a client's would, and the server-side request forgery defences."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from apercu import outbound as addresses
from apercu.config import SettingError, Settings, webhook_key
from apercu.webhooks import transport

# What the service is configured with in these tests, in the Standard Webhooks form, and the key it stands for.
SECRET = "whsec_" + base64.b64encode(b"apercu's webhook test key: 32 B.").decode()
KEY = webhook_key(SECRET)


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1: it verifies every POST with `standardwebhooks` under `secret` (what a
    client's code would pass it: the whsec_ text, or a plain secret's bytes), answers 401 to one that fails, and
    otherwise what `script` says, recording what it got."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.secret: str | bytes = SECRET
        self.received: list[tuple[str, dict[str, str], bytes]] = []  # the verified deliveries
        self.rejected: list[tuple[dict[str, str], str]] = []  # the others, and why
        self.script: list[tuple[int, dict[str, str], bytes]] = []  # answers in order; then 204
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            Webhook(self.server.secret).verify(body, dict(self.headers))
        except WebhookVerificationError as exc:
            self.server.rejected.append((dict(self.headers), str(exc)))
            self.answer(401, {}, b"signature check failed")
            return
        self.server.received.append((self.path, dict(self.headers), body))
        time.sleep(self.server.delay)
        self.answer(*(self.server.script.pop(0) if self.server.script else (204, {}, b"")))

    def answer(self, status: int, headers: dict[str, str], answer: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1/", "/relative", "http://user:pw@example.com/",
    "http://127.0.0.1/", "http://localhost:8080/hook", "http://10.0.0.8/", "http://192.168.1.1/", "http://172.16.5.4/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[fd00::1]/",
    "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/", "http://127.0.0.1:99999/",
])
def test_urls_into_the_private_network_are_refused(url: str) -> None:
    with pytest.raises(addresses.Refused):
        addresses.resolve(url)


def test_an_allowed_host_may_be_private_and_the_connection_goes_to_the_checked_address() -> None:
    target = addresses.resolve("http://127.0.0.1:8080/hooks/done?x=1", allowed_hosts={"127.0.0.1"})
    assert (target.host, target.port, target.path, target.address) == ("127.0.0.1", 8080, "/hooks/done?x=1", "127.0.0.1")
    with pytest.raises(addresses.Refused):
        addresses.resolve("http://localhost:8080/", allowed_hosts={"127.0.0.1"})  # a name is allowed by name
    assert addresses.is_public("93.184.215.14") and not addresses.is_public("::ffff:10.1.2.3")


def test_a_delivery_is_signed_by_the_standard_webhooks_scheme(receiver: Receiver) -> None:
    """`webhook-signature: v1,<base64>` of `<id>.<timestamp>.<body>`, which the receiver's library accepted; the
    deprecated X-Apercu-* headers still come, for receivers not yet moved."""
    body = json.dumps({"id": "x", "status": "success"}).encode()
    target = addresses.resolve(receiver.url + "/done", allowed_hosts={"127.0.0.1"})
    answer = transport.post(target, body, KEY, "delivery-1")
    assert answer.ok and answer.status == 204 and receiver.rejected == []
    path, headers, got = receiver.received[0]
    assert path == "/done" and got == body and headers["Content-Type"] == "application/json"
    stamp = headers["webhook-timestamp"]
    assert headers["webhook-id"] == "delivery-1" and abs(int(stamp) - time.time()) < 5
    mac = hmac.new(KEY, b"delivery-1." + stamp.encode() + b"." + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert headers["X-Apercu-Delivery"] == "delivery-1" and headers["X-Apercu-Timestamp"] == stamp
    assert headers["X-Apercu-Signature"] == "sha256=" + hmac.new(KEY, body, hashlib.sha256).hexdigest()


def resend(receiver: Receiver, body: bytes, headers: dict[str, str]) -> int:
    """POST a captured delivery to the receiver again, as someone who captured it would; the receiver's status."""
    conn = http.client.HTTPConnection("127.0.0.1", receiver.server_address[1], timeout=5)
    try:
        conn.request("POST", "/done", body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_captured_delivery_replayed_with_a_fresh_timestamp_or_another_id_fails_verification(
        receiver: Receiver) -> None:
    """The attack the old scheme let through (its signature covered the body only): the same body and signature,
    a new `webhook-timestamp` (to pass a receiver's freshness check), or a new `webhook-id` (to pass its check for
    repeats). Both are refused; the untouched delivery is not."""
    target = addresses.resolve(receiver.url + "/done", allowed_hosts={"127.0.0.1"})
    assert transport.post(target, b'{"type":"image.succeeded"}', KEY, "a" * 32).ok
    [(_, captured, body)] = receiver.received
    kept = {name: captured[name] for name in ("Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature")}
    later = str(int(captured["webhook-timestamp"]) + 60)
    assert resend(receiver, body, kept | {"webhook-timestamp": later}) == 401
    assert resend(receiver, body, kept | {"webhook-id": "b" * 32}) == 401
    assert [why for _, why in receiver.rejected] == ["No matching signature found"] * 2
    assert resend(receiver, body, kept) == 204 and len(receiver.received) == 2  # (repeats are the receiver's to drop)


@pytest.mark.parametrize(("configured", "receivers_form"), [
    (SECRET, SECRET),  # Standard Webhooks' form: the HMAC key is the base64-decoded bytes
    (SECRET.rstrip("="), SECRET),  # its base64 without padding
    ("whsec_" + base64.b64encode(bytes(range(64))).decode(), "whsec_" + base64.b64encode(bytes(range(64))).decode()),
    ("plain old s3cret", b"plain old s3cret"),  # as before that form: the text's UTF-8 bytes are the key
    ("0123abcd" * 8, ("0123abcd" * 8).encode()),  # e.g. `openssl rand -hex 32`, as the README used to suggest
])
def test_the_secret_is_taken_in_its_whsec_form_or_as_plain_text(
        receiver: Receiver, configured: str, receivers_form: str | bytes) -> None:
    settings = Settings.from_env({"APERCU_WEBHOOK_SECRET": configured})
    receiver.secret = receivers_form
    target = addresses.resolve(receiver.url, allowed_hosts={"127.0.0.1"})
    assert transport.post(target, b"{}", webhook_key(settings.webhook_secret), "d" * 32).status == 204
    assert receiver.rejected == [] and len(receiver.received) == 1
    if configured.startswith("whsec_"):
        assert webhook_key(configured) == base64.b64decode(str(receivers_form).removeprefix("whsec_"))


@pytest.mark.parametrize("malformed", [
    "whsec_", "whsec_not base64!", "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # -_ is not base64
    "whsec_" + base64.b64encode(b"16 bytes is less").decode(), "whsec_" + SECRET[6:] + "\n", "whsec_A",
])
def test_a_malformed_whsec_secret_stops_the_start_without_showing_it(malformed: str) -> None:
    with pytest.raises(SettingError, match=r"^APERCU_WEBHOOK_SECRET is not whsec_ followed by the base64 of 24") as e:
        Settings.from_env({"APERCU_WEBHOOK_SECRET": malformed})
    assert repr(malformed) not in str(e.value)  # a setting that is not a secret is named with its value


def test_redirects_are_not_followed_and_answers_are_read_bounded(receiver: Receiver) -> None:
    target = addresses.resolve(receiver.url, allowed_hosts={"127.0.0.1"})
    receiver.script = [(302, {"Location": receiver.url + "/elsewhere"}, b""), (200, {}, b"x" * (8 * 1024 * 1024))]
    moved = transport.post(target, b"{}", KEY, "d")
    assert moved.status == 302 and not moved.ok and len(receiver.received) == 1  # nobody went to /elsewhere
    started = time.monotonic()
    big = transport.post(target, b"{}", KEY, "d")
    assert big.ok and len(big.excerpt) <= 200 and time.monotonic() - started < 5


def test_a_receiver_trickling_its_answer_is_cut_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each byte in time for the per-read timeout, the whole answer never: the attempt still ends."""
    import socket

    monkeypatch.setattr(transport, "TOTAL_TIMEOUT", 1.0)
    listener = socket.create_server(("127.0.0.1", 0))

    def tarpit() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        try:
            for _ in range(40):
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-A: "[:1] if _ == 0 else b"a")
                time.sleep(0.1)
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=tarpit, daemon=True).start()
    target = addresses.resolve(f"http://127.0.0.1:{listener.getsockname()[1]}/", allowed_hosts={"127.0.0.1"})
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - whatever the cut read raises, the attempt ends
        transport.post(target, b"{}", KEY, "d")
    assert time.monotonic() - started < 2.5
    listener.close()


@pytest.mark.parametrize("url", ["http://example.com/a b", "http://example.com/a\x00b", "http://a..example.com/",
                                 "http://" + "a" * 64 + ".example.com/", "http://exämple.com/"])
def test_urls_that_cannot_be_sent_are_refused_before_any_attempt(url: str) -> None:
    with pytest.raises(addresses.Refused):
        addresses.check(url)


def test_a_receiver_that_does_not_answer_times_out(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "READ_TIMEOUT", 0.3)
    receiver.delay = 2.0
    target = addresses.resolve(receiver.url, allowed_hosts={"127.0.0.1"})
    started = time.monotonic()
    with pytest.raises(OSError):
        transport.post(target, b"{}", KEY, "d")
    assert time.monotonic() - started < 1.5


def test_a_delivery_backs_off_then_gives_up(tmp_path: Any) -> None:
    """`Deliveries` needs settings, a catalog and a way to POST: attempts wait longer each time, and the last ends
    the delivery as failed, saying why."""
    from apercu.storage.catalog import Catalog
    from apercu.storage.migrations.schema import create_schema
    from apercu.webhooks import Deliveries

    catalog = Catalog.from_url(f"sqlite:///{tmp_path}/c.db")
    create_schema(catalog.engine)
    catalog.images.add("1" * 32, "a.jpg", callback_url="http://127.0.0.1:9/hook")
    assert catalog.leases.fail("1" * 32, "broken", webhook_url="")  # settling makes the delivery due
    [delivery] = catalog.deliveries.of_image("1" * 32)
    posted: list[tuple[addresses.Target, bytes, bytes, str]] = []

    def post(target: addresses.Target, body: bytes, key: bytes, delivery_id: str) -> transport.Answer:
        posted.append((target, body, key, delivery_id))
        return transport.Answer(503, "busy")

    settings = Settings(webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1", webhook_attempts=3,
                        webhook_backoff=2)
    deliveries = Deliveries(settings, catalog, post)
    assert [deliveries.attempt(delivery.id) for _ in range(3)] == [2.0, 4.0, None]
    assert deliveries.attempt(delivery.id) is None and len(posted) == 3  # ended: no fourth POST
    target, body, key, delivery_id = posted[0]
    assert (target.address, target.path, key, delivery_id) == ("127.0.0.1", "/hook", KEY, delivery.id)
    sent = json.loads(body)
    assert sent["type"] == "image.failed" and sent["status"] == "failure" and sent["error"] == "broken"
    assert sent["timestamp"] == sent["processed_at"] and sent["timestamp"].endswith("Z")  # when it settled
    [ended] = catalog.deliveries.of_image("1" * 32)
    assert ended.status == "failed" and "gave up after 3 attempts: HTTP 503: busy" in (ended.last_error or "")
    catalog.engine.dispose()


def test_a_body_is_the_images_json_with_the_event_beside_it() -> None:
    """The Standard Webhooks payload with its data in the top level: `type` and `timestamp`, then the image's JSON
    unchanged (mypy refuses an image field of either name: `ImageEventJson` extends `ImageJson`)."""
    from datetime import datetime
    from typing import get_args

    from apercu.images import Image, image_json
    from apercu.storage.catalog import ImageStatus
    from apercu.webhooks.deliveries import EVENT_TYPES, EventType, payload

    image = Image("1" * 32, ImageStatus.SUCCESS, "a.jpg", datetime(2026, 12, 7, 21, 30), datetime(2026, 12, 7, 21, 30, 2),
                  None, {"width": 4}, {"width": 2, "height": 1, "bytes": 9})
    body = json.loads(payload(image))
    assert list(body)[:2] == ["type", "timestamp"] and body.pop("type") == "image.succeeded"
    assert body.pop("timestamp") == "2026-12-07T21:30:02.000Z" and body == image_json(image)
    assert sorted(EVENT_TYPES.values()) == sorted(get_args(EventType)) == ["image.failed", "image.succeeded"]


# Through the whole service: a real worker delivers to the receiver above.



def webhook_service(tmp_path: Any, receiver: Receiver, **env: str) -> Any:
    from live import Service

    settings = {"APERCU_WEBHOOK_SECRET": SECRET, "APERCU_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "APERCU_WEBHOOK_BACKOFF": "0.2", **env}
    return Service(tmp_path / "data", settings).start("serve")


def upload_with_callback(svc: Any, data: bytes, callback: str) -> Any:
    import uuid

    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="callback_url"\r\n\r\n{callback}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return svc.request("POST", "/images", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def delivered(svc: Any, image_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = svc.get(f"/images/{image_id}?wait=5").json()
        hooks = body.get("webhooks", [])
        if (hooks and all(h["status"] != "pending" for h in hooks)) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def conforms_to_the_document(svc: Any, headers: dict[str, str], posted: dict[str, Any]) -> None:
    """The delivery is what the service's OpenAPI document says of its webhook: the body valid against its schema
    (closed: no field it does not describe), each documented header present and valid."""
    from test_openapi import Contract

    contract = Contract(svc.get("/openapi.json").json())
    webhook = contract.doc["webhooks"]["imageSettled"]["post"]
    contract.validate(posted, webhook["requestBody"]["content"]["application/json"]["schema"])
    for header in webhook["parameters"]:
        contract.validate(headers[header["name"]], header["schema"])


@pytest.mark.integration
def test_a_settled_image_is_posted_signed_to_its_callback(tmp_path: Any, receiver: Receiver) -> None:
    import images

    svc = webhook_service(tmp_path, receiver, APERCU_WEBHOOK_URL=receiver.url + "/operator")
    try:
        image_id = upload_with_callback(svc, images.jpeg(), receiver.url + "/done").json()["id"]
        body = delivered(svc, image_id)
        [hook] = body["webhooks"]  # the operator's own webhook is not shown to API clients
        assert hook["status"] == "delivered" and hook["attempts"] == 1 and hook["last_status"] == 204
        deadline = time.monotonic() + 20
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        by_path = {path: (headers, sent) for path, headers, sent in receiver.received}
        assert set(by_path) == {"/done", "/operator"}
        headers, sent = by_path["/done"]
        assert headers["webhook-id"] == hook["id"] and receiver.rejected == []  # (and the receiver verified both)
        posted = json.loads(sent)
        assert posted["type"] == "image.succeeded" and posted["timestamp"] == body["processed_at"]
        assert posted["id"] == image_id and posted["status"] == "success"
        conforms_to_the_document(svc, headers, posted)
        assert posted["metadata"] == body["metadata"] and posted["thumbnail"] == body["thumbnail"]
        assert "webhooks" not in posted and "webhooks" not in json.loads(by_path["/operator"][1])
    finally:
        svc.stop()


@pytest.mark.integration
def test_a_receiver_that_fails_twice_gets_it_the_third_time(tmp_path: Any, receiver: Receiver) -> None:
    import images

    receiver.script = [(500, {}, b"down"), (503, {}, b"busy")]
    svc = webhook_service(tmp_path, receiver)
    try:
        broken = upload_with_callback(svc, images.jpeg()[:3000], receiver.url).json()["id"]  # failures too
        body = delivered(svc, broken)
        [hook] = body["webhooks"]
        assert body["status"] == "failure"
        assert hook["status"] == "delivered" and hook["attempts"] == 3 and hook["last_status"] == 204
        assert len(receiver.received) == 3 and len({h["webhook-id"] for _, h, _ in receiver.received}) == 1
        assert {json.loads(sent)["type"] for _, _, sent in receiver.received} == {"image.failed"}
    finally:
        svc.stop()


@pytest.mark.integration
def test_a_receiver_that_never_answers_well_is_given_up_on(tmp_path: Any, receiver: Receiver) -> None:
    import images

    receiver.script = [(500, {}, b"")] * 10
    svc = webhook_service(tmp_path, receiver, APERCU_WEBHOOK_ATTEMPTS="3")
    try:
        image_id = upload_with_callback(svc, images.jpeg(), receiver.url).json()["id"]
        [hook] = delivered(svc, image_id)["webhooks"]
        assert hook["status"] == "failed" and hook["attempts"] == 3 and "gave up after 3" in hook["last_error"]
        assert len(receiver.received) == 3
    finally:
        svc.stop()


def test_callback_urls_are_checked_at_upload(app: Any) -> None:
    import io

    import images
    from conftest import parse_json

    from apercu.api import create_app

    def post(application: Any, callback: str) -> Any:
        data = {"file": (io.BytesIO(images.jpeg()), "x.jpg"), "callback_url": callback}
        return application.test_client().post("/images", data=data)

    without_secret = post(app, "https://example.com/hook")
    assert without_secret.status_code == 400 and "APERCU_WEBHOOK_SECRET" in parse_json(without_secret)["error"]["message"]
    signing = create_app(app.extensions["apercu"].settings.with_overrides(webhook_secret="s"))
    for url in ("http://10.1.2.3/hook", "http://localhost/hook", "ftp://example.com/", "http://[::1]:80/"):
        refused = post(signing, url)
        assert refused.status_code == 400 and parse_json(refused)["error"]["code"] == "invalid_callback_url", url
    assert post(signing, "https://example.com/hook").status_code == 202


@pytest.mark.integration
def test_the_uploader_of_a_duplicate_is_told_too(tmp_path: Any, receiver: Receiver) -> None:
    """With deduplication, a second upload of the same bytes gets the stored image: its callback still fires,
    at once when that image has settled."""
    import images

    svc = webhook_service(tmp_path, receiver, APERCU_DEDUP="reuse")
    try:
        data = images.jpeg((500, 400))
        first = upload_with_callback(svc, data, receiver.url + "/first").json()["id"]
        delivered(svc, first)
        again = upload_with_callback(svc, data, receiver.url + "/second")
        assert again.status == 200 and again.json()["duplicate"] is True and again.json()["id"] == first
        deadline = time.monotonic() + 20
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(path for path, _, _ in receiver.received) == ["/first", "/second"]
        hooks = delivered(svc, first)["webhooks"]
        assert sorted((h["url"].rsplit("/", 1)[1], h["status"]) for h in hooks) == [
            ("first", "delivered"), ("second", "delivered")]
    finally:
        svc.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_due_deliveries_are_picked_once(database: str, tmp_path: Any, request: pytest.FixtureRequest) -> None:
    """Each due delivery goes to one sweep: the next finds it no longer due, and on PostgreSQL a sweep skips a
    delivery another sweep holds instead of waiting for it (or sending it twice)."""
    import sqlalchemy as sa

    from apercu.storage.catalog import Catalog, utcnow
    from apercu.storage.catalog.tables import deliveries
    from apercu.storage.migrations.schema import create_schema

    url = request.getfixturevalue("fresh_postgres_url") if database == "postgres" else f"sqlite:///{tmp_path}/c.db"
    catalog = Catalog.from_url(url)
    create_schema(catalog.engine)
    catalog.images.add("1" * 32, "a.jpg")
    assert catalog.leases.fail("1" * 32, "broken", webhook_url="https://example.com/hook")  # settling records it
    [delivery] = catalog.deliveries.of_image("1" * 32)
    if database == "postgres":
        with catalog.engine.connect() as other:
            other.execute(sa.select(deliveries).where(deliveries.c.id == delivery.id).with_for_update())
            assert catalog.deliveries.take_due(utcnow()) == []  # held elsewhere: skipped, not waited for
            other.rollback()
    assert catalog.deliveries.take_due(utcnow()) == [delivery.id]
    assert catalog.deliveries.take_due(utcnow()) == []  # now due again only in a minute
    catalog.engine.dispose()
