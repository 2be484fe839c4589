"""Renditions benchmark, measured the way imgproxy's image-servers-benchmark measures its peers: apercu's
rendition URLs next to thumbor 7, in the same run, on the same photos and options.

    make bench-renditions     # or: .venv/bin/python bench/renditions.py [--requests 40] [--warm 200]
                              #     [--formats jpg,png,webp,avif] [--skip-apercu] [--skip-thumbor]

What is asked (both servers, loopback only): fit within 512x512, as JPEG q80, PNG, WebP q75 and AVIF q65, by 2
concurrent clients (bench/load.py: one keep-alive connection each), of photographs of about 2 MP (generated,
1800x1200 JPEG q90, and the corpus's orientation/Landscape_1.jpg when ../shared/corpus or $APERCU_CORPUS is
there, read from a temporary folder, never copied into the project). Each answer is checked: status 200 and the
format's magic bytes. For each format, in neighbouring minutes of this shared machine:

- thumbor: 7.7.7 from PyPI with pillow-avif-plugin (for AVIF), in a virtualenv of its own that this bench makes
  once (bench/.venv-thumbor, git-ignored), started with `--processes 2`, the file loader, and otherwise its
  defaults (as imgproxy's benchmark runs every peer): `/unsafe/fit-in/512x512/filters:format(webp):quality(75)/
  <file>`. thumbor keeps no results (its RESULT_STORAGE is off by default): every request renders;
- apercu cold: `apercu serve` (2 web processes, one imaging process per core), the photos uploaded and processed
  first; then `/r/unsafe/w:<w>/h:512/q:80/<id>.jpg` with every URL new (w = 512, 511, 510...: one pixel less
  each time an image comes round again), so that every request renders, in the worker, and waits for it;
- apercu warm: the same URLs again, `--warm` requests, every one already rendered and kept.
The `unsafe` signature is accepted because the service runs with no APERCU_URL_KEY and no API keys.
Encoders differ where the defaults do: thumbor's AVIF is pillow-avif-plugin's (libavif, speed 6 by default),
apercu's libheif's at effort 0, and thumbor's WebP is Pillow's method 4, apercu's libwebp effort 2
(imaging/renditions/render.py); the mean size of each side's answers is printed so that a rate is read with what
it produced.

A second table gives each server's CPU per request, read from /proc for its process and all its descendants:
apercu's by role (its web processes; its worker; the worker's children, the imaging processes; the rest), and
apercu's idle CPU (ms per second, over IDLE_SECONDS after the uploads settled: polling, heartbeats). On a shared
machine a rate moves with the neighbours' load; CPU per request moves much less.

To measure apercu from another checkout (the route is on a branch), run this file with that checkout's
interpreter: `/path/to/checkout/.venv/bin/python bench/renditions.py`; apercu is started with the interpreter
that runs the bench. Where the route does not answer (404 for an unknown route), apercu's columns say so and
thumbor is still measured. The issue's targets (cold at least thumbor's rate, warm at least 10x) are printed
next to the ratios; the bench never fails on speed. It prints the size of apercu's kept renditions at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from live import Service  # noqa: E402
from load import Clients, Connection  # noqa: E402
from peers import ProcessTree, Thumbor, cpu_per_request  # noqa: E402
from thumbnails import photo  # noqa: E402

CLIENTS = 2
BOX = 512
PHOTO = (1800, 1200)  # 2.16 MP, as the corpus's Landscape photos
PHOTOS = 3  # generated ones
CORPUS = Path(os.environ.get("APERCU_CORPUS") or BENCH.parent.parent / "shared" / "corpus")  # as tests/conftest.py
CORPUS_PHOTO = CORPUS / "orientation" / "Landscape_1.jpg"
CORES = len(os.sched_getaffinity(0))
IDLE_SECONDS = 5.0
ROLES = ("web", "worker", "imaging", "other", "total")


@dataclass(frozen=True)
class Output:
    """One output format as each server is asked for it, and the bytes an answer must start with."""

    ext: str  # apercu's
    quality: int | None
    thumbor_format: str
    magic: Callable[[bytes], bool]

    def thumbor_path(self, name: str) -> str:
        quality = f":quality({self.quality})" if self.quality else ""
        return f"/unsafe/fit-in/{BOX}x{BOX}/filters:format({self.thumbor_format}){quality}/{name}"

    def apercu_path(self, image_id: str, width: int) -> str:
        quality = f"/q:{self.quality}" if self.quality else ""
        return f"/r/unsafe/w:{width}/h:{BOX}{quality}/{image_id}.{self.ext}"


OUTPUTS = {
    "jpg": Output("jpg", 80, "jpeg", lambda b: b[:3] == b"\xff\xd8\xff"),
    "png": Output("png", None, "png", lambda b: b[:8] == b"\x89PNG\r\n\x1a\n"),
    "webp": Output("webp", 75, "webp", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    "avif": Output("avif", 65, "avif", lambda b: b[4:12] in (b"ftypavif", b"ftypavis")),
}


@dataclass
class Rate:
    per_second: float
    mean_kb: float
    cpu_ms: dict[str, float] | None = None  # CPU per request by role (`ProcessTree.roles`), when measured


# The load: 2 clients taking the next URL of a list until none is left.

def measure(port: int, urls: list[str], output: Output, tree: ProcessTree | None = None) -> Rate:
    """Requests per second over `urls`, each answer checked (200, the format's magic bytes); with `tree`, the
    server's CPU per request."""
    pending = iter(urls)  # next() on a list iterator is atomic under the GIL
    sizes: list[int] = []

    def fetch(conn: Connection) -> None:
        url = next(pending)
        status, body = conn.request("GET", url)
        if status != 200 or not output.magic(body):
            raise AssertionError(f"{url} answered {status}: {body[:200]!r}")
        sizes.append(len(body))

    clients = Clients(port, CLIENTS)
    before = tree.roles() if tree else {}
    try:
        outcome = clients.run(len(urls), fetch)
    finally:
        clients.close()
    cpu = cpu_per_request(before, tree.roles(), len(urls)) if tree else None
    return Rate(len(urls) / outcome.seconds, statistics.mean(sizes) / 1000, cpu)


# The photos.

def make_photos(folder: Path) -> list[Path]:
    """~2 MP JPEGs in `folder` (thumbor's file loader root): generated ones, and a corpus photo when present."""
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for seed in range(PHOTOS):
        path = folder / f"photo{seed}.jpg"
        photo(PHOTO, seed=seed + 1).save(path, "JPEG", quality=90)
        found.append(path)
    if CORPUS_PHOTO.is_file():
        path = folder / "corpus-landscape.jpg"
        shutil.copyfile(CORPUS_PHOTO, path)  # into the run's temporary folder only
        found.append(path)
    return found


def thumbor_rate(thumbor: Thumbor, names: list[str], output: Output, count: int) -> Rate:
    """`count` requests cycling over the photos (thumbor renders each one), after one warm-up per photo."""
    urls = [output.thumbor_path(name) for name in names]
    measure(thumbor.port, urls, output)
    tree = ProcessTree(thumbor.process.pid)
    return measure(thumbor.port, list(itertools.islice(itertools.cycle(urls), count)), output, tree)


# apercu.

class Apercu:
    """`apercu serve` with the photos uploaded and processed."""

    def __init__(self, photos: list[Path], folder: Path) -> None:
        env = {"APERCU_WEB_WORKERS": "2", "APERCU_WORKER_CONCURRENCY": str(CORES), "APERCU_LOG_LEVEL": "WARNING"}
        self.service = Service(folder / "apercu", env).start("serve")
        self.ids = []
        for path in photos:
            image_id = self.service.upload(path.read_bytes(), path.name).json()["id"]
            status = self.service.wait_final(image_id)["status"]
            assert status == "success", (path, status)
            self.ids.append(image_id)
        self.widths = itertools.count(BOX, -1)  # every cold URL new: one pixel narrower each round
        self.tree = ProcessTree(self.service.processes[0].pid)

    def idle_cpu(self, seconds: float = IDLE_SECONDS) -> dict[str, float]:
        """Milliseconds of CPU per second by role while nothing is asked (polling, heartbeats)."""
        before = self.tree.roles()
        time.sleep(seconds)
        return cpu_per_request(before, self.tree.roles(), seconds)

    def missing_route(self) -> str | None:
        """Why the rendition route cannot be measured here (it does not answer), or None."""
        reply = self.service.get(OUTPUTS["jpg"].apercu_path(self.ids[0], BOX))
        return None if reply.status == 200 else f"GET /r/... answered {reply.status}: {reply.body[:120]!r}"

    def cold_urls(self, output: Output, count: int) -> list[str]:
        """`count` URLs never asked before: the photos in turn, each round one pixel narrower than the last."""
        urls: list[str] = []
        while len(urls) < count:
            width = next(self.widths)
            urls += [output.apercu_path(image_id, width) for image_id in self.ids]
        return urls[:count]

    def kept(self) -> tuple[int, int]:
        """(files, bytes) of the kept renditions under the data directory."""
        files = [p for p in (self.service.data_dir / "renditions").rglob("*") if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    def stop(self) -> None:
        self.service.stop()


def apercu_rates(apercu: Apercu, output: Output, cold: int, warm: int) -> tuple[Rate, Rate]:
    """Cold: `cold` new URLs (after one unrecorded round, which also warms the imaging processes); warm: those
    URLs again, `warm` requests in all."""
    measure(apercu.service.port, apercu.cold_urls(output, len(apercu.ids)), output)
    urls = apercu.cold_urls(output, cold)
    cold_rate = measure(apercu.service.port, urls, output, apercu.tree)
    return cold_rate, measure(apercu.service.port, list(itertools.islice(itertools.cycle(urls), warm)), output)


# Output.

def ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}"


def rate(value: Rate | None) -> str:
    return "-" if value is None else f"{value.per_second:.1f}"


def size(value: Rate | None) -> str:
    return "-" if value is None else f"{value.mean_kb:.1f}"


def print_table(rows: dict[str, tuple[Rate | None, Rate | None, Rate | None]]) -> None:
    print("| format | apercu cold req/s | apercu warm req/s | thumbor req/s | cold / thumbor (target >= 1) "
          "| warm / thumbor (target >= 10) | apercu KB | thumbor KB |")
    print("|---|---|---|---|---|---|---|---|")
    for ext, (cold, warm, thumbor) in rows.items():
        base = thumbor.per_second if thumbor else None
        print(f"| {ext} | {rate(cold)} | {rate(warm)} | {rate(thumbor)} "
              f"| {ratio(cold and cold.per_second, base)} | {ratio(warm and warm.per_second, base)} "
              f"| {size(cold)} | {size(thumbor)} |")


def print_cpu(rows: dict[str, tuple[Rate | None, Rate | None, Rate | None]], idle: dict[str, float] | None) -> None:
    """The servers' CPU per request by role (ms; thumbor's all `other`), and apercu's idle CPU (ms per s)."""
    print(f"\n| CPU ms per request | {' | '.join(ROLES)} |")
    print("|---|" + "---|" * len(ROLES))
    for ext, (cold, _, thumbor) in rows.items():
        for name, measured in ((f"{ext} apercu cold", cold), (f"{ext} thumbor", thumbor)):
            if measured and measured.cpu_ms:
                print(f"| {name} | " + " | ".join(f"{measured.cpu_ms.get(r, 0.0):.1f}" for r in ROLES) + " |")
    if idle:
        print("| apercu idle, ms per s | " + " | ".join(f"{idle.get(r, 0.0):.1f}" for r in ROLES) + " |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="measured requests per format: thumbor, apercu cold")
    parser.add_argument("--warm", type=int, default=200, help="measured requests per format: apercu warm")
    parser.add_argument("--formats", default=",".join(OUTPUTS), help="comma-separated: jpg,png,webp,avif")
    parser.add_argument("--skip-apercu", action="store_true")
    parser.add_argument("--skip-thumbor", action="store_true")
    args = parser.parse_args()
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = set(args.formats) - set(OUTPUTS)
    if unknown:
        parser.error(f"unknown formats: {', '.join(sorted(unknown))}")
    return args


def run(args: argparse.Namespace, folder: Path) -> None:
    photos = make_photos(folder / "photos")
    print(f"{CORES} cores, {CLIENTS} clients, fit within {BOX}x{BOX}, {len(photos)} photos of "
          f"{PHOTO[0]}x{PHOTO[1]} "
          f"(JPEG), {args.requests} requests per format (apercu warm: {args.warm})\n", flush=True)
    thumbor = None if args.skip_thumbor else Thumbor(folder / "photos", folder)
    apercu = None if args.skip_apercu else Apercu(photos, folder)
    why_not = apercu.missing_route() if apercu else "skipped"
    if why_not:
        print(f"apercu not measured: {why_not}\n")
    rows: dict[str, tuple[Rate | None, Rate | None, Rate | None]] = {}
    idle = apercu.idle_cpu() if apercu else None
    try:
        for ext in args.formats:
            output = OUTPUTS[ext]
            cold = warm = base = None
            if thumbor:
                base = thumbor_rate(thumbor, [p.name for p in photos], output, args.requests)
            if apercu and not why_not:
                cold, warm = apercu_rates(apercu, output, args.requests, args.warm)
            rows[ext] = (cold, warm, base)
            print(f"{ext}: apercu cold {rate(cold)}, warm {rate(warm)}, thumbor {rate(base)} req/s", flush=True)
        print()
        print_table(rows)
        print_cpu(rows, idle)
        if apercu and not why_not:
            files, stored = apercu.kept()
            print(f"\napercu's kept renditions after the run: {files} files, {stored / 1e6:.1f} MB")
    finally:
        if thumbor:
            thumbor.stop()
        if apercu:
            apercu.stop()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="apbench-renditions-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
