"""Thumbnail benchmark: our whole processing step against Pillow naive, libvips and djpeg, in one run.

    make bench-thumbnails        # or: .venv/bin/python bench/thumbnails.py [--repeat 5] [--only jpeg12]

Generates a deterministic photograph-like corpus (12 and 24 MP baseline and progressive JPEG, 12 MP PNG RGB
and RGBA, 16-bit TIFF, BMP, TGA, WebP, HEIC) in a temporary folder, then for every input prints the median
time of:
- apercu: the worker's whole step, `analyse()` (decode + metadata + sha256 + 256 px JPEG thumbnail);
- Pillow naive: `open().convert("RGB").resize(LANCZOS)` to the same size, then the same JPEG encode;
- pyvips: `thumbnail_buffer(256)` + `jpegsave_buffer(Q=85)` (libvips's own shrink-on-load path);
- djpeg: `djpeg -scale 1/8` (JPEG only), the libjpeg-turbo decode floor, as a process;
and each one's peak RSS, measured as the maximum resident size of a fresh process doing only that. The
target is apercu <= 1.15x the faster of pyvips and djpeg in time, and <= 1.3x pyvips in peak RSS. It prints
numbers and never fails on them.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageFilter

SIZE = 256
MP12, MP24 = (4000, 3000), (6000, 4000)


def photo(size: tuple[int, int], seed: int = 7) -> Image.Image:
    """Deterministic: gradients, smooth blotches and fine grain, like a photograph's spectrum."""
    rng = random.Random(seed)
    blotches = Image.frombytes("RGB", (96, 72), rng.randbytes(96 * 72 * 3)).filter(ImageFilter.GaussianBlur(3))
    grain = Image.frombytes("L", (512, 512), rng.randbytes(512 * 512))
    base = Image.merge("RGB", [Image.linear_gradient("L").resize(size), Image.radial_gradient("L").resize(size),
                              Image.linear_gradient("L").rotate(90).resize(size)])
    picture = Image.blend(base, blotches.resize(size, Image.Resampling.BICUBIC), 0.5)
    texture = Image.new("L", size)
    for x in range(0, size[0], 512):
        for y in range(0, size[1], 512):
            texture.paste(grain, (x, y))
    return Image.blend(picture, Image.merge("RGB", [texture] * 3), 0.12)


def make_inputs(folder: Path, only: str | None) -> dict[str, Path]:
    import pillow_heif
    import pyvips

    pillow_heif.register_heif_opener()
    p12, p24 = photo(MP12), photo(MP24)
    rgba = p12.copy()
    rgba.putalpha(Image.radial_gradient("L").resize(MP12))
    makers: dict[str, Callable[[Path], None]] = {
        "jpeg12": lambda p: p12.save(p, "JPEG", quality=90),
        "jpeg12-progressive": lambda p: p12.save(p, "JPEG", quality=90, progressive=True),
        "jpeg24": lambda p: p24.save(p, "JPEG", quality=90),
        "jpeg24-progressive": lambda p: p24.save(p, "JPEG", quality=90, progressive=True),
        "png12-rgb": lambda p: p12.save(p, "PNG"),
        "png12-rgba": lambda p: rgba.save(p, "PNG"),
        "tiff12-16bit": lambda p: pyvips.Image.new_from_memory(p12.tobytes(), *MP12, 3, "uchar")
        .cast("ushort").linear(257, 0).cast("ushort").copy(interpretation="rgb16")
        .tiffsave(str(p), compression="deflate"),
        "bmp12": lambda p: p12.save(p, "BMP"),
        "tga12": lambda p: p12.save(p, "TGA"),
        "webp12": lambda p: p12.save(p, "WEBP", quality=85),
        "heic12": lambda p: p12.save(p, "HEIF", quality=80),
    }
    suffix = {
        "jpeg": ".jpg", "png1": ".png", "tiff": ".tif", "bmp1": ".bmp", "tga1": ".tga", "webp": ".webp", "heic": ".heic"
    }
    inputs = {}
    for name, make in makers.items():
        if only and only not in name:
            continue
        path = folder / f"{name}{suffix[name[:4]]}"
        make(path)
        inputs[name] = path
    return inputs


# --- what a child process runs: one tool, one file, several times ---------------------------------------


def tool(name: str) -> Callable[[bytes], object]:
    if name == "apercu":
        from apercu.imaging.analyse import analyse

        return analyse
    if name == "pillow":
        from apercu.imaging import limits

        limits.configure_pillow()
        limits.enable_heif()
        return _pillow_naive
    if name == "pyvips":
        import pyvips

        pyvips.cache_set_max(0)
        return lambda data: pyvips.Image.thumbnail_buffer(data, SIZE, height=SIZE).jpegsave_buffer(Q=85)
    raise ValueError(name)


