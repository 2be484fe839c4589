"""What the rate limiter costs a request: `GET /images` (an empty list: one catalog query) through the Flask test
client, without limits and with `APERCU_RATE_LIMIT` set (high enough never to refuse), counted in each store.

    .venv/bin/python bench/rate_limit.py [--requests 3000] [--redis URL]

For each store: this process's CPU time per request (what a web process spends) and the wall time per request
(which includes the store's round trip, and, for PostgreSQL and Redis, their own work in their own processes),
without and with the limiter, best of three runs each. PostgreSQL (127.0.0.1:5432, database `test`) runs in a
schema of its own, dropped after.
Prints numbers; never fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service import postgres_schema_url  # noqa: E402

from apercu.api import create_app  # noqa: E402
from apercu.config import Settings  # noqa: E402

NEVER = 10**9  # requests per second: counted, never refused


def per_request(settings: Settings, requests: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per request, best of three runs after a warm-up."""
    client = create_app(settings).test_client()
    best = (float("inf"), float("inf"))
    for _ in range(4):  # the first warms up (connections, the catalog's pages)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            answer = client.get("/images")
            assert answer.status_code == 200, answer.data
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best = min(best, (cpu / requests * 1e6, wall / requests * 1e6))
    return best


def measure(name: str, settings: Settings, requests: int) -> None:
    off = per_request(settings, requests)
    on = per_request(settings.with_overrides(rate_limit=NEVER), requests)
    print(f"{name:<12} {off[0]:8.0f} {on[0]:8.0f} {on[0] - off[0]:+8.0f}   "
          f"{off[1]:8.0f} {on[1]:8.0f} {on[1] - off[1]:+8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print(f"GET /images, µs per request ({args.requests} requests, best of 3)")
    print(f"{'store':<12} {'cpu off':>8} {'cpu on':>8} {'cost':>8}   {'wall off':>8} {'wall on':>8} {'cost':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        base: dict[str, Any] = {"queue": f"bench-{uuid.uuid4().hex[:8]}", "log_level": "WARNING"}
        measure("sqlite", Settings(data_dir=Path(tmp) / "sqlite", **base), args.requests)
        url, drop = postgres_schema_url()
        try:
            measure("postgresql", Settings(data_dir=Path(tmp) / "pg", database_url=url, **base), args.requests)
        finally:
            drop()
        measure("redis", Settings(data_dir=Path(tmp) / "redis", broker_url=args.redis, **base), args.requests)


if __name__ == "__main__":
    main()
