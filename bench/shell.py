"""The shell around the image: the CPU that apercu's own Python spends per request, per process, next to the
issue's budgets (web <= 2 ms fixed per upload + 1 ms per MB, `?wait` <= 0.5 ms, the worker's main process
<= 1.5 ms per image).

    .venv/bin/python bench/shell.py [--uploads 300] [--images 120] [--waits 400] [--profile DIR]

CPU is read from /proc/<pid>/stat (utime + stime, bench/peers.py) before and after each run, by process: the web
processes (`apercu web` and its forks), the worker's main process alone (`apercu worker`, not its imaging
children), the imaging children. On a machine shared with other work, CPU per request moves far less than a
rate does; to compare two checkouts, run this file with each one's interpreter, alternately, in the same
minutes (`/path/to/checkout/.venv/bin/python bench/shell.py`): apercu is started with the interpreter that
runs the bench. The load is bench/load.py's (8 clients, one keep-alive connection each).

- upload: `apercu web` alone on the embedded default (no worker: uploads only queue), `--uploads` POST /images
  of a small JPEG (~200 KB) then of a ~4 MB one (12 MP q90); the web's CPU per upload of each, and the line
  through the two: fixed ms per upload and ms per MB;
- wait: `apercu serve`, `--images` images end to end by the closed loop (POST, then GET ?wait=30 until settled):
  the web's CPU per image, less the small upload's, per `?wait` request (how many were sent is counted); the
  worker's main process and the imaging children per image; then `--waits` GET ?wait=30 of images already
  settled (the answer at once: what a `?wait` costs beside the waiting);
- `--profile DIR`: py-spy records (`--gil`: only what holds the GIL, Python at work rather than asleep in
  poll(); `--format speedscope`, `--nonblocking`) the first web process during the large
  uploads and the worker's main process and the first web process during the closed loop, and that web process
  during the settled ?wait requests, into DIR.
It prints a table and never fails on speed; it asserts every image ends in success.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from live import Service, descendants, role_process  # noqa: E402
from load import FINAL, Clients, Connection, Upload, post  # noqa: E402
from peers import ProcessTree, cpu_seconds  # noqa: E402
from thumbnails import photo  # noqa: E402

CLIENTS = 8
CORES = len(os.sched_getaffinity(0))
ENV = {"APERCU_WORKER_CONCURRENCY": str(CORES), "APERCU_WEB_WORKERS": "2", "APERCU_LOG_LEVEL": "WARNING"}
SMALL = ((870, 653), 90)  # ~200 KB
LARGE = ((4000, 3000), 90)  # 12 MP, ~4 MB
BUDGET = {"fixed": 2.0, "per MB": 1.0, "wait": 0.5, "worker main": 1.5}


def jpeg(size: tuple[int, int], quality: int) -> bytes:
    out = io.BytesIO()
    photo(size).save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass
class Spent:
    """CPU seconds so far of the web processes, the worker's main process and the imaging children."""

    web: float
    worker_main: float
    imaging: float

    @classmethod
    def of(cls, svc: Service) -> Spent:
        root = svc.processes[0].pid
        roles = ProcessTree(root).roles()
        main = _worker_main(root)
        main_cpu = 0.0 if main is None else cpu_seconds(main)
        return cls(roles.get("web", 0.0), main_cpu, roles.get("worker", 0.0) - main_cpu + roles.get("imaging", 0.0))

    def per(self, before: Spent, count: int) -> Spent:
        """Milliseconds per item between `before` and this."""
        return Spent(*((a - b) * 1000 / count for a, b in zip(
            (self.web, self.worker_main, self.imaging), (before.web, before.worker_main, before.imaging),
            strict=True)))


def _worker_main(root: int) -> int | None:
    try:
        return role_process(root, "worker")
    except StopIteration:
        return None


def _web(root: int) -> int:
    """The first web process that serves requests (a fork of `apercu web`, or `apercu web` itself)."""
    webs = [pid for pid, _, cmd in [(root, 0, ""), *descendants(root)] if pid == root or "apercu web" in cmd]
    return webs[-1]


@contextmanager
def profiled(pid: int | None, out: Path | None) -> Iterator[None]:
    """py-spy recording `pid` while the block runs, into `out` (nothing when either is None)."""
    if pid is None or out is None:
        yield
        return
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "--nonblocking", "--format",
                            "speedscope", "--rate", "250", "-o", str(out), "--pid", str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
        spy.wait(timeout=60)


