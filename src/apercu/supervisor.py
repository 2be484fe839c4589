"""`apercu serve`'s supervisor: the web server and the worker as two children, each restarted when it dies.

Each child runs in its own session (so Ctrl-C reaches only the supervisor, which stops both in order) and gets
SIGTERM if the supervisor itself is killed. A half that dies is started again while the other keeps working:
at once after a long run, then with a doubling backoff while it keeps dying young, so a crash loop costs little.
Nothing accepted is lost across a restart: the catalog holds every image, and the new worker takes over the
dead one's leases at start (see `tasks.housekeeping`). Only a half that exits by itself with an error during its
very first start stops everything: that is a configuration error (a bad database URL, a port in use), not a
crash to ride out. A half killed by a signal is always restarted.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

STOP_TIMEOUT = 30.0
FIRST_START = 5.0  # dying within this long of the first start is a configuration error
STABLE_AFTER = 30.0  # a half that ran this long before dying is restarted at once
TICK = 0.2
PR_SET_PDEATHSIG = 1


@dataclass
class Half:
    """One supervised child: its role (`web` or `worker`), its process, and its recent crash history."""

    role: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    starts: int = 0
    quick_deaths: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "apercu", self.role], env=self.env, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.started, self.starts, self.restart_at = time.monotonic(), self.starts + 1, None

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def schedule_restart(self, code: int, backoff_max: float) -> None:
        """Decide when to start again; log why."""
        ran = time.monotonic() - self.started
        self.quick_deaths = 0 if ran >= STABLE_AFTER else self.quick_deaths + 1
        delay = 0.0 if self.quick_deaths == 0 else min(backoff_max, 2.0 ** (self.quick_deaths - 1))
        print(f"apercu: {self.role} exited with {code} after {ran:.1f} s; restarting in {delay:g} s", file=sys.stderr)
        self.process, self.restart_at = None, time.monotonic() + delay


def supervise(roles: list[str], env: dict[str, str], backoff_max: float) -> int:
    """Run the halves until SIGINT/SIGTERM; returns the exit code for `apercu serve`."""
    halves = [Half(role, env) for role in roles]
    stopping = False

    def stop(_signum: int = 0, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for half in halves:
        half.start()
    exit_code = 0
    while not stopping:
        for half in halves:
            code = half.exited()
            if code is not None and code > 0 and half.starts == 1 and time.monotonic() - half.started < FIRST_START:
                print(f"apercu: {half.role} failed to start (exit code {code}); stopping", file=sys.stderr)
                stopping, exit_code = True, code or 1
            elif code is not None:
                half.schedule_restart(code, backoff_max)
            elif half.restart_at is not None and time.monotonic() >= half.restart_at:
                half.start()
        time.sleep(TICK)
    _stop_all([h.process for h in halves if h.process is not None])
    return exit_code


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's signal handlers still stop the children


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
