"""Metadata fidelity report: our match rate against ExifTool per group, next to naive Pillow's in the same run.

    .venv/bin/python bench/metadata.py [--misses]

For every corpus file with an ExifTool reading (../shared/corpus/_exiftool), counts the ExifTool tags we
report with an equal value (rules in tests/fidelity.py). The baseline is what a plain Pillow reader gives
(`getexif()` with Pillow's tag names and values): the gap is what the ExifTool naming and conversions buy.
Also prints the median time per file of each reader. Prints numbers; never fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fidelity  # noqa: E402
from conftest import CORPUS, corpus_files  # noqa: E402
from PIL import ExifTags, Image  # noqa: E402


def naive_pillow(path: Path) -> dict[str, Any]:
    """The baseline: Pillow's getexif() flattened with Pillow's names, values as Pillow gives them."""
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            flat: dict[str, Any] = {}
            for ifd, names in ((None, ExifTags.TAGS), (0x8769, ExifTags.TAGS), (0x8825, ExifTags.GPSTAGS)):
                entries = exif.items() if ifd is None else exif.get_ifd(ifd).items()
                for tag, value in entries:
                    flat.setdefault(names.get(tag, hex(tag)), _plain(value))
            return {"exif": flat}
    except Exception:  # noqa: BLE001 - the baseline simply reports nothing for what it cannot read
        return {}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    try:
        return float(value) if not isinstance(value, (str, bytes, int)) else value
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def timed(read: Callable[[Path], dict[str, Any]], files: list[Path]) -> tuple[dict[Path, dict[str, Any]], float]:
    results, times = {}, []
    for path in files:
        start = time.perf_counter()
        results[path] = read(path)
        times.append(time.perf_counter() - start)
    return results, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--misses", action="store_true", help="list every tag that differs")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"corpus not found at {CORPUS}")
    files = corpus_files()
    ours, ours_time = timed(fidelity.ours, files)
    naive, naive_time = timed(naive_pillow, files)
    ours_t = fidelity.compare(CORPUS, files, ours.__getitem__)
    naive_t = fidelity.compare(CORPUS, files, naive.__getitem__)
    print(f"{len(files)} corpus files; median time per file: apercu {ours_time * 1000:.1f} ms "
          f"(metadata + thumbnail), naive Pillow {naive_time * 1000:.1f} ms (EXIF only)\n")
    print(f"{'group':<8}{'ExifTool tags':>14}{'apercu':>10}{'naive Pillow':>14}")
    for group in ("exif", "gps", "xmp", "iptc", "icc"):
        tally, base = ours_t.get(group, fidelity.Tally()), naive_t.get(group, fidelity.Tally())
        print(f"{group:<8}{tally.total:>14}{tally.rate:>10.2%}{base.rate:>14.2%}")
    if args.misses:
        for group, tally in ours_t.items():
            print(f"\n{group}: {len(tally.misses)} differences")
            for miss in tally.misses:
                print(f"  {miss[:300]}")


if __name__ == "__main__":
    main()
