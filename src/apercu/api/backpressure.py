"""Backpressure: whether an upload should be taken at all, from the pending queue's depth and the free disk space.

Asked for every upload before its body is received, in the web server's event loop (`api.server`), so each
reading is cached for TTL seconds per process: one indexed GROUP BY and one statvfs a second at most, however
many uploads arrive. A limit may therefore be overshot by what one second of uploads brings, which is the price
of never making an upload wait on the database. A reading that fails (the catalog is down) lets the upload
through: the upload then fails on its own, with its own error, and backpressure never invents one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from apercu.storage.catalog import ImageStatus

log = logging.getLogger(__name__)
TTL = 1.0  # seconds a reading is reused
MIB = 1024 * 1024


class Cached:
    """A reading taken at most once per TTL (None while it fails), shared by the threads of a process: two of
    them refreshing it at the same moment only read it twice."""

    def __init__(self, read: Callable[[], int], what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.read, self.what, self.clock = read, what, clock
        self.value: int | None = None
        self.expires = float("-inf")

    def get(self) -> int | None:
        now = self.clock()
        if now >= self.expires:
            try:
                self.value = self.read()
            except Exception:  # noqa: BLE001 - a failed reading refuses nothing (see the module docstring)
                log.warning("could not read the %s for backpressure", self.what, exc_info=True)
                self.value = None
            self.expires = now + TTL
        return self.value


class Load:
    """The two readings an upload is judged by."""

    def __init__(self, count_pending: Callable[[], int], folder: Path) -> None:
        self.pending = Cached(count_pending, "pending image count")
        self.free_bytes = Cached(lambda: free_bytes(folder), "free disk space")


def pending_count(counts: Callable[[], dict[str, int]]) -> Callable[[], int]:
    """Images waiting for a worker, from `catalog.images.counts` (the ones being processed are not waiting)."""
    return lambda: counts().get(ImageStatus.PENDING, 0)


def free_bytes(folder: Path) -> int:
    """Space an unprivileged process may still write on the file system holding `folder`."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize
