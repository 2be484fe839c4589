"""`apercu upload` of a big file killed mid-file, then run again: the time from the re-run's start to the image's
id (issue 20's "time to resume a 40 MB upload after a cut", as a person at a terminal meets it).

    .venv/bin/python bench/tus_cli.py [--megabytes 40] [--runs 3] [--link-mb-s 6]

The first run goes through a loopback proxy slowed to 6 MB/s, and is SIGKILLed once the service has `--kill-at`
of the file less one 8 MiB chunk (by default: at 84 %, the last whole chunk before 90 %); the re-run goes through
the same proxy at full speed (the resume store is keyed by the service's URL) with `--timeout 0`, so that it ends
once it has the image's id. Next to it: the same command with `--no-resume` (the whole file again in one
request, through the same kind of proxy), and the interpreter's start alone (`apercu upload --help`), which
every run pays. Best of `--runs`. `--link-mb-s` slows the re-runs' link (both ways of sending) to that rate.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from live import Service  # noqa: E402
from test_upload_resume import Proxy, offset_of, upload_command  # noqa: E402
from tus_helpers import noise_bmp  # noqa: E402


def timed(command: list[str], svc: Service | None = None) -> float:
    """Seconds `command` took; with `svc`, the images it printed are then waited for, so that their processing
    does not take CPU from the next measurement."""
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, check=False, text=True, timeout=600)
    seconds = time.monotonic() - started
    for line in done.stdout.splitlines() if svc else ():
        assert svc and svc.wait_final(json.loads(line)["id"], timeout=300)["status"] == "success", line
    return seconds


def killed_then_resumed(svc: Service, path: Path, store: Path, kill_at: float, link: float | None) -> tuple[float, int]:
    """(seconds of the re-run, the offset it resumed from)."""
    size = path.stat().st_size
    proxy = Proxy(svc.port, rate=6e6)
    first = subprocess.Popen(upload_command(proxy.url, path, store), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    while offset_of(svc, store) < max(1, kill_at * size - 8 * 1024 * 1024) and first.poll() is None:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(1)
    offset = offset_of(svc, store)
    proxy.rate = link
    seconds = timed(upload_command(proxy.url, path, store, "--timeout", "0"), svc)
    proxy.close()
    assert json.loads(store.read_text()) == {}, "the re-run did not finish the upload"
    return seconds, offset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kill-at", type=float, default=0.9, help="fraction of the file the service has first")
    parser.add_argument("--link-mb-s", type=float, default=None, help="the re-runs' link, MB/s (default: loopback)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = Service(Path(tmp) / "data").start("serve")
        try:
            runs = []
            for n in range(args.runs):
                path = Path(tmp, f"big-{n}.bmp")
                path.write_bytes(noise_bmp(args.megabytes))
                runs.append(killed_then_resumed(svc, path, Path(tmp, f"store-{n}.json"), args.kill_at,
                                                None if args.link_mb_s is None else args.link_mb_s * 1e6))
                Path(tmp, f"whole-{n}.bmp").write_bytes(noise_bmp(args.megabytes))
            proxy = Proxy(svc.port, rate=None if args.link_mb_s is None else args.link_mb_s * 1e6)  # as the re-runs
            whole = min(timed(upload_command(proxy.url, Path(tmp, f"whole-{n}.bmp"), Path(tmp, "none.json"),
                                             "--no-resume", "--timeout", "0"), svc) for n in range(args.runs))
            proxy.close()
            start = min(timed([sys.executable, "-m", "apercu", "upload", "--help"]) for _ in range(args.runs))
        finally:
            svc.stop()
    seconds, offset = min(runs)
    size = args.megabytes * 1e6
    print(f"re-run after a kill at {offset / size:.0%} ({offset / 1e6:.1f} MB on the service): {seconds:.2f} s to the "
          f"image's id, sending {(size - offset) / 1e6:.1f} MB (runs: {', '.join(f'{s:.2f}' for s, _ in runs)})")
    print(f"the whole file again (--no-resume): {whole:.2f} s; the interpreter's start alone: {start:.2f} s")


if __name__ == "__main__":
    main()
