"""Decode benchmark (issue 22): CPU per image through the worker's imaging entry point, the quality floor of
shrink-on-load, the fingerprints' cost, and HEIC.

    .venv/bin/python bench/decode.py [--runs 15] [--section cpu,heic,fingerprints,psnr]
    PYTHONPATH=/path/to/another/src .venv/bin/python bench/decode.py   # the same on another version's imaging

- cpu: `analyse()` (what the worker's imaging process runs per upload: decode, metadata, sha256, thumbnail,
  fingerprints, focal point) on the throughput bench's generated 12 MP JPEG, 12 MP PNG and 2 MP JPEG, and on the
  corpus' iPhone photo as a 12 MP and a 2 MP JPEG; median process CPU time (every thread of the process: libvips'
  and the sha256 thread's too) and median wall time over --runs calls after one warm-up.
- heic: the corpus' 12 MP iPhone HEIC through `analyse()`, with libheif's threads as this version sets them
  and, where the version takes them, 1 and 2 threads.
- fingerprints: pHash and BlurHash each, on the 256 px frame they are computed from.
- psnr: each input's reduction against a full-resolution float LANCZOS (tests/decode_quality.py), flagged where
  it is under the 45 dB floor or outside the sharpness band.
The machine is shared: CPU time is what to compare, medians over many runs. It prints and never fails on speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

import decode_quality as dq  # noqa: E402
from thumbnails import photo  # noqa: E402

from apercu.imaging import fingerprints, thumbnail  # noqa: E402
from apercu.imaging.analyse import Options, analyse  # noqa: E402

CORPUS = Path(os.environ.get("APERCU_CORPUS") or BENCH.parent.parent / "shared" / "corpus")  # as tests/conftest.py
SECTIONS = ("cpu", "heic", "fingerprints", "psnr")


def generated(size: tuple[int, int], fmt: str, **params: object) -> Callable[[], bytes]:
    def make() -> bytes:
        out = io.BytesIO()
        photo(size).save(out, fmt, **params)
        return out.getvalue()

    return make


def cpu_inputs(corpus: Path) -> dict[str, Callable[[], bytes]]:
    """The throughput bench's three inputs, then the real photograph as JPEG."""
    iphone = dict(dq.iphone_jpegs(corpus)) if corpus.is_dir() else {}
    return {
        "12 MP JPEG (bench)": generated((4000, 3000), "JPEG", quality=90),
        "12 MP PNG (bench)": generated((4000, 3000), "PNG"),
        "2 MP JPEG (bench)": generated((1633, 1225), "JPEG", quality=90),
        **{f"{name} (corpus)": make for name, make in iphone.items()},
    }


def timed(work: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median (CPU ms, wall ms) of `runs` calls, after one warm-up call."""
    work()
    cpu, wall = [], []
    for _ in range(runs):
        started_cpu, started = time.process_time(), time.perf_counter()
        work()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return statistics.median(cpu) * 1000, statistics.median(wall) * 1000


def section_cpu(runs: int, corpus: Path) -> None:
    print(f"\n## CPU per image through analyse() (median of {runs})\n")
    print("| input | CPU ms | wall ms | engine | thumbnail |")
    print("|---|---:|---:|---|---|")
    for name, make in cpu_inputs(corpus).items():
        data = make()
        result = analyse(data)
        cpu, wall = timed(lambda data=data: analyse(data), runs)
        thumb = result.thumbnail
        print(f"| {name} | {cpu:.1f} | {wall:.1f} | {thumb.engine} | {thumb.width}x{thumb.height} |")


def section_heic(runs: int, corpus: Path) -> None:
    path = corpus / dq.IPHONE
    if not path.is_file():
        print("\n(no corpus: HEIC skipped)")
        return
    data = path.read_bytes()
    print(f"\n## {dq.IPHONE} through analyse() (median of {runs})\n")
    print("| libheif threads | CPU ms | wall ms |")
    print("|---|---:|---:|")
    variants: list[tuple[str, Options]]
    if "decode_threads" in {f.name for f in dataclasses.fields(Options)}:
        variants = [(f"{n}", Options(decode_threads=n)) for n in (1, 2)]
    else:
        import pillow_heif

        variants = [(f"{pillow_heif.options.DECODE_THREADS} (pillow-heif's default)", Options())]
    for label, options in variants:
        cpu, wall = timed(lambda options=options: analyse(data, options), runs)
        print(f"| {label} | {cpu:.1f} | {wall:.1f} |")


def section_fingerprints(runs: int) -> None:
    data = generated((4000, 3000), "JPEG", quality=90)()
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        frame, _ = thumbnail.reduce(img, data, size=256, orientation=None)
    print(f"\n## Fingerprints on a {frame.width}x{frame.height} thumbnail (median of {runs * 20})\n")
    print("| function | CPU ms |")
    print("|---|---:|")
    for name, function in (("phash", fingerprints.phash), ("blurhash", fingerprints.blurhash)):
        cpu, _ = timed(lambda function=function: function(frame), runs * 20)
        print(f"| {name} | {cpu:.3f} |")


def section_psnr(corpus: Path) -> None:
    print("\n## Reduction against a full-resolution float LANCZOS (floor 45 dB, sharpness 0.85-1.15)\n")
    print("| input | engine | source | output | PSNR dB | sharpness | |")
    print("|---|---|---|---|---:|---:|---|")
    inputs: list[tuple[str, Callable[[], bytes]]] = list(dq.generated())
    if corpus.is_dir():
        inputs += list(dq.iphone_jpegs(corpus))
        inputs += [(str(p.relative_to(corpus)), p.read_bytes) for p in dq.corpus_inputs(corpus)]
    lowest = 99.0
    for name, make in inputs:
        q = dq.measure(make())
        lowest = min(lowest, q.psnr)
        ok = q.psnr >= dq.FLOOR_DB and dq.SHARPNESS[0] <= q.sharpness <= dq.SHARPNESS[1]
        print(f"| {name} | {q.engine} | {q.source[0]}x{q.source[1]} | {q.output[0]}x{q.output[1]} | "
              f"{q.psnr:.2f} | {q.sharpness:.3f} | {'' if ok else 'UNDER THE FLOOR'} |")
    print(f"\nlowest: {lowest:.2f} dB over {len(inputs)} inputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--section", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    chosen = set(args.section.split(","))
    import apercu

    print(f"apercu imaging from {Path(apercu.__file__).parent}")
    if "cpu" in chosen:
        section_cpu(args.runs, args.corpus)
    if "heic" in chosen:
        section_heic(max(3, args.runs // 3), args.corpus)
    if "fingerprints" in chosen:
        section_fingerprints(args.runs)
    if "psnr" in chosen:
        section_psnr(args.corpus)


if __name__ == "__main__":
    main()
