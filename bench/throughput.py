"""Throughput benchmark: the whole service against the imaging library's own limit, in the same run.

    make bench-throughput     # or: .venv/bin/python bench/throughput.py [--images 48] [--skip-redis] [--only jpeg2]

For three generated photographs (12 MP JPEG q90, 2 MP JPEG q90, 12 MP PNG) it measures:
- the library limit: images per second of the best of Pillow (draft + reduce + LANCZOS) and
  `pyvips.Image.thumbnail`, 256 px JPEG q85 out, in as many processes as there are cores, files already in memory;
- apercu: images per second from `POST /images` to `success` seen with `GET /images/<id>?wait=30`, 8 clients,
  on the embedded default (`apercu serve`) and on PostgreSQL + Redis (`apercu web` + `apercu worker`);
- CPU per image by process, read from /proc (utime + stime) before and after each service run: the web
  processes, the worker's main process, and the worker's children (imaging processes).
It prints a table and never fails on speed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from live import Service, descendants  # noqa: E402
from service import reachable  # noqa: E402
from thumbnails import photo  # noqa: E402

CLIENTS = 8
SIZE = 256
TICK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))


def inputs(only: str | None) -> dict[str, bytes]:
    makers = {
        "jpeg12": ((4000, 3000), "JPEG", {"quality": 90}),
        "png12": ((4000, 3000), "PNG", {}),
        "jpeg2": ((1633, 1225), "JPEG", {"quality": 90}),
    }
    found = {}
    for name, (size, fmt, options) in makers.items():
        if only and only != name:
            continue
        out = io.BytesIO()
        photo(size).save(out, fmt, **options)
        found[name] = out.getvalue()
    return found


# The library limit.

def pillow_thumbnail(data: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (SIZE, SIZE))  # JPEG: DCT scaling to the smallest size still >= SIZE
        img = img.convert("RGB")
        img.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0)  # reduce(), then LANCZOS
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85)
    return len(out.getvalue())


def vips_thumbnail(data: bytes) -> int:
    import pyvips

    return len(pyvips.Image.thumbnail_buffer(data, SIZE).jpegsave_buffer(Q=85))


def library_run(engine: str, path: str, count: int) -> tuple[float, float]:
    """One process's share: `count` thumbnails of the file on disk; returns its (start, end) wall times."""
    work = {"pillow": pillow_thumbnail, "vips": vips_thumbnail}[engine]
    work(Path(path).read_bytes())  # warm up
    started = time.time()
    for _ in range(count):
        work(Path(path).read_bytes())
    return started, time.time()


def library_rate(path: Path, count: int) -> float:
    """Images per second of the faster library, `CORES` processes each working through its share."""
    best = 0.0
    share = max(1, count // CORES)
    with ProcessPoolExecutor(CORES) as pool:
        for engine in ("pillow", "vips"):
            spans = list(pool.map(library_run, [engine] * CORES, [str(path)] * CORES, [share] * CORES))
            best = max(best, share * CORES / (max(end for _, end in spans) - min(start for start, _ in spans)))
    return best


# The service.

def cpu_by_role(roots: list[int]) -> dict[str, float]:
    """CPU seconds used so far by the service's processes, grouped as web / worker main / worker children."""
    totals = {"web": 0.0, "worker main": 0.0, "worker children": 0.0}
    for root in roots:
        tree = [(root, 0, _cmdline(root)), *descendants(root)]
        worker_mains = {pid for pid, _, cmd in tree if cmd.strip().endswith("-m apercu worker")}
        under_worker = {pid for main in worker_mains for pid, _, _ in descendants(main)}
        web = {pid for pid, _, cmd in tree if cmd.strip().endswith("-m apercu web")}
        under_web = web | {pid for main in web for pid, _, _ in descendants(main)}
        for pid, _, _ in tree:
            role = ("worker main" if pid in worker_mains else "worker children" if pid in under_worker
                    else "web" if pid in under_web else None)
            if role:
                totals[role] += _cpu_seconds(pid)
    return totals


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def one_image(svc: Service, data: bytes) -> str:
    image_id = svc.upload(data, "bench").json()["id"]
    while True:
        body = svc.get(f"/images/{image_id}?wait=30").json()
        if body["status"] in ("success", "failure"):
            return str(body["status"])


def service_run(svc: Service, data: bytes, count: int) -> tuple[float, dict[str, float]]:
    """Images per second end to end, and CPU ms per image by role."""
    roots = [p.pid for p in svc.processes]
    with ThreadPoolExecutor(CLIENTS) as clients:
        list(clients.map(lambda _: one_image(svc, data), range(CLIENTS)))  # warm up: imaging processes, pools
        before = cpu_by_role(roots)
        started = time.perf_counter()
        statuses = list(clients.map(lambda _: one_image(svc, data), range(count)))
        elapsed = time.perf_counter() - started
    after = cpu_by_role(roots)
    assert statuses == ["success"] * count, statuses
    return count / elapsed, {role: (after[role] - before[role]) * 1000 / count for role in after}


def start(backend: str, folder: Path) -> Service:
    if backend == "embedded":
        return Service(folder / "embedded").start("serve")
    import uuid

    import sqlalchemy as sa

    schema = f"apercu_bench_{uuid.uuid4().hex[:8]}"
    with sa.create_engine("postgresql+psycopg://127.0.0.1:5432/test").begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    env = {"APERCU_DATABASE_URL": f"postgresql://127.0.0.1:5432/test?options=-csearch_path%3D{schema}",
           "APERCU_BROKER_URL": "redis://127.0.0.1:6379/0"}
    return Service(folder / "pg", env).start("web", "worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48, help="images per measured run")
    parser.add_argument("--only", help="one input: jpeg12, png12 or jpeg2")
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args()
    servers_up = reachable(5432) and reachable(6379)
    backends = ["embedded"] + (["postgres+redis"] if servers_up and not args.skip_redis else [])
    data = inputs(args.only)
    env_note = {"APERCU_WORKER_CONCURRENCY": str(CORES), "APERCU_WEB_WORKERS": "2", "APERCU_LOG_LEVEL": "WARNING"}
    os.environ.update(env_note)
    print(f"{CORES} cores, {CLIENTS} clients, {args.images} images per run, 256 px JPEG q85\n")
    rows: list[tuple[Any, ...]] = []
    cpu_rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory(prefix="apbench-") as tmp:
        limits = {}
        for name, blob in data.items():
            (Path(tmp) / name).write_bytes(blob)
            limits[name] = library_rate(Path(tmp) / name, args.images)
        for backend in backends:
            svc = start(backend, Path(tmp))
            try:
                for name, blob in data.items():
                    rate, cpu = service_run(svc, blob, args.images)
                    rows.append((name, len(blob) / 1e6, backend, limits[name], rate, rate / limits[name]))
                    cpu_rows.append((name, backend, *cpu.values(), sum(cpu.values())))
            finally:
                svc.stop()
    print("| input | MB | backend | library limit img/s | apercu img/s | apercu / limit |")
    print("|---|---|---|---|---|---|")
    for name, mb, backend, limit, rate, ratio in rows:
        print(f"| {name} | {mb:.2f} | {backend} | {limit:.1f} | {rate:.1f} | {ratio:.2f} |")
    print("\nCPU ms per image, by process")
    print("| input | backend | web | worker main | worker children | total |")
    print("|---|---|---|---|---|---|")
    for name, backend, web, main_, children, total in cpu_rows:
        print(f"| {name} | {backend} | {web:.1f} | {main_:.1f} | {children:.1f} | {total:.1f} |")


if __name__ == "__main__":
    main()
