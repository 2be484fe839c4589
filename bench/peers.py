"""What the benchmarks share about the servers they measure: the CPU each process of a server spent, read from
/proc by role (bench/renditions.py, bench/throughput.py, bench/shell.py), and thumbor 7, the peer that
bench/renditions.py and bench/throughput.py run next to apercu in the same run.

thumbor is installed from PyPI into a virtualenv of the bench's own (bench/.venv-thumbor, git-ignored) on first
use, and started with `--processes 2`, the file loader on a folder of the run, and its defaults otherwise (as
imgproxy's image-servers-benchmark runs every peer). It keeps no results (RESULT_STORAGE is off by default), so
every request renders.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from live import free_port  # noqa: E402
from load import Connection  # noqa: E402
from service import reachable  # noqa: E402

THUMBOR_VERSION = "7.7.7"
THUMBOR_VENV = BENCH / ".venv-thumbor"
THUMBOR_PACKAGES = [f"thumbor=={THUMBOR_VERSION}", "pillow-avif-plugin==1.*"]
THUMBOR_PROCESSES = 2
START_TIMEOUT = 60.0


# CPU from /proc: what each of a server's processes spent, by role.

TICK = os.sysconf("SC_CLK_TCK")


class ProcessTree:
    """A server's process and all its descendants (web processes, the worker, its fork server and imaging
    processes; thumbor's forked processes), their CPU read from /proc/<pid>/stat."""

    def __init__(self, root: int) -> None:
        self.root = root

    def pids(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(int(entry))):
                children.setdefault(int(stat[1]), []).append(int(entry))
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def roles(self) -> dict[str, float]:
        """CPU seconds so far by role: `web`, `worker`, `imaging` (the worker's children), `other`."""
        spent: dict[str, float] = {}
        for pid in self.pids():
            role = _role(pid)
            spent[role] = spent.get(role, 0.0) + cpu_seconds(pid)
        return spent


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) one process has used so far; 0 once it is gone."""
    stat = _stat(pid)
    return 0.0 if stat is None else (int(stat[11]) + int(stat[12])) / TICK


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command's name (state first), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _role(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for role in ("web", "worker"):
        if f"apercu {role}" in command:
            return role
    return "imaging" if "multiprocessing" in command else "other"


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: float) -> dict[str, float]:
    """Milliseconds of CPU per request (or per second: `requests` seconds) by role, and `total`."""
    per = {role: (after.get(role, 0.0) - before.get(role, 0.0)) * 1000 / requests for role in after}
    return {**per, "total": sum(per.values())}


# thumbor.

def thumbor_command() -> Path:
    """bench/.venv-thumbor/bin/thumbor, installed there from PyPI on first use."""
    command = THUMBOR_VENV / "bin" / "thumbor"
    if not command.exists():
        print(f"installing thumbor {THUMBOR_VERSION} into {THUMBOR_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
        subprocess.run([str(THUMBOR_VENV / "bin" / "pip"), "install", "--quiet", *THUMBOR_PACKAGES], check=True)
    return command


class Thumbor:
    """thumbor with `--processes 2`, the file loader on the photos' folder, its defaults otherwise."""

    def __init__(self, photos: Path, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / "thumbor.log"
        config = folder / "thumbor.conf"
        config.write_text(
            "LOADER = 'thumbor.loaders.file_loader'\n"
            f"FILE_LOADER_ROOT_PATH = {str(photos)!r}\n"
            f"FILE_STORAGE_ROOT_PATH = {str(folder / 'storage')!r}\n"  # its default storage, in this run's folder
            "ALLOW_UNSAFE_URL = True\n"
        )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(thumbor_command()), "--ip", "127.0.0.1", "--port", str(self.port), "--conf", str(config),
                 "--processes", str(THUMBOR_PROCESSES), "--log-level", "warning"],
                stdout=log, stderr=log, start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"thumbor exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if reachable(self.port) and self._healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"thumbor not ready after {START_TIMEOUT}s:\n{self.log.read_text()[-3000:]}")

    def _healthy(self) -> bool:
        conn = Connection(self.port, timeout=5)
        try:
            return conn.request("GET", "/healthcheck")[0] == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM to its process group (the master and the 2 forked processes), SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


