"""Does a maintained WSGI server hold apercu's bar for slow clients? One table, one row per server.

The bar (issue 7, kept by `apercu.api.server`, whose docstring has this table): with 200 uploads stalled
mid-body (head and half the body sent, then nothing), `GET /` and a normal upload still answer within 1 s; a
refusal decided from the head (401 without an API key, 413 for a Content-Length over the limit, 503 while the
queue is full) is answered before a byte of the body is sent; a request line that is not one is answered with
the API's JSON error; and a stalled upload is eventually answered (408) and closed, so stalled sockets do not
pile up for ever.

Each server runs the real app (`apercu.api.create_app`) in one process on loopback, on a fresh data directory
with the embedded broker, API keys on and APERCU_MAX_PENDING=1. Candidates whose package is not installed are
skipped (`pip install gevent uvicorn a2wsgi granian waitress` into the venv to run them all). Run:

    .venv/bin/python bench/servers.py [--stalled 200] [--only ours,gevent]

It prints a table and never fails on speed; a cell is a status and seconds, or "-" when no answer came within
the wait (the server was still waiting for the body, or for a thread).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIMIT = 1024 * 1024
TIMEOUT = 3  # APERCU_REQUEST_TIMEOUT, for the servers that read it
KEY = "bench-key"
WAIT = 3.0  # seconds a probe waits for an answer
CLOSE_WAIT = 15.0  # seconds given to the server to answer or close the stalled uploads


def asgi_app() -> Any:
    """The app for uvicorn, as ASGI through a2wsgi (`uvicorn --factory servers:asgi_app`)."""
    from a2wsgi import WSGIMiddleware

    from apercu.api import create_app

    return WSGIMiddleware(create_app(), workers=16)


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass(frozen=True)
class Candidate:
    name: str
    needs: tuple[str, ...]  # importable modules
    command: Callable[[int], list[str]]


CANDIDATES = (
    Candidate("ours (gthread + event loop)", (), lambda port: [sys.executable, "-m", "apercu", "web"]),
    Candidate(
        "gunicorn gevent", ("gevent",),
        lambda port: [_bin("gunicorn"), "-k", "gevent", "-w", "1", "--worker-connections", "1000",
                      "-b", f"127.0.0.1:{port}", "apercu.api:create_app()"],
    ),
    Candidate(
        "uvicorn + a2wsgi", ("uvicorn", "a2wsgi"),
        lambda port: [_bin("uvicorn"), "--factory", "--app-dir", str(Path(__file__).parent), "--port", str(port),
                      "--log-level", "warning", "servers:asgi_app"],
    ),
    Candidate(
        "granian (wsgi)", ("granian",),
        lambda port: [_bin("granian"), "--interface", "wsgi", "--factory", "--port", str(port), "--workers", "1",
                      "--blocking-threads", "16", "apercu.api:create_app"],
    ),
    Candidate(
        "waitress", ("waitress",),
        lambda port: [_bin("waitress-serve"), "--listen", f"127.0.0.1:{port}", "--threads", "16",
                      "--connection-limit", "1000", "--call", "apercu.api:create_app"],
    ),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'.encode()
        + data + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def head(method: str, path: str, extra: str = "", key: bool = True) -> bytes:
    auth = f"X-API-Key: {KEY}\r\n" if key else ""
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}{extra}\r\n".encode()


def upload_head(body_length: int, content_type: str, key: bool = True) -> bytes:
    return head("POST", "/images", f"Content-Type: {content_type}\r\nContent-Length: {body_length}\r\n", key)


def status_of(sock: socket.socket, wait: float) -> int | None:
    """The status of the answer on `sock` within `wait` seconds, None if none came (or the socket closed)."""
    sock.settimeout(wait)
    data = b""
    try:
        while b"\r\n" not in data:
            piece = sock.recv(4096)
            if not piece:
                return None
            data += piece
    except OSError:
        return None
    return int(data.split(b" ", 2)[1])


def probe(port: int, request: bytes) -> tuple[int | None, float]:
    """Send `request` (a head, perhaps a body) on a new connection: the answer's status and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        return status_of(sock, WAIT), time.monotonic() - started


