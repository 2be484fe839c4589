"""Resumable uploads (tus) measured against a real `apercu serve` on loopback: the time to resume a 40 MB upload cut
off at 90 %, and the web's CPU per MB of a tus upload next to a plain `POST /images`.

    .venv/bin/python bench/tus.py [--megabytes 40] [--chunk-mib 8] [--runs 3]

Resume: tuspy sends the file in `--chunk-mib` PATCHes through a proxy that cuts the connection once 90 % of the
bytes went through; the time printed is from the new uploader (its HEAD) to the last byte's answer, next to the
time a plain `POST /images` of the whole file takes (what a client without resumable uploads starts again with).
CPU: the utime + stime of every web process (the gunicorn master and its workers, read from /proc/<pid>/stat
before and after; the worker's processing is not counted), divided by the megabytes sent, for each way, the best
of `--runs`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from live import Service, descendants, role_process  # noqa: E402
from tus_helpers import CuttingProxy, noise_bmp, tus_uploader  # noqa: E402

MIB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")


def web_cpu(root: int) -> float:
    """CPU seconds used so far by the web processes of the `apercu serve` at `root`."""
    web = role_process(root, "web")
    total = 0
    for pid in [web, *(pid for pid, _, _ in descendants(web))]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def measured(svc: Service, send: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, web CPU seconds) of `send`."""
    root = svc.processes[0].pid
    cpu, started = web_cpu(root), time.monotonic()
    send()
    return time.monotonic() - started, web_cpu(root) - cpu


def resume_after_cut(svc: Service, data: bytes, chunk: int) -> float:
    """Seconds from resuming (HEAD) to the last byte's answer, after a cut at 90 %."""
    proxy = CuttingProxy(svc.port, cut_after=int(len(data) * 0.9))
    first = tus_uploader(proxy.url, data, chunk)
    try:
        first.upload()
    except Exception:  # noqa: BLE001 - the cut, as a client meets it
        pass
    proxy.close()
    assert proxy.cuts == 1 and first.url, "the proxy did not cut the upload"
    started = time.monotonic()
    again = tus_uploader(f"http://127.0.0.1:{svc.port}", data, chunk, url=first.url.replace(
        f":{proxy.port}/", f":{svc.port}/"))
    print(f"  resumed at offset {again.offset} of {len(data)}")
    again.upload()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=40)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    chunk = args.chunk_mib * MIB
    with tempfile.TemporaryDirectory() as folder:
        svc = Service(Path(folder) / "apercu-data", {"APERCU_MAX_UPLOAD_BYTES": str(200 * MIB),
                                                     "APERCU_MIN_FREE_MB": "0"}).start("serve")
        try:
            rows = run(svc, args, chunk)
        finally:
            svc.stop()
    print(f"\n{'':34} {'wall s':>8} {'web CPU s':>10} {'CPU ms/MB':>10}")
    for label, (wall, cpu, megabytes) in rows.items():
        print(f"{label:34} {wall:8.2f} {cpu:10.3f} {cpu * 1000 / megabytes if cpu else 0:10.1f}")


def run(svc: Service, args: argparse.Namespace, chunk: int) -> dict[str, tuple[float, float, float]]:
    rows: dict[str, tuple[float, float, float]] = {}
    for _ in range(args.runs):
        data = noise_bmp(args.megabytes)
        megabytes = len(data) / 1e6
        plain = measured(svc, lambda data=data: svc.upload(data, "plain.bmp"))
        tus = measured(svc, lambda data=data: tus_uploader(f"http://127.0.0.1:{svc.port}", data, chunk).upload())
        resume = resume_after_cut(svc, noise_bmp(args.megabytes), chunk)
        for label, (wall, cpu) in ((f"POST /images ({megabytes:.0f} MB)", plain),
                                   (f"tus, {args.chunk_mib} MiB PATCHes", tus),
                                   ("resume after a cut at 90 %", (resume, 0.0))):
            best = rows.get(label)
            if best is None or wall < best[0]:
                rows[label] = (wall, cpu, megabytes)
    return rows


if __name__ == "__main__":
    main()
