"""A long fuzzing run of the imaging entry points (sniff, analyse, the inspect path, render_variant).

    .venv/bin/python bench/fuzz.py [--seconds 300] [--seed N] [--jobs 2] [--corpus] [--max-pixels N]
    .venv/bin/python bench/fuzz.py --seed N --case I [--corpus] [--max-pixels N] [--write case.bin]  # replay
    .venv/bin/python bench/fuzz.py --memory    # peak RSS of analyse on the worst inputs we can build

The same mutators, cases and options as tests/test_fuzz.py (tests/fuzzing.py), for as long as asked, in --jobs
worker processes: case I of seed N is always the same bytes, so every case reported here (or by the test)
replays with --case, with its tracebacks. A case that kills its worker (a segfault in a decoder) is reported as
such and the worker replaced. Prints cases/s, every exception class found with where it was raised and its
first case, and the slowest cases. --max-pixels 100000000 fuzzes at the production pixel limit (cases then
include legitimately large canvases, which take seconds). Atheris is not used: the mutators know the formats.
--memory prints the wall time and peak RSS (getrusage, each in a fresh process) of analyse at the production
pixel limit on the bombs of the tests and on the largest legitimate inputs: 100-megapixel canvases, a 12 MP photo.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fuzzing  # noqa: E402
from conftest import corpus_files  # noqa: E402

from apercu.imaging.analyse import Options  # noqa: E402

REPORT_EVERY = 0.5  # seconds between a worker's batches of results
SLOWEST = 8
CrashKey = tuple[str, str, str]  # entry point, exception class, where


@dataclass(frozen=True)
class Campaign:
    seed: int
    corpus: bool
    max_pixels: int

    def bases(self) -> dict[str, bytes]:
        return fuzzing.corpus_bases(corpus_files()) if self.corpus else fuzzing.generated_bases()

    def options(self) -> Options:
        return dataclasses.replace(fuzzing.FUZZ_OPTIONS, max_pixels=self.max_pixels)

    def replay(self, index: int) -> str:
        flags = " --corpus" if self.corpus else ""
        if self.max_pixels != fuzzing.FUZZ_OPTIONS.max_pixels:
            flags += f" --max-pixels {self.max_pixels}"
        return f"--seed {self.seed} --case {index}{flags}"


def worker(campaign: Campaign, start: int, stride: int, deadline: float, results: Any, current: Any) -> None:
    """Run cases start, start + stride, ... until the deadline, sending (index, seconds, crashes, recognised,
    processed) in batches; `current` holds the case being run, for the parent to name if this process dies."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # libtiff and libvips complain about every mutated file
    bases, options, batch, sent = campaign.bases(), campaign.options(), [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="apercu-fuzz-") as tmp:
        scratch, index = Path(tmp) / "case", start
        while time.monotonic() < deadline:
            current.value = index
            case = fuzzing.make_case(campaign.seed, index, bases)
            outcome = fuzzing.run_case(case.data, scratch, options, render=index % 8 == 0)
            crashes = [(c.entry, c.error.split(":", 1)[0], fuzzing.origin(c.trace)) for c in outcome.crashes]
            batch.append((index, outcome.seconds, crashes, outcome.recognised, outcome.processed))
            if time.monotonic() - sent > REPORT_EVERY:
                results.put(batch)
                batch, sent = [], time.monotonic()
            index += stride
    results.put(batch)


@dataclass
class Tally:
    cases: int = 0
    recognised: int = 0
    processed: int = 0
    crashes: Counter[CrashKey] = field(default_factory=Counter)
    first: dict[CrashKey, int] = field(default_factory=dict)
    slowest: list[tuple[float, int]] = field(default_factory=list)

    def add(self, index: int, seconds: float, crashes: list[CrashKey], recognised: bool, processed: bool) -> None:
        self.cases += 1
        self.recognised += recognised
        self.processed += processed
        for key in crashes:
            self.crash(key, index)
        self.slowest = sorted([*self.slowest, (seconds, index)], reverse=True)[:SLOWEST]

    def crash(self, key: CrashKey, index: int) -> None:
        self.crashes[key] += 1
        self.first.setdefault(key, index)

    def drain(self, results: Any, timeout: float) -> bool:
        try:
            for item in results.get(timeout=timeout):
                self.add(*item)
        except queue.Empty:
            return False
        return True


