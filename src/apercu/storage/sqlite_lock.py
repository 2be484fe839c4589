"""One writer at a time on an SQLite file, queued by the kernel instead of by SQLite's busy handler.

SQLite lets one connection write at a time; the others get SQLITE_BUSY and its busy handler retries after
sleeping 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms. With two web processes of sixteen threads and a
worker all writing small transactions, those sleeps, not the work, set the pace: under load, an upload spent
40 % of its time asleep in the catalog insert, waiting for a lock that had been free for most of that time.
Writers here first take an exclusive `flock` on a file beside the database (and a thread lock, since threads
share their process's descriptor): a waiter is woken the moment the holder lets go, and SQLite's own lock is then
almost always free. A process that dies holding the lock releases it with its descriptors.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading
from collections.abc import Iterator


class WriterLock:
    def __init__(self, database: str) -> None:
        self.path = f"{database}-writer.lock"
        self._threads = threading.Lock()
        self._fd = -1
        self._pid = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        """This process's own descriptor: one inherited across a fork would share the parent's lock. Read-only:
        flock needs no write access (the file is never written), and a descriptor open for writing would keep the
        data directory's file system from being remounted read-only while the process runs. (Over NFS, where flock
        would want one, the catalog's WAL mode does not work anyway.)"""
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        return self._fd


def writer_lock(database: str | None) -> contextlib.AbstractContextManager[None]:
    """A context manager for one write transaction: the lock of a database file, nothing for one in memory."""
    if not database or database == ":memory:":
        return contextlib.nullcontext()
    path = _real_path(database)
    lock = _locks.get(path) or _locks.setdefault(path, WriterLock(path))
    return lock.held()


@functools.lru_cache(maxsize=64)
def _real_path(database: str) -> str:
    """The file's one name, found once: realpath's lstat of every component was ~0.1 ms of each write
    transaction (two per upload: the catalog's and the embedded broker's)."""
    return os.path.realpath(database)


_locks: dict[str, WriterLock] = {}  # one per file and process, shared by every engine on it
# A child forked while another thread held a lock would wait for it forever: it starts with locks of its own.
os.register_at_fork(after_in_child=_locks.clear)
