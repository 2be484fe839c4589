"""`apercu serve`'s supervisor: the web server and the worker as two children, each restarted when it dies.

Each child runs in its own session (so Ctrl-C reaches only the supervisor, which stops both in order) and gets
SIGTERM if the supervisor itself is killed. A half that dies is started again while the other keeps working:
at once after a long run, then with a doubling backoff while it keeps dying young, so a crash loop costs little.
Nothing accepted is lost across a restart: the catalog holds every image, and the new worker takes over the
dead one's leases at start (see `tasks.housekeeping`). Only a half that exits by itself with an error during its
very first start, before it said it was ready, stops everything: that is a configuration error (a bad database
URL, a port in use), not a crash to ride out. A half killed by a signal is always restarted.

A half says it is ready (`announce_ready`: the web once it listens, the worker once its catalog and heartbeat are
up) by writing to a pipe the supervisor hands it (APERCU_READY_FD). That, not a time since the start, is what
separates a configuration error from a crash: a loaded machine may take many seconds to import and connect.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

STOP_TIMEOUT = 30.0
READY_FD = "APERCU_READY_FD"  # the pipe a half writes to once ready (config.NOT_SETTINGS says so)
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
    ever_ready: bool = False
    _ready_pipe: int | None = None

    def start(self) -> None:
        self._close_pipe()
        self._ready_pipe, writer = os.pipe()
        os.set_blocking(self._ready_pipe, False)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "apercu", self.role], env={**self.env, READY_FD: str(writer)},
                start_new_session=True, preexec_fn=_die_with_parent, pass_fds=(writer,),
            )
        finally:
            os.close(writer)
        self.started, self.starts, self.restart_at = time.monotonic(), self.starts + 1, None

    def failed_to_start(self, code: int) -> bool:
        """Exited with an error on its first start before ever saying it was ready: a configuration error."""
        return code > 0 and self.starts == 1 and not self.heard_ready()

    def heard_ready(self) -> bool:
        if not self.ever_ready and self._ready_pipe is not None:
            try:
                self.ever_ready = bool(os.read(self._ready_pipe, 1))
            except BlockingIOError:
                pass  # nothing written yet
        return self.ever_ready

    def _close_pipe(self) -> None:
        if self._ready_pipe is not None:
            os.close(self._ready_pipe)
            self._ready_pipe = None

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
            if code is not None and half.failed_to_start(code):
                print(f"apercu: {half.role} failed to start (exit code {code}); stopping", file=sys.stderr)
                stopping, exit_code = True, code or 1
            elif code is not None:
                half.schedule_restart(code, backoff_max)
            elif half.restart_at is not None and time.monotonic() >= half.restart_at:
                half.start()
        time.sleep(TICK)
    _stop_all([h.process for h in halves if h.process is not None])
    return exit_code


def announce_ready() -> None:
    """In a supervised half: tell the supervisor this half is up (once; nothing when not supervised)."""
    fd = os.environ.pop(READY_FD, None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"r")
        os.close(int(fd))
    except (OSError, ValueError):
        pass  # the supervisor is gone, or the variable was not ours: nobody to tell


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
