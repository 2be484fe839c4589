"""Waking the moment another process commits to an SQLite file, instead of polling it every few milliseconds.

The embedded broker's consumer (`storage.sqlite_broker`) and the web's change feed on an SQLite catalog
(`storage.change_feed`) both wait for other processes' commits. Polling for them costs a wake-up and a query per
interval even when nothing happens, and a commit waits on average half an interval to be seen: on a rendition's
first request that was ~20 ms of its ~67 ms (one hop to the worker, one back). In WAL mode every commit
`write()`s its pages to `<database>-wal`, and Linux's inotify reports each write to whoever watches the file's
folder (the folder, not the file: SQLite deletes and recreates the WAL file). So a waiter sleeps in `poll()` on
an inotify descriptor and looks as soon as the WAL is written: no polling while idle, no latency when busy.

inotify reports the write, not the commit's end: SQLite updates its shared index just after writing the frames,
so a look right after a ring may not see the commit yet. Callers therefore look again shortly after a ring that
showed nothing (`sqlite_broker` restarts its 2 ms back-off, `SqliteFeed` takes a second look). Where inotify is
missing (not Linux) or refused (the user's `max_user_instances` used up), `wait` just sleeps, and callers poll
as before. Writes through another mount of the file (NFS: where WAL does not work anyway) are not seen: callers
keep a slow poll as a safety net.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import threading
import time

log = logging.getLogger(__name__)
IN_MODIFY = 0x2
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of NUL-padded name)
READ_SIZE = 64 * 1024
IN_MEMORY = ("", ":memory:")
SETTLED_SUFFIX = "-settled"  # beside the database: the file `ring_settled` writes to after a settling commit


def _libc() -> ctypes.CDLL | None:
    """The C library, where it has inotify (Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "inotify_init1") else None


_LIBC = _libc()


class CommitBell:
    """Rings when `<database>-wal` is written by anyone (this process included). Not thread-safe: one waiter."""

    def __init__(self, database: str) -> None:
        path = os.path.realpath(database)
        self._wal = os.fsencode(os.path.basename(path) + "-wal")
        self._listen(_watch(os.path.dirname(path)) if database not in IN_MEMORY else -1)

    def _listen(self, fd: int) -> None:
        self._fd = fd
        self._poller = select.poll()
        if self._fd >= 0:
            self._poller.register(self._fd, select.POLLIN)

    def _ours(self, name: bytes) -> bool:
        """Whether an event of the watched folder, by the name of the file written, rings this bell."""
        return name == self._wal

    @property
    def listening(self) -> bool:
        """False where inotify is unavailable: `wait` only sleeps."""
        return self._fd >= 0

    def wait(self, timeout: float) -> bool:
        """Sleep until the WAL is written or `timeout` seconds pass; True when it was written."""
        if self._fd < 0:
            threading.Event().wait(max(0.0, timeout))
            return False
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if not self._poller.poll(max(0, round(remaining * 1000))):
                return False
            if self._drained():
                return True
            if remaining <= 0:
                return False

    def _drained(self) -> bool:
        """Read every pending event; True when one was a write to our WAL (the folder's other files ring too)."""
        ours = False
        while True:
            try:
                chunk = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                return ours
            offset = 0
            while offset + EVENT.size <= len(chunk):
                length = EVENT.unpack_from(chunk, offset)[3]
                name = chunk[offset + EVENT.size: offset + EVENT.size + length].rstrip(b"\0")
                ours = ours or self._ours(name)
                offset += EVENT.size + length

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _watch(path: str) -> int:
    """An inotify descriptor watching writes in the folder `path` (or to the file `path`), or -1 (logged) where
    there is none."""
    if _LIBC is None:
        return -1
    fd = int(_LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0:
        _refused("inotify_init1", ctypes.get_errno())
        return -1
    if _LIBC.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY) < 0:
        _refused(f"inotify_add_watch({path})", ctypes.get_errno())
        os.close(fd)
        return -1
    return fd


class SettleBell(CommitBell):
    """Rings once a transaction that settled something (an image, a render: `storage.change_feed`) has committed
    to the database: its writer calls `ring_settled` after the commit. Its own file is watched, not the folder, so
    that nothing else written there wakes the listener: not every commit's WAL (an upload's insert, a worker's
    claim, which settle nothing), nor the broker's file beside it."""

    def __init__(self, database: str) -> None:  # noqa: PLW0231 - the folder's watch is not wanted: the file's
        path = _settled_file(database)
        self._listen(-1 if path is None or not _touched(path) else _watch(path))

    def _ours(self, name: bytes) -> bool:
        return True  # (an event of the watched file itself names no file)


def ring_settled(database: str) -> None:
    """After a commit that settled something in `database`: wake its `SettleBell`s. A write that fails is logged:
    the listeners' periodic look (`storage.watcher`) finds the settled names within a second anyway."""
    path = _settled_file(database)
    if path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, b"\n", 0)  # one byte, rewritten: the file never grows
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("could not ring %s (%s): waiters will find what settled at their next periodic look", path, exc)


def _settled_file(database: str) -> str | None:
    return None if database in IN_MEMORY else os.path.realpath(database) + SETTLED_SUFFIX


def _touched(path: str) -> bool:
    """Whether the bell's file exists (made now if need be): inotify watches only a file that exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as exc:
        log.warning("cannot create %s (%s): polling the SQLite file instead", path, exc)
        return False
    return True


def _refused(call: str, code: int) -> None:
    log.warning("%s failed (%s): polling the SQLite file instead", call, errno.errorcode.get(code, code))
