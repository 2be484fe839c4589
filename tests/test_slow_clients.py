"""Integration: slow, stalled, incomplete and malformed clients against a real `apercu serve` (issue 7, point 10).

The clients here are raw sockets, since the point is what ordinary HTTP clients never do: stop halfway, close
early, send more than allowed. The service runs with a 1 MiB upload limit and a 3 s request timeout to keep each
test short; the rate allowance is set so high that it adds nothing to that timeout.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import images
import pytest
from live import Service, read_response

pytestmark = pytest.mark.integration

LIMIT = 1024 * 1024
TIMEOUT = 3.0
STALLED = 200


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "APERCU_MAX_UPLOAD_BYTES": str(LIMIT),
        "APERCU_REQUEST_TIMEOUT": str(TIMEOUT),
        "APERCU_REQUEST_MIN_RATE": str(1024**3),
    }
    svc = Service(tmp_path_factory.mktemp("slow") / "data", env).start("serve")
    yield svc
    assert svc.stop() == [0], svc.log.read_text()[-3000:]


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def head(content_type: str, framing: str, path: str = "/images") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n".encode()


def connect(svc: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", svc.port), timeout=10)




def error_of(response: tuple[int, dict[str, str], bytes]) -> tuple[int, str]:
    """(status, error code), asserting the body is the API's JSON error shape."""
    status, headers, body = response
    assert headers["content-type"] == "application/json", (status, headers, body)
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["message"], error
    return status, error["code"]


def stored(svc: Service) -> tuple[list[Path], list[Path], list[str]]:
    """Originals, upload staging files, and the ids the API lists."""
    originals = sorted((svc.data_dir / "originals").rglob("*"))
    staging = sorted((svc.data_dir / "tmp").glob("upload-*"))
    return originals, staging, [item["id"] for item in svc.get("/images?limit=100").json()["items"]]


