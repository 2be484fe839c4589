"""How a process learns that what requests wait for settled, without asking about each one: an image (finished,
failed or deleted, named by its id) or a thumbnail variant's render (stored or failed, named by its blob key).

`Watcher` (the `?wait=N` poller) asks its feed, every few milliseconds while requests wait, whether anything
happened; only then does it query the catalog (`catalog.settling`). Each database has its cheapest way of telling:
- PostgreSQL: the catalog sends `NOTIFY apercu_settled, '<name>'` in the transaction that settles an image or a
  render, and the feed LISTENs on a connection of its own: it names what settled, and nothing is queried at all
  (polling every 20 ms cost a web process 9 ms of CPU per image at 5 images/s);
- SQLite: the writer of a transaction that settled something rings the file's settle bell once it committed
  (`rung_after_commit`, around every write transaction; `storage.commit_bell.SettleBell`: inotify on a file of
  its own beside the database), and the feed, asleep on it, says "look": one query per settling commit, seen the
  moment it is made. It used to wake at every commit to the file (inotify on its WAL): an upload's insert and a
  worker's claim too, and the broker's writes in the same folder, then look twice (the WAL is written before the
  commit shows), ~4 wake-ups per image in each web process, 2.5 ms of CPU per image in all. Where there is no
  bell, `PRAGMA data_version` (it changes whenever another connection commits) is polled every `timeout`;
- anything else: no signal, so every poll queries.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator
from typing import Any, Protocol

import sqlalchemy as sa

from apercu.storage.commit_bell import SettleBell, ring_settled

SETTLED_CHANNEL = "apercu_settled"
_RING = "apercu_ring_settled"  # in a SQLite connection's `info`: its transaction settled something


class ChangeFeed(Protocol):
    told: bool  # True: `poll` wakes as soon as something settles; False: it must be polled every few ms

    def poll(self, timeout: float) -> set[str] | None:
        """Wait up to `timeout` seconds: the names announced as settled meanwhile (empty: nothing happened), or
        None when something may have happened and the caller must look."""
        ...

    def close(self) -> None: ...


def announce_settled(conn: sa.Connection, name: str) -> None:
    """Within the transaction that settles (or deletes) an image, or ends a render: tell the feeds, on databases
    that can. `name`: the image's id, or the render's blob key."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(SETTLED_CHANNEL, name)))
    elif conn.dialect.name == "sqlite":
        conn.info[_RING] = True  # rung once the transaction committed: `rung_after_commit`


@contextlib.contextmanager
def rung_after_commit(conn: sa.Connection, database: str | None) -> Iterator[None]:
    """Around a write transaction on the SQLite file `database` (None: another database): once it committed, ring
    the file's settle bell if it settled something (`announce_settled`); nothing when it did not commit."""
    try:
        yield
    finally:
        rings = conn.info.pop(_RING, False)
    if rings and database is not None:
        ring_settled(database)


def open_feed(engine: sa.Engine) -> ChangeFeed:
    if engine.dialect.name == "postgresql":
        return PostgresFeed(engine)
    if engine.dialect.name == "sqlite":
        bell = SettleBell(engine.url.database or "")
        if bell.listening:
            return SqliteFeed(bell)
        bell.close()
        return SqliteVersionFeed(engine)
    return BlindFeed()


class PostgresFeed:
    told = True

    def __init__(self, engine: sa.Engine) -> None:
        self._pooled = engine.raw_connection()
        conn: Any = self._pooled.driver_connection  # psycopg's own connection
        self._conn = conn
        conn.rollback()
        conn.autocommit = True
        conn.execute(f"LISTEN {SETTLED_CHANNEL}")
        self._socket = select.poll()  # not select(): it refuses descriptors past 1023, which a busy process reaches
        self._socket.register(conn.fileno(), select.POLLIN)

    def poll(self, timeout: float) -> set[str] | None:
        """Wait for the socket with poll(), then drain what arrived: psycopg's own `notifies(timeout=...)`
        cost ~1 ms of CPU per call, 50 ms a second for a poller calling it every 20 ms."""
        self._socket.poll(timeout * 1000)
        return {note.payload for note in self._conn.notifies(timeout=0) if note.channel == SETTLED_CHANNEL}

    def close(self) -> None:
        self._pooled.invalidate()  # a listening connection must not go back to the pool


class SqliteFeed:
    told = True

    def __init__(self, bell: SettleBell) -> None:
        self._bell = bell

    def poll(self, timeout: float) -> set[str] | None:
        return None if self._bell.wait(timeout) else set()

    def close(self) -> None:
        self._bell.close()


class SqliteVersionFeed:
    """Where a settle bell cannot listen (no inotify): whether anyone committed to the file since the last poll."""

    told = False

    def __init__(self, engine: sa.Engine) -> None:
        self._pooled = engine.raw_connection()
        self._conn: Any = self._pooled.driver_connection  # sqlite3's own: the pool's proxy costs more than the pragma
        self._seen = self._version()

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def poll(self, timeout: float) -> set[str] | None:
        time.sleep(timeout)
        version, self._seen = self._seen, self._version()
        return None if version != self._seen else set()

    def close(self) -> None:
        self._pooled.close()


class BlindFeed:
    told = False

    def poll(self, timeout: float) -> set[str] | None:
        time.sleep(timeout)
        return None

    def close(self) -> None:
        pass
