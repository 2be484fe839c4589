"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, tuned for a single machine.

Five changes to the stock transport, each for a measured reason:
- `polling_interval` is honoured (the stock transport hands every transport option to `create_engine`, which
  rejects it), so pick-up latency is tens of milliseconds instead of a second;
- the SQLite file runs in WAL mode with a busy timeout, so the web process can publish while the worker polls;
- a queue that the web process and the worker create at the same moment is an IntegrityError for one of
  them (the stock transport only locks within a process), which lost that publish; the loser now reads
  the winner's row;
- a delivered message is deleted instead of being kept forever as invisible: the stock transport never
  redelivers it anyway, so keeping it only grows the file. Work lost with a crashed worker is recovered from the
  catalog (see `tasks.housekeeping`), which is the durable record of what still needs processing;
- the channel's session is guarded by a lock: a rejected message is restored from a task's thread while the
  consumer's thread polls, and a session used by two threads at once fails ("session in 'prepared' state"),
  which took the whole worker down.
"""

from __future__ import annotations

import threading
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport.sqlalchemy import Channel as SqlaChannel
from kombu.transport.sqlalchemy import Transport as SqlaTransport
from kombu.utils.json import loads
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import IntegrityError

from apercu.storage.catalog import sqlite_pragmas

# Transport options that kombu or we consume; everything else is passed to `create_engine`.
NOT_ENGINE_OPTIONS = (
    "polling_interval",
    "queue_tablename",
    "message_tablename",
    "callback",
    "errback",
    "max_retries",
    "interval_start",
    "interval_step",
    "interval_max",
    "retry_errors",
)


class Channel(SqlaChannel):
    _engines: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # One SQLAlchemy session per channel, used by the consumer's thread and, when a message is rejected and
        # restored, by a task's thread: a session is not thread-safe, so every use of it goes through this lock.
        self._session_lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        with self._session_lock:
            super()._put(queue, payload, **kwargs)

    def _purge(self, queue: str) -> Any:
        with self._session_lock:
            return super()._purge(queue)

    def _size(self, queue: str) -> Any:
        with self._session_lock:
            return super()._size(queue)

    def _engine_from_config(self) -> Any:
        conninfo = self.connection.client
        options = {k: v for k, v in conninfo.transport_options.items() if k not in NOT_ENGINE_OPTIONS}
        engine = create_engine(conninfo.hostname, connect_args={"timeout": 30}, **options)
        event.listen(engine, "connect", sqlite_pragmas)
        return engine

    def _get_or_create(self, queue: str) -> Any:
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()  # another process created it first
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()

    def _get(self, queue: str) -> Any:
        with self._session_lock:
            return self._fetch(queue)

    def _fetch(self, queue: str) -> Any:
        obj = self._get_or_create(queue)
        self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            msg = (
                self.session.query(self.message_cls)
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible != False)  # noqa: E712 - SQL expression
                .order_by(self.message_cls.sent_at, self.message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise virtual.Empty()
            payload = msg.payload
            self.session.delete(msg)
            return loads(payload if isinstance(payload, str) else payload.decode())
        finally:
            self.session.commit()


class Transport(SqlaTransport):
    Channel = Channel
    polling_interval = 0.05


# Broker URLs name this transport as `apercu-sqlite+sqlite:///path`; kombu only resolves URL schemes by alias.
TRANSPORT_ALIASES["apercu-sqlite"] = f"{__name__}:Transport"
