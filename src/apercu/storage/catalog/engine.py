"""What every part of the catalog shares: the engine (SQLite pragmas, the PostgreSQL driver), the write
transaction behind SQLite's writer lock, the clock rows are stamped with, and the Hamming distance in SQL."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import BIT

from apercu.storage.change_feed import rung_after_commit
from apercu.storage.sqlite_lock import writer_lock

# A PostgreSQL server that does not answer (a blackholed address, a machine gone) must cost a request seconds, not
# the two minutes of the kernel's SYN retries: libpq's connect_timeout bounds each connection attempt (a pool's
# pre-ping reconnect included); tcp_user_timeout (ms) drops a connection whose sent data stays unacknowledged.
# Both are defaults: the URL's own (`?connect_timeout=10`) win.
POSTGRES_TIMEOUTS = {"connect_timeout": 3, "tcp_user_timeout": 10_000}


def utcnow() -> datetime:
    """Naive UTC, the form stored in both SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_engine(url: str, durable: bool = True) -> sa.Engine:
    """An engine for the catalog; SQLite gets WAL and a busy timeout for its several processes.

    `durable=False` is for the worker on SQLite: its commits (claims, results) are safe against any process crash
    but may be lost with the machine's power, which takes the worker down too, and its restart's recovery sends
    again everything it held. On PostgreSQL every commit is durable, the worker's too: the database server can
    crash while the worker lives on, and a claim or a result lost with it (synchronous_commit=off loses the last
    fraction of a second) left the image pending until the recovery grace, or processing under the lease of a
    task that had ended until the lease ran out, minutes later (tests/test_outages_load.py: PostgreSQL SIGKILLed
    under load, 1 or 2 images of 60 in one run of three). Waiting for the flush costs the worker about a
    millisecond per commit, two commits per image. The web keeps every commit durable on both, because its
    insert is what a 202 promises."""
    url = _driver_url(url)
    dumps = functools.partial(json.dumps, allow_nan=False, separators=(",", ":"))
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, json_serializer=dumps, connect_args={"timeout": 30})
        event.listen(engine, "connect", functools.partial(sqlite_pragmas, "FULL" if durable else "NORMAL"))
        return engine
    return sa.create_engine(
        url, json_serializer=dumps, pool_pre_ping=True, pool_size=10, max_overflow=20,
        connect_args={k: v for k, v in POSTGRES_TIMEOUTS.items() if k not in sa.make_url(url).query},
    )


def _driver_url(url: str) -> str:
    """Accept the plain postgresql:// form users write and pick the psycopg 3 driver we ship."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def sqlite_pragmas(synchronous: str, dbapi_connection: Any, record: Any) -> None:
    record.info["synchronous"] = synchronous  # what `Database.begin(durable=False)` restores after its commit
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    dbapi_connection.create_function("apercu_hamming", 2, _sqlite_hamming, deterministic=True)


def sqlite_file(engine: sa.Engine) -> str | None:
    """The SQLite file whose writer lock write transactions take (see `storage.sqlite_lock`); None elsewhere."""
    return engine.url.database if engine.dialect.name == "sqlite" else None


class Database:
    """The engine every aggregate of one catalog shares, and its one way to write."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._file = sqlite_file(engine)

    @contextlib.contextmanager
    def begin(self, durable: bool = True) -> Iterator[sa.Connection]:
        """A write transaction; on SQLite, behind the file's writer lock (see `storage.sqlite_lock`).

        `durable=False` is for a write that a machine's crash may lose because it is made again when missed (a
        render's request: the next request for the variant sends it again): on a SQLite file opened with
        synchronous=FULL (the web's), its commit skips the WAL's fsync, which cost a first rendition's request
        2-6 ms here. Any process's crash still leaves it whole (WAL), and other writes stay durable."""
        relaxed = not durable and self._file is not None
        with writer_lock(self._file), self.engine.connect() as conn:
            sqlite = conn.connection.driver_connection if relaxed else None
            if sqlite is not None:  # (on the driver's connection: no transaction around it, as SQLite requires)
                sqlite.execute("PRAGMA synchronous=NORMAL")
            try:
                with rung_after_commit(conn, self._file), conn.begin():  # (the `?wait` pollers' bell)
                    yield conn
            finally:
                if sqlite is not None:
                    sqlite.execute(f"PRAGMA synchronous={conn.info['synchronous']}")

    def connect(self) -> sa.Connection:
        """A connection to read with (a `with` block gives it back to the pool)."""
        return self.engine.connect()


def phash_to_int(text: str) -> int:
    """16 hex digits as the signed 64-bit integer both databases store in a BIGINT."""
    value = int(text, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(column: sa.ColumnElement[int], target: int, dialect: str) -> sa.ColumnElement[int]:
    """How many bits of two 64-bit integers differ, in SQL: PostgreSQL counts them itself; SQLite has neither XOR
    nor a bit count, so it calls a function each connection registers (see `sqlite_pragmas`)."""
    if dialect == "postgresql":
        xor = column.op("#")(sa.literal(target, sa.BigInteger))
        return sa.func.bit_count(sa.cast(xor, BIT(64)), type_=sa.Integer)
    return sa.func.apercu_hamming(column, target, type_=sa.Integer)


def _sqlite_hamming(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()
