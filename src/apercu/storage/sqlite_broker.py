# mypy: disallow-untyped-calls=False
# (kombu ships no annotations for its virtual transport and json helpers, whose calls this module is made of)
"""The embedded broker: a kombu virtual transport on one SQLite table, for the single-machine default.

kombu's own SQLAlchemy transport works through the ORM: every poll of an empty queue, every publish and every
fetch is a session round trip with an fsync, and it needed four fixes to work at all here (its polling
interval, WAL mode, a queue-creation race between processes, messages it never redelivered). This transport is
the same idea in a few SQL statements:
- one table, `apercu_messages(id, queue, payload)`; a fetch reads the oldest row's id, then takes it with one
  `DELETE ... RETURNING`, atomic between processes, so no message is delivered twice and nothing accumulates;
  polling an empty queue is a read, which never waits for (nor holds up) a writer;
- writers queue on the file's writer lock (`storage.sqlite_lock`), not in SQLite's sleeping busy handler;
- the consumer sleeps on the file's commit bell (`storage.commit_bell`: inotify on its WAL) and looks the moment
  a publish is written, so a task waits for no poll (it waited ~10 ms on average for the next one, backing off
  to 20 ms, on every first request of a rendition); a look right after a ring, or a message, starts polling
  again at 2 ms (a ring may come just before the commit shows), backing off to `polling_interval` without a
  bell, to IDLE_POLL_INTERVAL with one (a safety net only: an idle worker costs next to nothing);
- WAL mode without an fsync per commit (`synchronous=NORMAL`: a power cut may lose the last messages but never
  corrupts the file): the catalog, not the broker, is the durable record of what still needs processing, and
  the worker's recovery sweep re-sends whatever a crash lost (`tasks.housekeeping`);
- one connection per channel, behind a lock: the consumer's thread polls while a task's thread may restore a
  rejected message, and a connection must not run two statements at once.
A message restored by kombu (a rejected or unacknowledged one) is simply put back at the end of its queue.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.utils.json import dumps, loads

from apercu.storage.commit_bell import CommitBell
from apercu.storage.sqlite_lock import writer_lock

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS apercu_messages"
    " (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_apercu_messages_queue ON apercu_messages (queue, id)",
)
OLDEST = "SELECT id FROM apercu_messages WHERE queue = ? ORDER BY id LIMIT 1"
TAKE = "DELETE FROM apercu_messages WHERE id = ? RETURNING payload"
MIN_POLL_INTERVAL = 0.002
IDLE_POLL_INTERVAL = 1.0  # the longest sleep between looks when the commit bell rings on publishes


def database_path(client: Any) -> str:
    """`apercu-sqlite+sqlite:///path`: kombu hands the part after the `+` over as the host name."""
    return str(client.hostname).removeprefix("sqlite://").removeprefix("/") or ":memory:"


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL, no fsync per commit, waiting (not failing) while another writes."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMA:
        db.execute(statement)
    return db


class Channel(virtual.Channel):
    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        path = database_path(connection.client)
        self._db = connect(path)
        self._lock = threading.Lock()
        self._path = path

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """Every write takes the channel's lock, then the file's writer lock, for as long as its rows are read."""
        with self._lock, writer_lock(self._path):
            yield self._db

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        with self._writing() as db:
            db.execute("INSERT INTO apercu_messages (queue, payload) VALUES (?, ?)", (queue, dumps(message)))

    def _get(self, queue: str, timeout: Any = None) -> Any:
        with self._lock:
            oldest = self._db.execute(OLDEST, (queue,)).fetchone()
        taken = None
        if oldest is not None:
            with self._writing() as db:
                taken = db.execute(TAKE, oldest).fetchone()
        if taken is None:  # empty, or another consumer took it first
            raise virtual.Empty()
        return loads(taken[0])

    def _size(self, queue: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM apercu_messages WHERE queue = ?", (queue,)).fetchone()[0])

    def _purge(self, queue: str) -> int:
        with self._writing() as db:
            return db.execute("DELETE FROM apercu_messages WHERE queue = ?", (queue,)).rowcount

    def close(self) -> None:
        super().close()
        with self._lock:
            self._db.close()


class Transport(virtual.Transport):
    Channel = Channel
    polling_interval = 0.05
    driver_type = "sqlite"
    driver_name = "sqlite3"
    # kombu's stubs type these as 1-tuples; they are tuples of exception classes of any length.
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.OperationalError)  # type: ignore[assignment]
    channel_errors = (*virtual.Transport.channel_errors, sqlite3.DatabaseError)  # type: ignore[assignment]

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.polling_interval = client.transport_options.get("polling_interval", self.polling_interval)
        self._bell: CommitBell | None = None

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """kombu's loop (deliver one message, or sleep and poll again until `timeout`), sleeping on the commit
        bell: from MIN_POLL_INTERVAL after a message or a ring, doubling while the queues stay empty."""
        started, interval, cycle = time.monotonic(), MIN_POLL_INTERVAL, cast(Any, self.cycle)
        bell = self._commit_bell()
        longest = max(self.polling_interval, IDLE_POLL_INTERVAL) if bell.listening else self.polling_interval
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except virtual.Empty:
                left = math.inf if timeout is None else timeout - (time.monotonic() - started)
                if left <= 0:
                    raise TimeoutError() from None  # what kombu's own loop raises (socket.timeout)
                interval = MIN_POLL_INTERVAL if bell.wait(min(interval, longest, left)) else interval * 2

    def _commit_bell(self) -> CommitBell:
        """The broker file's bell, opened by the consuming thread on its first wait."""
        if self._bell is None:
            self._bell = CommitBell(database_path(self.client))
        return self._bell

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._bell is not None:
            self._bell.close()
            self._bell = None

    def driver_version(self) -> str:
        return sqlite3.sqlite_version


# Broker URLs name this transport as `apercu-sqlite+sqlite:///path`; kombu only resolves URL schemes by alias.
TRANSPORT_ALIASES["apercu-sqlite"] = f"{__name__}:Transport"
