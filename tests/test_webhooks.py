"""Webhook delivery: signed POSTs to a real local receiver, and the server-side request forgery defences."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from apercu.tasks import webhooks


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 answering what `script` says, recording what it got."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.script: list[tuple[int, dict[str, str], bytes]] = []  # answers in order; then 204
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), body))
        time.sleep(self.server.delay)
        status, headers, answer = self.server.script.pop(0) if self.server.script else (204, {}, b"")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST

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
    with pytest.raises(webhooks.Refused):
        webhooks.resolve(url)


def test_an_allowed_host_may_be_private_and_the_connection_goes_to_the_checked_address() -> None:
    target = webhooks.resolve("http://127.0.0.1:8080/hooks/done?x=1", allowed_hosts={"127.0.0.1"})
    assert (target.host, target.port, target.path, target.address) == ("127.0.0.1", 8080, "/hooks/done?x=1", "127.0.0.1")
    with pytest.raises(webhooks.Refused):
        webhooks.resolve("http://localhost:8080/", allowed_hosts={"127.0.0.1"})  # a name is allowed by name
    assert webhooks.is_public("93.184.215.14") and not webhooks.is_public("::ffff:10.1.2.3")


def test_a_delivery_is_a_signed_post_of_the_body(receiver: Receiver) -> None:
    body = json.dumps({"id": "x", "status": "success"}).encode()
    target = webhooks.resolve(receiver.url + "/done", allowed_hosts={"127.0.0.1"})
    answer = webhooks.deliver(target, body, "s3cret", "delivery-1")
    assert answer.ok and answer.status == 204
    path, headers, got = receiver.received[0]
    assert path == "/done" and got == body and headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Apercu-Signature"] == expected and headers["X-Apercu-Delivery"] == "delivery-1"
    assert abs(int(headers["X-Apercu-Timestamp"]) - time.time()) < 5


def test_redirects_are_not_followed_and_answers_are_read_bounded(receiver: Receiver) -> None:
    target = webhooks.resolve(receiver.url, allowed_hosts={"127.0.0.1"})
    receiver.script = [(302, {"Location": receiver.url + "/elsewhere"}, b""), (200, {}, b"x" * (8 * 1024 * 1024))]
    moved = webhooks.deliver(target, b"{}", "k", "d")
    assert moved.status == 302 and not moved.ok and len(receiver.received) == 1  # nobody went to /elsewhere
    started = time.monotonic()
    big = webhooks.deliver(target, b"{}", "k", "d")
    assert big.ok and len(big.excerpt) <= 200 and time.monotonic() - started < 5


def test_a_receiver_that_does_not_answer_times_out(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "READ_TIMEOUT", 0.3)
    receiver.delay = 2.0
    target = webhooks.resolve(receiver.url, allowed_hosts={"127.0.0.1"})
    started = time.monotonic()
    with pytest.raises(OSError):
        webhooks.deliver(target, b"{}", "k", "d")
    assert time.monotonic() - started < 1.5