def measured(svc: Service, count: int, job: Callable[[Connection], object]) -> Spent:
    clients = Clients(svc.port, CLIENTS)
    try:
        clients.run(CLIENTS * 2, job)  # warm up
        before = Spent.of(svc)
        clients.run(count, job)
        return Spent.of(svc).per(before, count)
    finally:
        clients.close()


def uploads(folder: Path, count: int, small: Upload, large: Upload, profile: Path | None) -> tuple[float, float]:
    """Web CPU ms per upload of the small and of the large file, on `apercu web` alone."""
    svc = Service(folder / "web", ENV).start("web")
    try:
        small_ms = measured(svc, count, lambda conn: post(conn, small)).web
        spy = _web(svc.processes[0].pid) if profile else None
        with profiled(spy, profile / "web-upload.json" if profile else None):
            large_ms = measured(svc, max(CLIENTS, count // 4), lambda conn: post(conn, large)).web
        return small_ms, large_ms
    finally:
        svc.stop()


def waits(folder: Path, images: int, wait_count: int, small: Upload,
          profile: Path | None) -> tuple[Spent, float, float]:
    """(CPU ms per image end to end by process, ?wait requests per image, web CPU ms per settled ?wait)."""
    svc = Service(folder / "serve", ENV).start("serve")
    gets = [0]
    settled: list[str] = []

    def one(conn: Connection) -> str:
        image_id = post(conn, small)
        while True:
            gets[0] += 1
            _, body = conn.request("GET", f"/images/{image_id}?wait=30")
            status = str(json.loads(body)["status"])
            if status in FINAL:
                assert status == "success", body[:300]
                settled.append(image_id)
                return status

    def again(conn: Connection) -> int:
        status, _ = conn.request("GET", f"/images/{settled[0]}?wait=30")
        assert status == 200
        return status

    try:
        main = _worker_main(svc.processes[0].pid) if profile else None
        web = _web(svc.processes[0].pid) if profile else None
        with profiled(main, profile / "worker-main.json" if profile else None), \
                profiled(web, profile / "web-loop.json" if profile else None):
            gets[0] = 0
            loop = measured(svc, images, one)
            per_image_gets = gets[0] / (images + CLIENTS * 2)
        with profiled(web, profile / "web-settled.json" if profile else None):
            settled_ms = measured(svc, wait_count, again).web
        return loop, per_image_gets, settled_ms
    finally:
        svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=300, help="small uploads per run (large: a quarter)")
    parser.add_argument("--images", type=int, default=120, help="images end to end")
    parser.add_argument("--waits", type=int, default=400, help="?wait requests on a settled image")
    parser.add_argument("--profile", type=Path, help="folder for py-spy's speedscope files")
    parser.add_argument("--section", choices=["upload", "wait", "all"], default="all")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    small_bytes, large_bytes = jpeg(*SMALL), jpeg(*LARGE)
    small, large = Upload.of(small_bytes), Upload.of(large_bytes)
    small_mb, large_mb = len(small_bytes) / 1e6, len(large_bytes) / 1e6
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="apbench-shell-") as tmp:
        if args.section in ("upload", "all"):
            small_ms, large_ms = uploads(Path(tmp), args.uploads, small, large, args.profile)
            per_mb = (large_ms - small_ms) / (large_mb - small_mb)
            rows += [(f"web per upload, {small_mb:.2f} MB", small_ms, None),
                     (f"web per upload, {large_mb:.2f} MB", large_ms, None),
                     ("web per upload, fixed", small_ms - per_mb * small_mb, BUDGET["fixed"]),
                     ("web per upload, per MB", per_mb, BUDGET["per MB"])]
        if args.section in ("wait", "all"):
            loop, gets, settled_ms = waits(Path(tmp), args.images, args.waits, small, args.profile)
            if args.section == "all":  # the closed loop's web CPU, less its uploads', per ?wait request
                rows.append((f"web per ?wait in the closed loop ({gets:.2f} per image)",
                             (loop.web - rows[0][1]) / gets, BUDGET["wait"]))
            rows += [("web per ?wait on a settled image", settled_ms, BUDGET["wait"]),
                     ("web per image end to end (upload + waits)", loop.web, None),
                     ("worker main process per image", loop.worker_main, BUDGET["worker main"]),
                     ("imaging children per image", loop.imaging, None)]
    print(f"{sys.executable}: {CORES} cores, {CLIENTS} clients; uploads {small_mb:.2f} MB and {large_mb:.2f} MB")
    print("| CPU ms | measured | budget |")
    print("|---|---|---|")
    for name, value, budget in rows:
        print(f"| {name} | {value:.2f} | {'-' if budget is None else f'<= {budget}'} |")


if __name__ == "__main__":
    main()