def test_body_shorter_than_its_length_is_400_and_stores_nothing(service: Service) -> None:
    before = stored(service)
    body, content_type = multipart(images.jpeg())
    with connect(service) as sock:
        sock.sendall(head(content_type, f"Content-Length: {len(body)}") + body[: len(body) // 2])
        sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        assert error_of(read_response(sock)) == (400, "bad_request")
        assert time.monotonic() - started < 1.0  # answered on the half-close, not after a timeout
    assert stored(service) == before


def test_stalled_uploads_starve_nobody_and_are_closed(service: Service) -> None:
    body, content_type = multipart(b"\xff\xd8\xff" + bytes(100_000))
    stalled = []
    try:
        for _ in range(STALLED):
            sock = connect(service)
            sock.sendall(head(content_type, f"Content-Length: {len(body)}") + body[: len(body) // 2])
            stalled.append(sock)
        time.sleep(0.5)  # the server has taken them all in

        started = time.monotonic()
        assert service.get("/").status == 200
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        assert service.upload(images.jpeg()).status == 202
        assert time.monotonic() - started < 1.0

        for sock in stalled:  # each is answered 408 once the timeout has passed, then closed
            sock.settimeout(TIMEOUT + 5)
            assert error_of(read_response(sock)) == (408, "request_timeout")
            assert sock.recv(1) == b""
    finally:
        for sock in stalled:
            sock.close()


def test_chunked_upload_over_the_limit_is_cut_off_at_the_limit(service: Service) -> None:
    """The server stops reading at the limit: the client sees 413 after a little more than the limit, out of the
    64 MiB it offers (what it sends beyond the limit sat in kernel buffers, never read by the server)."""
    offered, piece = 64 * 1024 * 1024, 64 * 1024
    chunk = b"%x\r\n" % piece + b"\xff" * piece + b"\r\n"
    with connect(service) as sock:
        sock.sendall(head("application/octet-stream", "Transfer-Encoding: chunked"))
        sock.setblocking(False)
        pending, sent = memoryview(chunk), 0
        poller = select.poll()  # select() refuses descriptors past 1023, which a long test run reaches
        poller.register(sock, select.POLLIN | select.POLLOUT)
        deadline = time.monotonic() + 15
        while sent < offered and time.monotonic() < deadline:
            events = sum(event for _, event in poller.poll(1000))
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                break
            if events & select.POLLOUT:
                try:
                    count = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += count
                pending = pending[count:] or memoryview(chunk)
        sock.setblocking(True)
        assert error_of(read_response(sock)) == (413, "too_large")
    assert sent < LIMIT + 8 * 1024 * 1024, sent


def test_declared_length_over_the_limit_is_413_before_the_body(service: Service) -> None:
    with connect(service) as sock:
        sock.sendall(head("multipart/form-data; boundary=x", f"Content-Length: {10 * LIMIT}"))
        assert error_of(read_response(sock)) == (413, "too_large")


@pytest.mark.parametrize(
    "request_bytes, expected",
    [
        (b"GET /images/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", (414, "uri_too_long")),
        (b"GET /images/" + b"a" * 40_000, (414, "uri_too_long")),  # no end of line in sight
        (b"NOT A REQUEST LINE\r\n\r\n", (400, "bad_request")),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 10_000 + b"\r\n\r\n", (431, "headers_too_large")),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: m\r\n" * 200 + b"\r\n", (431, "headers_too_large")),  # > 100 fields
        (b"GET / HTTP/1.1\r\n" + b"X-Many: m\r\n" * 4000, (431, "headers_too_large")),  # no end in sight
        (b"POST /images HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: zstd, chunked\r\n\r\n", (501, "not_implemented")),
        (b"POST /images HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", (400, "bad_request")),
    ],
    ids=["long-uri", "endless-line", "malformed", "big-header", "many-headers", "endless-head", "coding", "chunk-size"],
)
def test_errors_the_server_answers_itself_are_json(
    service: Service, request_bytes: bytes, expected: tuple[int, str]
) -> None:
    with connect(service) as sock:
        sock.sendall(request_bytes)
        assert error_of(read_response(sock)) == expected


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` responses in a row on one connection, as (status, body), however they arrive: both answers to a
    pipelined pair may come in one read, of which `read_response` (one response) would keep only the first."""
    data, found = b"", []
    while len(found) < count:
        end = data.find(b"\r\n\r\n")
        declared = re.search(rb"(?im)^content-length:\s*(\d+)", data[:end]) if end >= 0 else None
        length = int(declared.group(1)) if declared else 0
        if end < 0 or len(data) < end + 4 + length:
            more = sock.recv(65536)
            if not more:
                raise ConnectionError(f"closed before a response: {data!r}")
            data += more
            continue
        found.append((int(data.split(b" ", 2)[1]), data[end + 4 : end + 4 + length]))
        data = data[end + 4 + length :]
    return found


def test_chunked_pipelined_and_expect_continue_uploads_still_work(service: Service) -> None:
    """What the server now does itself, before the application: de-chunking, 100-continue, keep-alive."""
    data = images.jpeg()
    body, content_type = multipart(data)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:1000], body[1000:])) + b"0\r\n\r\n"
    with connect(service) as sock:
        sock.sendall(head(content_type, "Transfer-Encoding: chunked") + chunked + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        (status, reply), (pipelined, _) = read_responses(sock, 2)
        assert status == 202, reply
        assert pipelined == 200  # the pipelined request, on the same connection
        sock.sendall(head(content_type, f"Content-Length: {len(body)}\r\nExpect: 100-continue"))
        assert read_response(sock)[0] == 100
        sock.sendall(body)
        assert read_response(sock)[0] == 202
    image_id = json.loads(reply)["id"]
    assert (service.data_dir / "originals" / image_id[:2] / image_id).read_bytes() == data


def send(svc: Service, content_type: str, body: bytes, path: str = "/images") -> tuple[int, dict[str, str], bytes]:
    with connect(svc) as sock:
        sock.sendall(head(content_type, f"Content-Length: {len(body)}", path) + body)
        return read_response(sock)


def test_a_malformed_multipart_body_is_400_and_stores_nothing(service: Service) -> None:
    before = stored(service)
    body, content_type = multipart(images.jpeg())
    unclosed = body[: body.rindex(b"\r\n--")]  # the whole length arrives, the closing delimiter never does
    assert error_of(send(service, content_type, unclosed)) == (400, "malformed_body")
    headless = body.replace(b"Content-Disposition", b"Content-Whatever", 1)
    assert error_of(send(service, content_type, headless)) == (400, "malformed_body")
    # The route decides, as before the body was split on arrival: an unknown path is still a 404.
    assert error_of(send(service, content_type, unclosed, "/nowhere")) == (404, "not_found")
    assert stored(service) == before


def test_a_bodiless_request_naming_a_multipart_type_is_answered_normally(service: Service) -> None:
    with connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_file_parts_split_on_arrival_are_removed_unless_accepted(service: Service) -> None:
    """Parts are written to staging files as they arrive, before any route runs: whatever the route does with
    them (nothing, for an unknown path; one of two file parts accepted), no staging file stays behind."""
    boundary = uuid.uuid4().hex
    part = 'Content-Disposition: form-data; name="{}"; filename="x.jpg"\r\n\r\n'
    body = b"".join(
        f"--{boundary}\r\n{part.format(name)}".encode() + images.jpeg() + b"\r\n" for name in ("file", "other")
    ) + f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--{boundary}--\r\n'.encode()
    content_type = f"multipart/form-data; boundary={boundary}"
    before = stored(service)
    assert error_of(send(service, content_type, body, "/nowhere")) == (404, "not_found")
    assert stored(service) == before
    status, _, reply = send(service, content_type, body)
    assert status == 202
    image_id = json.loads(reply)["id"]
    originals, staging, ids = stored(service)
    assert staging == before[1] and ids == [image_id, *before[2]]
    assert [p for p in originals if p.is_file()] == sorted([*(p for p in before[0] if p.is_file()), original(service, image_id)])
    assert original(service, image_id).read_bytes() == images.jpeg()


def original(svc: Service, image_id: str) -> Path:
    return svc.data_dir / "originals" / image_id[:2] / image_id
