"""A lean load generator for the benchmarks, and the bare endpoint apercu's uploads are compared with.

On a 2-core machine the client shares the cores with the service it measures, so whatever it spends is taken
from the service. Here each client thread keeps one HTTP/1.1 keep-alive connection (no connect per request),
every upload sends the same multipart bytes encoded once (no per-request encoding), and the threads' own CPU
is measured so that the tables can show what the client still took.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import resource
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
FINAL = ("success", "failure")
# What a keep-alive connection the server closed while it sat idle looks like on the next request.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Upload:
    """A multipart/form-data body with one `file` field, encoded once and sent as is on every upload."""

    body: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, data: bytes, filename: str = "bench.jpg") -> Upload:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body = head + data + f"\r\n--{boundary}--\r\n".encode()
        return cls(body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


class Connection:
    """One persistent HTTP/1.1 connection to 127.0.0.1:port, reopened when the server has closed it."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body). A reused connection that turns out closed is reopened and the request sent again:
        the server closes only idle connections, so the first try never reached the application."""
        reused = self.conn is not None
        try:
            return self._send(method, path, body, headers)
        except STALE:
            self.close()
            if not reused:
                raise
        return self._send(method, path, body, headers)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return response.status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# Jobs: what one client does for one item of a run.

def post(conn: Connection, upload: Upload) -> str:
    """POST /images; the new image's id (a 202 is the only acceptable answer)."""
    status, body = conn.request("POST", "/images", upload.body, upload.headers)
    if status != 202:
        raise AssertionError(f"upload answered {status}: {body[:300]!r}")
    return str(json.loads(body)["id"])


def wait_final(conn: Connection, image_id: str) -> str:
    """The image's final status, read with long-polling GETs (?wait=30) so the client spends nothing polling."""
    while True:
        _, body = conn.request("GET", f"/images/{image_id}?wait=30")
        status = str(json.loads(body)["status"])
        if status in FINAL:
            return status


def process(conn: Connection, upload: Upload) -> str:
    """Upload and wait until processed: one image end to end."""
    return wait_final(conn, post(conn, upload))


def latencies(conn: Connection, upload: Upload, runs: int, pause: float) -> list[float]:
    """Seconds from the 202 received to `success` seen, one image at a time with a pause between, so that each
    one finds the service idle. The pause varies (pause +- 50 %, seeded): a fixed one can lock in step with the
    service's polling and report its best or worst case every time."""
    found = []
    rng = random.Random(runs)
    for _ in range(runs):
        image_id = post(conn, upload)
        accepted = time.perf_counter()
        status = wait_final(conn, image_id)
        found.append(time.perf_counter() - accepted)
        assert status == "success", (image_id, status)
        time.sleep(pause * rng.uniform(0.5, 1.5))
    return found


# Runs: many jobs from many threads.

@dataclass
class Outcome(Generic[T]):
    results: list[T]
    seconds: float  # wall time of the run
    client_cpu: float  # CPU seconds of the client threads, user + system


class Clients:
    """`n` client threads, each with its own connection, kept open from one run to the next."""

    def __init__(self, port: int, n: int) -> None:
        self.connections = [Connection(port) for _ in range(n)]

    def run(self, count: int, job: Callable[[Connection], T]) -> Outcome[T]:
        """`count` jobs, each thread taking the next until none is left (a busy thread does not hold back the
        others); a job's failure is raised here once every thread has stopped."""
        tickets = itertools.count()  # next() on it is atomic under the GIL
        results: list[Any] = [None] * count
        cpu = [0.0] * len(self.connections)
        errors: list[BaseException] = []

        def client(slot: int, conn: Connection) -> None:
            started = _thread_cpu()
            try:
                while (index := next(tickets)) < count and not errors:
                    results[index] = job(conn)
            except Exception as exc:  # noqa: BLE001 - handed over to the main thread, raised there
                errors.append(exc)
            finally:
                cpu[slot] = _thread_cpu() - started

        threads = [threading.Thread(target=client, args=pair) for pair in enumerate(self.connections)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        if errors:
            raise errors[0]
        return Outcome(results, elapsed, sum(cpu))

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def _thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def bare_app() -> Any:
    """The floor for an upload: Flask under gunicorn reading the whole body and answering 202 JSON, nothing more.
    Run as `gunicorn --chdir bench 'load:bare_app()'`."""
    from flask import Flask, request

    app = Flask("bare")

    @app.post("/images")
    def upload() -> tuple[dict[str, str], int]:
        while request.stream.read(65536):
            pass
        return {"id": "0", "status": "pending"}, 202

    return app