def malformed(port: int) -> str:
    """The answer to a request line that is not one: its status and whether it is the API's JSON."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"NOT A REQUEST LINE\r\n\r\n")
        sock.settimeout(WAIT)
        data = b""
        try:
            while b"\r\n\r\n" not in data and (piece := sock.recv(4096)):
                data += piece
        except OSError:
            pass
    if not data:
        return "-"
    json = b"application/json" in data.split(b"\r\n\r\n")[0].lower()
    return f"{data.split(b' ', 2)[1].decode()} {'json' if json else 'not json'}"


def cell(result: tuple[int | None, float]) -> str:
    status, seconds = result
    return "-" if status is None else f"{status} {seconds:.2f}s"


def start(candidate: Candidate, port: int, folder: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "APERCU_DATA_DIR": str(folder / "data"), "APERCU_PORT": str(port),
        "APERCU_WEB_WORKERS": "1", "APERCU_LOG_LEVEL": "WARNING", "APERCU_API_KEYS": KEY,
        "APERCU_MAX_PENDING": "1", "APERCU_MAX_UPLOAD_BYTES": str(LIMIT), "APERCU_REQUEST_TIMEOUT": str(TIMEOUT),
        "APERCU_REQUEST_MIN_RATE": str(1024**3), "APERCU_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
    }
    (folder / "data").mkdir()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the child writes to it for its whole life
    process = subprocess.Popen(candidate.command(port), env=env, stdout=log, stderr=log, cwd=folder,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if probe(port, head("GET", "/healthz"))[0] == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{candidate.name} did not start:\n{(folder / 'server.log').read_text()[-2000:]}")


def measure(candidate: Candidate, stalled_count: int) -> dict[str, str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        process = start(candidate, port, Path(tmp))
        try:
            return _measure(port, stalled_count)
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _measure(port: int, stalled_count: int) -> dict[str, str]:
    body, content_type = multipart(b"\xff\xd8\xff" + bytes(100_000))
    image, image_type = multipart(jpeg())
    stalled: list[socket.socket] = []
    row: dict[str, str] = {}
    try:
        for _ in range(stalled_count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(upload_head(len(body), content_type) + body[: len(body) // 2])
            stalled.append(sock)
        time.sleep(0.5)
        stalled_at = time.monotonic()
        row["GET /"] = cell(probe(port, head("GET", "/")))
        row["upload"] = cell(probe(port, upload_head(len(image), image_type) + image))
        row["401 no key"] = cell(probe(port, upload_head(len(image), image_type, key=False)))
        row["413 length"] = cell(probe(port, upload_head(10 * LIMIT, content_type)))
        probe(port, upload_head(len(image), image_type) + image)  # a second pending image: over the limit of 1
        time.sleep(1.1)  # backpressure's reading is cached for a second
        row["503 busy"] = cell(probe(port, upload_head(len(image), image_type)))
        row["bad line"] = malformed(port)
        row["stalled closed"] = closed_within(stalled, stalled_at + CLOSE_WAIT)
    finally:
        for sock in stalled:
            sock.close()
    return row


def closed_within(stalled: list[socket.socket], deadline: float) -> str:
    """How many stalled uploads the server answered or closed before the deadline, and with what."""
    statuses: dict[str, int] = {}
    for sock in stalled:
        status = status_of(sock, max(0.01, deadline - time.monotonic()))
        label = "open" if status is None and _open(sock) else str(status or "closed")
        statuses[label] = statuses.get(label, 0) + 1
    return ", ".join(f"{count}x{label}" for label, count in sorted(statuses.items()))


def _open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stalled", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated name prefixes (e.g. ours,gevent)")
    args = parser.parse_args()
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    columns = ["GET /", "upload", "401 no key", "413 length", "503 busy", "bad line", "stalled closed"]
    print(f"{args.stalled} stalled uploads; a cell is status and seconds, '-' = no answer within {WAIT:.0f}s; "
          f"'stalled closed' = what the stalled uploads got within {CLOSE_WAIT:.0f}s")
    print(" | ".join(["server", *columns]))
    for candidate in CANDIDATES:
        if wanted and not any(candidate.name.startswith(w) for w in wanted):
            continue
        missing = [m for m in candidate.needs if importlib.util.find_spec(m) is None]
        if missing:
            print(f"{candidate.name} | skipped: {', '.join(missing)} not installed")
            continue
        try:
            row = measure(candidate, args.stalled)
        except (RuntimeError, OSError) as exc:
            print(f"{candidate.name} | failed: {str(exc).splitlines()[0]}")
            continue
        print(" | ".join([candidate.name, *(row[c] for c in columns)]), flush=True)


if __name__ == "__main__":
    main()
