"""How a process learns that what requests wait for settled, without asking about each one: an image (finished,
failed or deleted, named by its id) or a thumbnail variant's render (stored or failed, named by its blob key).

`Watcher` (the `?wait=N` poller) asks its feed, every few milliseconds while requests wait, whether anything
happened; only then does it query the catalog (`catalog.settling`). Each database has its cheapest way of telling:
- PostgreSQL: the catalog sends `NOTIFY apercu_settled, '<name>'` in the transaction that settles an image or a
  render, and the feed LISTENs on a connection of its own: it names what settled, and nothing is queried at all
  (polling every 20 ms cost a web process 9 ms of CPU per image at 5 images/s);
- SQLite: `PRAGMA data_version` changes whenever another connection commits; it costs microseconds, and a query
  follows only when it moved. The feed sleeps on the file's commit bell (`storage.commit_bell`: inotify on its
  WAL), so a commit is seen the moment it is written, not at the end of a 20 ms sleep (on average 10 ms of each
  rendition's first request); where there is no bell, it sleeps the whole `timeout`;
- anything else: no signal, so every poll queries.
"""

from __future__ import annotations

import select
import time
from typing import Any, Protocol

import sqlalchemy as sa

from apercu.storage.commit_bell import CommitBell

SETTLED_CHANNEL = "apercu_settled"
SECOND_LOOK = 0.002  # after a ring that showed no commit yet: the commit was written, its index not yet updated


class ChangeFeed(Protocol):
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


def open_feed(engine: sa.Engine) -> ChangeFeed:
    if engine.dialect.name == "postgresql":
        return PostgresFeed(engine)
    if engine.dialect.name == "sqlite":
        return SqliteFeed(engine)
    return BlindFeed()


class PostgresFeed:
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
    def __init__(self, engine: sa.Engine) -> None:
        self._pooled = engine.raw_connection()
        self._conn: Any = self._pooled.driver_connection  # sqlite3's own: the pool's proxy costs more than the pragma
        self._bell = CommitBell(engine.url.database or "")
        self._seen = self._version()

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _moved(self) -> bool:
        version, self._seen = self._seen, self._version()
        return version != self._seen

    def poll(self, timeout: float) -> set[str] | None:
        rung = self._bell.wait(timeout)
        if self._moved():
            return None
        if rung:  # a commit still landing, most likely: one more look
            time.sleep(SECOND_LOOK)
            if self._moved():
                return None
        return set()

    def close(self) -> None:
        self._bell.close()
        self._pooled.close()


class BlindFeed:
    def poll(self, timeout: float) -> set[str] | None:
        time.sleep(timeout)
        return None

    def close(self) -> None:
        pass