def _pillow_naive(data: bytes) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    scale = SIZE / max(img.size)
    small = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=85)
    return out.getvalue()


def child(name: str, path: str, repeat: int) -> None:
    run = tool(name)
    data = Path(path).read_bytes()
    run(data)  # warm-up: first-call imports and plugin registration are not what we measure
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run(data)
        times.append(time.perf_counter() - start)
    print(statistics.median(times) * 1000)


# --- the parent: spawn, time, measure peak RSS ------------------------------------------------------------


def measure(argv: list[str]) -> tuple[str, int]:
    """(stdout, peak RSS in KiB) of a child process."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited with {proc.returncode}")
    return out, usage.ru_maxrss


def python_tool(name: str, path: Path, repeat: int) -> tuple[float, int]:
    out, rss = measure([sys.executable, __file__, "--child", name, str(path), "--repeat", str(repeat)])
    return float(out.strip()), rss


def djpeg(path: Path, repeat: int) -> tuple[float, int]:
    times, peak = [], 0
    for _ in range(repeat + 1):
        start = time.perf_counter()
        _, rss = measure(["djpeg", "-scale", "1/8", "-outfile", os.devnull, str(path)])
        times.append(time.perf_counter() - start)
        peak = max(peak, rss)
    return statistics.median(times[1:]) * 1000, peak


def interleaved(path: Path, repeat: int, rounds: int, with_djpeg: bool) -> dict[str, tuple[float, int]]:
    """Each tool once per round, rounds in a row, so that a noisy minute hurts every tool alike; per tool the
    median of its round medians and its highest peak RSS."""
    samples: dict[str, list[tuple[float, int]]] = {}
    for _ in range(rounds):
        for tool_name in ("apercu", "pillow", "pyvips"):
            try:
                samples.setdefault(tool_name, []).append(python_tool(tool_name, path, repeat))
            except RuntimeError:
                pass  # e.g. libvips has no BMP, TGA or HEVC decoder: shown as "-"
        if with_djpeg:
            samples.setdefault("djpeg", []).append(djpeg(path, repeat))
    return {
        name: (statistics.median(ms for ms, _ in runs), max(rss for _, rss in runs))
        for name, runs in samples.items()
        if runs
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool process")
    parser.add_argument("--rounds", type=int, default=3, help="tool processes per input, interleaved")
    parser.add_argument("--only", help="only inputs whose name contains this")
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--make", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.repeat)
        return
    if args.make:
        make_inputs(Path(args.make), args.only)
        return
    has_djpeg = shutil.which("djpeg") is not None
    with tempfile.TemporaryDirectory() as tmp:
        # Made in a child: a forked child's peak RSS counts the parent's pages, so the parent stays small.
        only = ["--only", args.only] if args.only else []
        subprocess.run([sys.executable, __file__, "--make", tmp, *only], check=True)
        inputs = {p.stem: p for p in sorted(Path(tmp).iterdir(), key=lambda p: p.stat().st_mtime)}
        print(f"median of {args.rounds} interleaved rounds x {args.repeat} runs, ms (peak RSS MiB); "
              "ratios: apercu / fastest of pyvips and djpeg (time), apercu / pyvips (RSS)")
        print(f"{'input':<20}{'MB':>6}{'apercu':>16}{'Pillow naive':>16}{'pyvips':>16}{'djpeg 1/8':>16}"
              f"{'time':>7}{'RSS':>7}")
        for name, path in inputs.items():
            row = interleaved(path, args.repeat, args.rounds, has_djpeg and path.suffix == ".jpg")
            cells = "".join(_cell(row.get(t)) for t in ("apercu", "pillow", "pyvips", "djpeg"))
            print(f"{name:<20}{path.stat().st_size / 1e6:>6.1f}{cells}{_ratios(row)}", flush=True)
    if not has_djpeg:
        print("djpeg not found: `apt-get install libjpeg-turbo-progs` (make bench-thumbnails does it)")


def _ratios(row: dict[str, tuple[float, int]]) -> str:
    references = [row[t][0] for t in ("pyvips", "djpeg") if t in row]
    if "apercu" not in row or not references:
        return f"{'-':>7}{'-':>7}"
    rss = f"{row['apercu'][1] / row['pyvips'][1]:>6.2f}x" if "pyvips" in row else f"{'-':>7}"
    return f"{row['apercu'][0] / min(references):>6.2f}x{rss}"


def _cell(measured: tuple[float, int] | None) -> str:
    if measured is None:
        return f"{'-':>16}"
    ms, rss = measured
    return f"{ms:>8.1f} ({rss / 1024:>4.0f})"


if __name__ == "__main__":
    main()
