"""Maker notes (APERCU_EXIFTOOL=1): match rate per maker group against the corpus readings, and what they cost.

    .venv/bin/python bench/makernotes.py [--misses]

Match rate: every maker tag of the ExifTool readings in ../shared/corpus/_exiftool, and of ours, compared by the
rules of tests/fidelity.py. Cost: `imaging.analyse` of each corpus file that is asked about (a format that can
carry maker notes, with EXIF), with and without the setting, in this process (the worker does the same in its
imaging child); plus the exiftool call alone and the start of its process, paid once per imaging process.
Prints numbers; never fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fidelity  # noqa: E402
from conftest import CORPUS, corpus_files  # noqa: E402

from apercu.imaging import makernotes  # noqa: E402
from apercu.imaging.analyse import Options, ProcessingFailed, analyse  # noqa: E402
from apercu.imaging.formats import sniff  # noqa: E402

ROUNDS = 5


def metadata(data: bytes, options: Options) -> dict:
    try:
        return analyse(data, options).metadata
    except ProcessingFailed as exc:
        return exc.metadata


def asked_about() -> dict[Path, bytes]:
    """The corpus files the setting sends to exiftool."""
    files = {}
    for path in corpus_files():
        with path.open("rb") as fp:
            if sniff(fp) is None:
                continue
        data = path.read_bytes()
        meta = metadata(data, Options())
        if meta.get("format") in makernotes.FORMATS and meta.get("exif"):
            files[path] = data
    return files


def median_ms(data: bytes, options: Options) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        metadata(data, options)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--misses", action="store_true", help="list every tag that differs")
    args = parser.parse_args()

    start = time.perf_counter()
    makernotes.read(b"")  # the process starts here
    print(f"exiftool process start + first (empty) answer: {(time.perf_counter() - start) * 1000:.0f} ms")

    tallies, group_misses = fidelity.compare_makernotes(CORPUS, corpus_files())
    matched, total = sum(t.matched for t in tallies.values()), sum(t.total for t in tallies.values())
    print(f"\nmaker tags matching ExifTool's readings: {matched}/{total} = {matched / max(total, 1):.1%}")
    for group, tally in sorted(tallies.items()):
        print(f"  {group:<12} {tally.matched:>4}/{tally.total:<4} {tally.rate:.1%}")
    print(f"files whose maker groups differ from the reading's: {len(group_misses)}")
    for line in group_misses + ([m for t in tallies.values() for m in t.misses] if args.misses else []):
        print(f"  {line}")

    files = asked_about()
    with_notes = {p for p, d in files.items() if makernotes.read(d)}
    rows = []
    for path, data in files.items():
        off, on = median_ms(data, Options()), median_ms(data, Options(exiftool=True))
        alone = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            makernotes.read(data)
            alone.append(time.perf_counter() - start)
        rows.append((path, off, on, statistics.median(alone) * 1000))
    print(f"\nper file, median of {ROUNDS} (ms), over the {len(files)} corpus files asked about "
          f"({len(with_notes)} with maker notes):")
    for label, subset in (("all asked", rows), ("with maker notes", [r for r in rows if r[0] in with_notes])):
        if subset:
            off = statistics.median(r[1] for r in subset)
            on = statistics.median(r[2] for r in subset)
            alone = statistics.median(r[3] for r in subset)
            worst = max(r[3] for r in subset)
            print(f"  {label:<17} analyse without {off:6.1f}  with {on:6.1f}  (+{on - off:.1f})   "
                  f"exiftool alone median {alone:.1f}, max {worst:.1f}")
    makernotes.shutdown()


if __name__ == "__main__":
    main()
