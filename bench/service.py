"""Service benchmark: processing latency and upload throughput, each next to a baseline from the same run.

    make bench                       # or: .venv/bin/python bench/service.py [--runs 20] [--skip-redis]

Measures, on the embedded default and on PostgreSQL + Redis (when reachable on 127.0.0.1):
- 202 -> success for a 12 MP JPEG (median of --runs), against the bare in-process processing time of the same
  file (the ratio is what queueing, storage and the catalog add);
- broker pick-up latency with a tiny image, for several embedded-broker poll intervals;
- uploads per second of a ~100 KB JPEG with 8 concurrent clients (a bounded run on 127.0.0.1), against
  GET /healthz with the same clients (the ratio is the cost of an upload over a bare request).
It prints numbers and never fails on speed.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from live import Service  # noqa: E402
from thumbnails import photo  # noqa: E402

from apercu.imaging.analyse import analyse  # noqa: E402

CLIENTS = 8


def photo_jpeg(size: tuple[int, int], quality: int = 88) -> bytes:
    out = io.BytesIO()
    photo(size).save(out, "JPEG", quality=quality)
    return out.getvalue()


def server_seconds(body: dict[str, Any]) -> float:
    parse = lambda s: datetime.fromisoformat(s.rstrip("Z"))  # noqa: E731
    return (parse(body["processed_at"]) - parse(body["uploaded_at"])).total_seconds()


def latency(svc: Service, data: bytes, runs: int) -> tuple[float, float]:
    """Medians of (server: uploaded_at -> processed_at, client: 202 received -> success observed)."""
    server, client = [], []
    for _ in range(runs):
        image_id = svc.upload(data, "bench.jpg").json()["id"]
        accepted = time.perf_counter()
        body = svc.wait_final(image_id)
        client.append(time.perf_counter() - accepted)
        assert body["status"] == "success", body
        server.append(server_seconds(body))
        svc.request("DELETE", f"/images/{image_id}")
    return statistics.median(server), statistics.median(client)


def rate(call: Callable[[], int], total: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p95 ms) of `total` calls from CLIENTS threads, stopping early after `seconds`."""
    deadline = time.perf_counter() + seconds
    timings: list[float] = []

    def one(_: int) -> None:
        if time.perf_counter() > deadline:
            return
        start = time.perf_counter()
        status = call()
        assert status in (200, 202), status
        timings.append(time.perf_counter() - start)

    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - began
    timings.sort()
    return len(timings) / elapsed, timings[len(timings) // 2] * 1000, timings[int(len(timings) * 0.95)] * 1000


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def postgres_schema_url() -> tuple[str, Callable[[], None]]:
    import uuid

    import sqlalchemy as sa

    schema = f"apercu_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("postgresql+psycopg://127.0.0.1:5432/test")
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))

    return f"postgresql://127.0.0.1:5432/test?options=-csearch_path%3D{schema}", drop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--uploads", type=int, default=400)
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args()

    big, small, tiny = photo_jpeg((4000, 3000)), photo_jpeg((640, 480), quality=90), photo_jpeg((64, 48))
    bare = statistics.median(_timed(lambda: analyse(big)) for _ in range(5))
    print(f"12 MP JPEG: {len(big) / 1e6:.1f} MB; upload JPEG: {len(small) / 1e3:.0f} KB; {CLIENTS} clients")
    print(f"bare in-process processing of the 12 MP JPEG (median of 5): {bare * 1000:.0f} ms\n")

    backends: list[tuple[str, dict[str, str], tuple[str, ...]]] = [("embedded", {}, ("serve",))]
    cleanup: list[Callable[[], None]] = []
    if not args.skip_redis and reachable(5432) and reachable(6379):
        url, drop = postgres_schema_url()
        cleanup.append(drop)
        env = {"APERCU_DATABASE_URL": url, "APERCU_BROKER_URL": "redis://127.0.0.1:6379/0"}
        backends.append(("postgres+redis", env, ("web", "worker")))

    print(f"{'backend':<16}{'202->success server':>22}{'client':>10}{'vs bare':>9}{'pick-up':>10}"
          f"{'uploads/s':>11}{'p50 ms':>8}{'p95 ms':>8}{'healthz/s':>11}{'ratio':>7}")
    try:
        for name, env, roles in backends:
            with tempfile.TemporaryDirectory() as tmp:
                svc = Service(Path(tmp) / "data", {**env, "APERCU_LOG_LEVEL": "ERROR"}).start(*roles)
                try:
                    server, client = latency(svc, big, args.runs)
                    pickup, _ = latency(svc, tiny, args.runs)
                    up = rate(lambda svc=svc: svc.upload(small, "u.jpg").status, args.uploads, 30)
                    health = rate(lambda svc=svc: svc.get("/healthz").status, args.uploads, 30)
                finally:
                    svc.stop()
            print(f"{name:<16}{server * 1000:>19.0f} ms{client * 1000:>7.0f} ms{server / bare:>8.2f}x"
                  f"{pickup * 1000:>7.0f} ms{up[0]:>11.1f}{up[1]:>8.0f}{up[2]:>8.0f}{health[0]:>11.1f}"
                  f"{up[0] / health[0]:>7.2f}")
    finally:
        for drop in cleanup:
            drop()

    print("\nembedded broker pick-up latency (tiny image, server-side median) by poll interval:")
    for interval in ("1.0", "0.2", "0.05", "0.02"):
        with tempfile.TemporaryDirectory() as tmp:
            svc = Service(Path(tmp) / "data", {"APERCU_BROKER_POLL_INTERVAL": interval, "APERCU_LOG_LEVEL": "ERROR"})
            svc.start("serve")
            try:
                pickup, _ = latency(svc, tiny, args.runs)
            finally:
                svc.stop()
        print(f"  poll {interval:>5} s: {pickup * 1000:6.0f} ms")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