def run(campaign: Campaign, seconds: float, jobs: int) -> Tally:
    """Fuzz with `jobs` processes; slot k runs cases k, k + jobs, ... and restarts after a case that kills it."""
    context = multiprocessing.get_context("spawn")
    results, tally = context.Queue(), Tally()
    deadline = time.monotonic() + seconds
    slots: dict[int, tuple[Any, Any]] = {}

    def start(slot: int, first: int) -> None:
        current = context.Value("q", first)
        process = context.Process(target=worker, args=(campaign, first, jobs, deadline, results, current))
        process.start()
        slots[slot] = (process, current)

    for slot in range(jobs):
        start(slot, slot)
    while slots:
        tally.drain(results, timeout=0.5)
        for slot, (process, current) in list(slots.items()):
            if process.is_alive():
                continue
            process.join()
            del slots[slot]
            if process.exitcode and time.monotonic() < deadline:
                code = process.exitcode
                how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                tally.crash(("worker", how, "native code or the harness"), current.value)
                start(slot, current.value + jobs)
    while tally.drain(results, timeout=0.2):  # the last batches
        pass
    return tally


def report(tally: Tally, campaign: Campaign, seconds: float) -> None:
    print(f"seed {campaign.seed}: {tally.cases} cases in {seconds:.0f} s = {tally.cases / seconds:.1f} cases/s; "
          f"{tally.recognised} recognised by sniff, {tally.processed} processed to a thumbnail")
    print(f"\n{'count':>7}  {'entry':<15} {'exception':<22} {'raised at':<60} first case")
    for key, count in tally.crashes.most_common():
        entry, error, where = key
        print(f"{count:>7}  {entry:<15} {error:<22} {where:<60} {campaign.replay(tally.first[key])}")
    if not tally.crashes:
        print("      0  (no exception other than ProcessingFailed)")
    print(f"\nslowest cases (the test's bound is {fuzzing.TIME_BOUND:g} s per case):")
    for secs, index in tally.slowest:
        print(f"{secs:8.3f} s  {campaign.replay(index)}")


def replay(campaign: Campaign, index: int, write: Path | None) -> int:
    case = fuzzing.make_case(campaign.seed, index, campaign.bases())
    print(case.describe())
    if write:
        write.write_bytes(case.data)
        print(f"wrote {len(case.data)} bytes to {write}")
    with tempfile.TemporaryDirectory(prefix="apercu-fuzz-") as tmp:
        outcome = fuzzing.run_case(case.data, Path(tmp) / "case", campaign.options(), render=True)
    print(f"{outcome.seconds:.3f} s, recognised: {outcome.recognised}, processed: {outcome.processed}")
    for crash in outcome.crashes:
        print(f"\n{crash.entry}: {crash.error}\n{crash.trace}")
    return 1 if outcome.crashes else 0


def memory() -> int:
    print(f"{'input':<44} {'bytes':>10} {'time':>9} {'peak RSS':>9} {'growth':>8}  outcome")
    builders = {**{name: bomb.build for name, bomb in fuzzing.BOMBS.items()}, **fuzzing.LARGE}
    for name, build in builders.items():
        data = build()
        m = fuzzing.measure(data)
        print(f"{name:<44} {len(data):>10} {m.seconds * 1000:>7.0f}ms {m.peak_rss >> 20:>5} MiB {m.growth >> 20:>4} MiB"
              f"  {m.outcome[:70]}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--corpus", action="store_true", help="mutate a sample of the corpus instead")
    parser.add_argument("--max-pixels", type=int, default=fuzzing.FUZZ_OPTIONS.max_pixels)
    parser.add_argument("--case", type=int, default=None, help="replay this one case, with tracebacks")
    parser.add_argument("--write", type=Path, default=None, help="with --case: save the case's bytes here")
    parser.add_argument("--memory", action="store_true", help="measure peak memory on the worst inputs instead")
    args = parser.parse_args()
    if args.memory:
        return memory()
    campaign = Campaign(args.seed if args.seed is not None else int(time.time()), args.corpus, args.max_pixels)
    if args.case is not None:
        return replay(campaign, args.case, args.write)
    report(run(campaign, args.seconds, args.jobs), campaign, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
